//! The status page (`GET /` on the admin listener) in a real browser: headless Chromium
//! loads it, and the test reads the DOM the page's script built from `/status` while the
//! proxy serves traffic, reloads (a server added, one removed), loses a backend to its
//! health checks, and is killed and started again on the same admin address.
//!
//! CI installs `chromium` and sets `RINGWAY_REQUIRE_TOOLS=1`; elsewhere a machine without
//! it skips this test, and says so.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::browser::{Browser, chromium};
use crate::support::*;

/// How long the page may take to show a change (it polls every second; the machine may
/// be loaded).
const SHOWN_WITHIN: Duration = Duration::from_secs(8);

/// Reads what the page shows: one line per fact, tab-separated cells.
const READ_PAGE: &str = r##"(() => {
  const text = e => e ? e.textContent.replace(/\s+/g, " ").trim() : "";
  const contact = document.getElementById("contact");
  const lines = ["contact\t" + (contact ? contact.dataset.contact : "loading"),
    "process\t" + text(document.getElementById("process")),
    "events\t" + [...document.querySelectorAll("#events li")].map(text).join(" | ")];
  for (const r of document.querySelectorAll("tr[data-listener]"))
    lines.push(["listener", r.dataset.listener, ...[...r.cells].map(text)].join("\t"));
  for (const r of document.querySelectorAll("tr[data-server]"))
    lines.push(["server", r.dataset.upstream, r.dataset.server, r.dataset.state,
      ...[...r.cells].map(text)].join("\t"));
  return lines.join("\n");
})()"##;

/// One server row: its upstream, address, state class and the visible cells (server,
/// state, active / max, req/s, errors, requests, p50, p99, sparkline, since).
#[derive(Debug)]
struct Row {
    upstream: String,
    address: String,
    state: String,
    cells: Vec<String>,
}

/// What the page shows at one moment.
#[derive(Debug, Default)]
struct View {
    contact: String,
    process: String,
    events: String,
    /// Listener name → visible cells (name, bind, mode, connections, requests, ...).
    listeners: Vec<(String, Vec<String>)>,
    servers: Vec<Row>,
    raw: String,
}

impl View {
    fn parse(raw: String) -> View {
        let mut v = View::default();
        for line in raw.lines() {
            let f: Vec<String> = line.split('\t').map(str::to_string).collect();
            match f[0].as_str() {
                "contact" => v.contact = f[1].clone(),
                "process" => v.process = f[1].clone(),
                "events" => v.events = f[1].clone(),
                "listener" => v.listeners.push((f[1].clone(), f[2..].to_vec())),
                "server" => v.servers.push(Row {
                    upstream: f[1].clone(),
                    address: f[2].clone(),
                    state: f[3].clone(),
                    cells: f[4..].to_vec(),
                }),
                _ => {}
            }
        }
        v.raw = raw;
        v
    }

    fn row(&self, upstream: &str, addr: SocketAddr) -> Option<&Row> {
        let addr = addr.to_string();
        self.servers
            .iter()
            .find(|r| r.upstream == upstream && r.address == addr)
    }

    /// The server's request count as shown (cell "requests"), if it has a row.
    fn requests(&self, upstream: &str, addr: SocketAddr) -> Option<usize> {
        self.row(upstream, addr)?.cells.get(5)?.parse().ok()
    }
}

/// Reads the page until `done` holds, at most `within`; panics with the last view.
fn wait_view(
    page: &mut Browser,
    within: Duration,
    what: &str,
    done: impl Fn(&View) -> bool,
) -> View {
    let deadline = Instant::now() + within;
    loop {
        let view = View::parse(page.eval(READ_PAGE));
        if done(&view) {
            return view;
        }
        if Instant::now() >= deadline {
            panic!(
                "the page did not show {what} within {within:?}; it shows:\n{}",
                view.raw
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Answers 200 after `delay_ms`: first-byte times land in a known histogram bucket.
fn slow_backend(delay_ms: u64) -> Backend {
    Backend::start(move |_, c| {
        c.sleep_ms(delay_ms);
        c.ok("ok");
    })
}

/// `u` (round robin, a has max_conns 4) on `/`, `checked` (one server, TCP health checks
/// every 200 ms) on `/c`; the admin listener on the literal `admin`, so that a restarted
/// proxy comes back where the page looks.
fn toml(admin: SocketAddr, u: &[String], checked: SocketAddr) -> String {
    format!(
        "[admin]\nbind = \"{admin}\"\n\n\
         [[listener]]\nname = \"web\"\nbind = \"$BIND\"\nupstream = \"u\"\n\
         [[listener.route]]\npath_prefix = \"/c\"\nupstream = \"checked\"\n\n\
         [upstreams.u]\nbalance = \"round_robin\"\nservers = [{}]\n\n\
         [upstreams.checked]\nservers = [{}]\n\
         health_check = {{ interval = \"200ms\", timeout = \"500ms\", fall = 1, rise = 1 }}\n",
        u.join(", "),
        server(checked, "max_fails = 0"),
    )
}

fn send(proxy: SocketAddr, path: &str, n: usize) {
    let mut client = Client::connect(proxy);
    for _ in 0..n {
        let r = client.request(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(r.status, 200, "{}", r.head_text());
    }
}

fn status_page_follows_traffic_reloads_failures_and_restarts(driver: &str) {
    if !chromium() {
        return;
    }
    let started = Instant::now();
    let (a, b, c, d) = (
        slow_backend(30),
        slow_backend(30),
        slow_backend(0),
        slow_backend(0),
    );
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let first = [server(a.addr(), "max_conns = 4"), server(b.addr(), "")];
    let mut p = Proxy::start_workers(driver, 2, &toml(admin, &first, c.addr()));
    send(p.addr, "/", 20);
    send(p.addr, "/c", 6);

    let mut page = Browser::open(&format!("http://{admin}/"));
    let view = wait_view(&mut page, SHOWN_WITHIN, "the traffic sent", |v| {
        v.contact == "live"
            && v.requests("u", a.addr()) == Some(a.request_count())
            && v.requests("u", b.addr()) == Some(b.request_count())
            && v.requests("checked", c.addr()) == Some(6)
    });
    assert_eq!(a.request_count() + b.request_count(), 20);
    let web = &view
        .listeners
        .iter()
        .find(|(n, _)| n == "web")
        .expect("listener row")
        .1;
    assert_eq!(web[4], "26", "listener requests: {web:?}");
    let row_a = view.row("u", a.addr()).unwrap();
    assert_eq!(
        (row_a.state.as_str(), row_a.cells[1].as_str()),
        ("up", "up")
    );
    assert_eq!(row_a.cells[2], "0 / 4", "active / max_conns");
    // The backends wait 30 ms: p50 and p99 come from the (25, 50] ms bucket or above.
    let p50: f64 = row_a.cells[6]
        .trim_end_matches(" ms")
        .parse()
        .expect("p50 in ms");
    let p99: f64 = row_a.cells[7]
        .trim_end_matches(" ms")
        .parse()
        .expect("p99 in ms");
    assert!((25.0..1000.0).contains(&p50) && p99 >= p50, "{row_a:?}");
    assert!(view.process.contains("generation 1"), "{}", view.process);
    assert!(
        view.process.contains(&format!("0: {driver}, 1: {driver}")),
        "{}",
        view.process
    );

    // Steady traffic shows as a request rate while it lasts.
    let load = Load::start(p.addr, 1, 50);
    wait_view(&mut page, SHOWN_WITHIN, "a request rate on a", |v| {
        v.row("u", a.addr())
            .and_then(|r| r.cells[3].parse::<f64>().ok())
            .is_some_and(|rate| rate > 0.0)
    });
    let (ok, failures) = load.stop();
    assert!(ok > 0 && failures.is_empty(), "{failures:?}");

    // A reload swaps b for d: the page drops b's row, shows d's, and counts d's traffic.
    let second = [server(a.addr(), "max_conns = 4"), server(d.addr(), "")];
    p.reload(&toml(admin, &second, c.addr()));
    send(p.addr, "/", 4);
    let view = wait_view(&mut page, SHOWN_WITHIN, "the reloaded servers", |v| {
        v.row("u", b.addr()).is_none()
            && v.requests("u", d.addr()) == Some(d.request_count())
            && d.request_count() >= 1
            && v.requests("u", a.addr()) == Some(a.request_count())
    });
    assert!(view.process.contains("generation 2"), "{}", view.process);
    assert!(view.process.contains("last reload ok"), "{}", view.process);

    // Its backend gone, c fails its checks and the page says so within seconds.
    let killed = Instant::now();
    drop(c);
    let c_addr = view
        .servers
        .iter()
        .find(|r| r.upstream == "checked")
        .unwrap()
        .address
        .clone();
    let view = wait_view(&mut page, SHOWN_WITHIN, "c failing its checks", |v| {
        v.servers
            .iter()
            .any(|r| r.address == c_addr && r.state == "failing" && r.cells[1] == "failing checks")
    });
    eprintln!(
        "c shown failing {:?} after its backend went",
        killed.elapsed()
    );
    assert!(
        view.events.contains("up → failing checks"),
        "{}",
        view.events
    );

    // The proxy dies: the page says it lost contact; a new one on the same admin address
    // is found again, and its counters start over.
    let old_pid = p.pid();
    drop(p);
    wait_view(&mut page, SHOWN_WITHIN, "lost contact", |v| {
        v.contact == "lost"
    });
    let third = [server(a.addr(), "max_conns = 4"), server(d.addr(), "")];
    let dead = dead_addr();
    let p = Proxy::start_workers(driver, 2, &toml(admin, &third, dead));
    let view = wait_view(&mut page, SHOWN_WITHIN, "contact again", |v| {
        v.contact == "live" && v.requests("u", a.addr()) == Some(0)
    });
    assert!(
        view.events.contains("contact back after"),
        "{}",
        view.events
    );
    assert!(
        view.events
            .contains(&format!("ringway restarted (pid {old_pid} → {})", p.pid())),
        "{}",
        view.events
    );
    assert!(view.process.contains("generation 1"), "{}", view.process);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
both_drivers!(status_page_follows_traffic_reloads_failures_and_restarts);

/// The page itself: one self-contained document, small, that loads nothing from
/// elsewhere (its policy forbids it), with the `/status` it polls beside it.
fn status_page_is_self_contained(driver: &str) {
    let b = Backend::named("a");
    let toml = format!("[admin]\nbind = \"$BIND2\"\n\n{}", single(b.addr()));
    let p = Proxy::start(driver, &toml);
    let r = get(p.extra[0], "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let policy = r.header("content-security-policy").expect("a policy");
    assert!(policy.starts_with("default-src 'none';"), "{policy}");
    let page = r.text();
    assert!(page.len() < 50 * 1024, "{} bytes", page.len());
    assert!(page.starts_with("<!doctype html>"));
    for external in ["http://", "https://", "src=", "@import", "url("] {
        assert!(!page.contains(external), "the page refers to {external}");
    }
    assert!(page.contains("fetch(\"status\""));
    let q = get(p.extra[0], "/?refresh=1");
    assert_eq!(q.text(), page, "a query string is ignored");
}
both_drivers!(status_page_is_self_contained);
