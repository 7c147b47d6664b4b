//! The failovers: crash, planned stop, lost link, a node's return, and an active-active
//! pair. Bounds are loose enough for a busy 2-core machine; the printed figures are the
//! measurement.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::lab::{Lab, in_ns};
use crate::traffic::{Backends, Clients, Sample, VipWatch};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 20);
const PORT: u16 = 8080;
const BACKENDS: [&str; 2] = ["198.18.0.31:8001", "198.18.0.31:8002"];
/// Longer than the hand-over (about 2 s with the example's checks), with margin for a
/// loaded machine: ringway keeps accepting until the VIP has surely moved.
const SHUTDOWN_DELAY: &str = "8s";
/// Requests per second: new connections, and over keep-alive connections.
const RATE_NEW: u32 = 50;
const RATE_KEEP: u32 = 50;
/// Crash failover: the goal is 3 s (issue 13); the assertion leaves room for a busy host.
const CRASH_BOUND: Duration = Duration::from_secs(5);
/// Planned hand-over: at most this many failed requests (see the test).
const PLANNED_IN_FLIGHT: usize = 5;

const EXAMPLE: &str = include_str!("../../tuning/keepalived.conf.example");
const EXAMPLE_ACTIVE: &str = include_str!("../../tuning/keepalived-active-active.conf.example");

/// The example for node `node` ("a" or "b"): lines marked `# node B: VALUE` get VALUE in
/// place of their last word on node b, and documentation addresses become the lab's.
fn keepalived_conf(example: &str, node: &str) -> String {
    let mut out = String::new();
    for line in example.lines() {
        let line = match line.split_once("# node B:") {
            Some((code, value)) if node == "b" => {
                let code = code.trim_end();
                let cut = code.rfind(char::is_whitespace).map_or(0, |i| i + 1);
                format!("{}{}", &code[..cut], value.trim())
            }
            _ => line.to_string(),
        };
        out += &line.replace("192.0.2.", "198.18.0.");
        out.push('\n');
    }
    out
}

fn ringway_conf(lab: &Lab, node: &str) -> String {
    let servers: Vec<String> = BACKENDS
        .iter()
        .map(|a| format!("{{ addr = \"{a}\" }}"))
        .collect();
    format!(
        "[runtime]\nworkers = 1\npin_workers = false\npid_file = \"{dir}/ringway-{node}.pid\"\n\
         shutdown_delay = \"{SHUTDOWN_DELAY}\"\nshutdown_timeout = \"10s\"\n\n\
         [log]\nlevel = \"info\"\n\n[admin]\nbind = \"127.0.0.1:9901\"\n\n\
         [[listener]]\nname = \"web\"\nbind = \"0.0.0.0:{PORT}\"\nmode = \"http\"\n\
         upstream = \"app\"\nresponse_headers = {{ \"X-Node\" = \"{node}\" }}\n\n\
         [upstreams.app]\nbalance = \"least_conn\"\nservers = [{}]\n",
        servers.join(", "),
        dir = lab.dir.display(),
    )
}

/// GET /healthz on the node's admin listener, from inside its namespace: the status, or 0.
fn healthz(lab: &Lab, node: &str) -> u16 {
    in_ns(&lab.ns(node), || {
        use std::io::{Read, Write};
        let addr: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return 0;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    })
}

fn start_ringway(lab: &mut Lab, node: &str) {
    let conf = lab.write(&format!("ringway-{node}.toml"), &ringway_conf(lab, node));
    let bin = env!("CARGO_BIN_EXE_ringway");
    lab.spawn(
        node,
        &format!("ringway-{node}"),
        &[bin, "-c", conf.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while healthz(lab, node) != 200 {
        assert!(
            Instant::now() < deadline,
            "ringway on {node} not healthy\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_keepalived(lab: &mut Lab, node: &str, example: &str) {
    let conf = lab.write(
        &format!("keepalived-{node}.conf"),
        &keepalived_conf(example, node),
    );
    let pid = lab.dir.join(format!("keepalived-{node}.pid"));
    let vrrp_pid = lab.dir.join(format!("keepalived-{node}-vrrp.pid"));
    let bin = crate::keepalived_bin();
    lab.spawn(
        node,
        &format!("keepalived-{node}"),
        &[
            bin.to_str().unwrap(),
            "--dont-fork",
            "--log-console",
            "--log-detail",
            "--no-syslog",
            "--vrrp",
            "-f",
            conf.to_str().unwrap(),
            "-p",
            pid.to_str().unwrap(),
            "-r",
            vrrp_pid.to_str().unwrap(),
        ],
    );
}

/// Waits (bounded) until `node`'s keepalived log shows `text`.
fn wait_log(lab: &mut Lab, proc_name: &str, text: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !lab.proc(proc_name).log_text().contains(text) {
        assert!(
            Instant::now() < deadline,
            "{proc_name}: no {text:?} within {within:?}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A lab with backends, a client host and two nodes running ringway; keepalived not yet.
fn lab_with_nodes() -> (Lab, Backends) {
    let mut lab = Lab::new();
    lab.host("a", &["198.18.0.11/24"]);
    lab.host("b", &["198.18.0.12/24"]);
    let be = lab.host("be", &["198.18.0.31/24"]);
    lab.host("cl", &["198.18.0.100/24"]);
    let addrs: Vec<SocketAddr> = BACKENDS.iter().map(|a| a.parse().unwrap()).collect();
    let backends = Backends::start(&be, &addrs);
    start_ringway(&mut lab, "a");
    start_ringway(&mut lab, "b");
    (lab, backends)
}

/// The single-VIP pair with a holding the VIP and b standing by.
fn pair() -> (Lab, Backends, VipWatch) {
    let (mut lab, backends) = lab_with_nodes();
    let watch = VipWatch::start(VIP, &[("a", &lab.ns("a")), ("b", &lab.ns("b"))]);
    // Equal priorities: whoever starts first becomes master, so start a alone first.
    start_keepalived(&mut lab, "a", EXAMPLE);
    assert!(
        watch.wait_held("a", Duration::from_secs(15)),
        "a never took the VIP\n{}",
        lab.logs()
    );
    start_keepalived(&mut lab, "b", EXAMPLE);
    wait_log(
        &mut lab,
        "keepalived-b",
        "Entering BACKUP STATE",
        Duration::from_secs(10),
    );
    (lab, backends, watch)
}

fn target(vip: Ipv4Addr) -> SocketAddr {
    SocketAddr::from((vip, PORT))
}

/// What the clients saw around an event at `event` (clients' clock).
struct Report {
    name: &'static str,
    /// The node the VIP should move to.
    to: &'static str,
    samples: Vec<Sample>,
    event: Duration,
}

impl Report {
    fn failed(&self, kind: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.kind == kind && s.result.is_err())
            .collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.samples.iter().filter(|s| s.kind == kind).count()
    }

    /// From the event to the first answer `node` gave (the end of that request).
    fn first_answer_from(&self, node: &str) -> Option<Duration> {
        self.samples
            .iter()
            .filter(|s| s.at + s.took >= self.event)
            .filter(|s| s.result.as_deref() == Ok(node))
            .map(|s| (s.at + s.took).saturating_sub(self.event))
            .min()
    }

    fn slowest(&self, kind: &str) -> Duration {
        self.samples
            .iter()
            .filter(|s| s.kind == kind && s.result.is_ok())
            .map(|s| s.took)
            .max()
            .unwrap_or_default()
    }

    fn print(&self, vip_moved: Option<Duration>, extra: &str) {
        let ms = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{} ms", d.as_millis()));
        println!(
            "ha {}: VIP moved after {}, first answer from {} after {}; failed: new {}/{}, \
             keep-alive {}/{}, sse streams {}/{}; slowest ok: new {} ms, keep-alive {} ms{extra}",
            self.name,
            ms(vip_moved),
            self.to,
            ms(self.first_answer_from(self.to)),
            self.failed("new").len(),
            self.count("new"),
            self.failed("keep-alive").len(),
            self.count("keep-alive"),
            self.failed("sse").len(),
            self.count("sse"),
            self.slowest("new").as_millis(),
            self.slowest("keep-alive").as_millis(),
        );
        // Failures grouped by kind and error, with when they started and ended.
        let mut groups: Vec<(&str, &str, i64, i64, usize)> = Vec::new();
        for s in self.samples.iter().filter(|s| s.result.is_err()) {
            let error = s.result.as_ref().unwrap_err().as_str();
            let error = error.split(" after ").next().unwrap_or(error);
            let at = s.at.as_millis() as i64 - self.event.as_millis() as i64;
            match groups.iter_mut().find(|g| g.0 == s.kind && g.1 == error) {
                Some(g) => (g.3, g.4) = (at, g.4 + 1),
                None => groups.push((s.kind, error, at, at, 1)),
            }
        }
        for (kind, error, first, last, n) in groups {
            println!("    {n} x {kind}, {first:+} .. {last:+} ms: {error}");
        }
    }

    /// Every request and stream that started in the last `tail` of the run succeeded: the
    /// service is back whatever happened before.
    fn recovered(&self, tail: Duration) -> bool {
        let end = self.samples.iter().map(|s| s.at).max().unwrap_or_default();
        self.samples
            .iter()
            .filter(|s| s.kind != "sse" && s.at + tail >= end)
            .all(|s| s.result.is_ok())
    }
}

/// Runs the clients for `before`, calls `event`, runs them for `after`.
fn measure(
    lab: &mut Lab,
    name: &'static str,
    to: &'static str,
    targets: &[SocketAddr],
    sse: bool,
    before: Duration,
    after: Duration,
    event: impl FnOnce(&mut Lab),
) -> (Report, Instant) {
    let clients = Clients::start(&lab.ns("cl"), targets, RATE_NEW, RATE_KEEP, sse);
    std::thread::sleep(before);
    let at = Instant::now();
    event(lab);
    let event = clients.since_start(at);
    std::thread::sleep(after);
    let samples = clients.finish();
    (
        Report {
            name,
            to,
            samples,
            event,
        },
        at,
    )
}

#[test]
fn crash_moves_the_vip_and_the_old_master_does_not_take_it_back() {
    if !crate::lab_ready() {
        return;
    }
    let _serial = crate::serial();
    let (mut lab, _backends, watch) = pair();
    let (report, at) = measure(
        &mut lab,
        "crash (SIGKILL ringway on the master)",
        "b",
        &[target(VIP)],
        true,
        Duration::from_secs(3),
        Duration::from_secs(8),
        |lab| lab.proc("ringway-a").signal(libc::SIGKILL),
    );
    let moved = watch.gained("b", at).map(|t| t - at);
    report.print(moved, "");
    let moved = moved.unwrap_or_else(|| panic!("the VIP never moved to b\n{}", lab.logs()));
    assert!(moved <= CRASH_BOUND, "VIP moved after {moved:?}");
    assert!(report.recovered(Duration::from_secs(3)), "still failing");

    // The old master comes back: its ringway restarts, keepalived leaves FAULT, and the
    // VIP stays where it is (taking it back would cut b's streams).
    let (report, at) = measure(
        &mut lab,
        "return (ringway restarted on the old master)",
        "b",
        &[target(VIP)],
        true,
        Duration::from_secs(1),
        Duration::from_secs(8),
        |lab| start_ringway(lab, "a"),
    );
    report.print(None, "");
    wait_log(
        &mut lab,
        "keepalived-a",
        "Entering BACKUP STATE",
        Duration::from_secs(5),
    );
    assert!(watch.gained("a", at).is_none(), "a took the VIP back");
    assert!(watch.holds("b"));
    let failed: usize = ["new", "keep-alive", "sse"]
        .iter()
        .map(|k| report.failed(k).len())
        .sum();
    assert_eq!(failed, 0, "requests failed while the old master came back");
}

/// `ringway -s quit` on `node`, as an operator would (through its pid file).
fn quit(lab: &mut Lab, node: &str) {
    let conf = lab.dir.join(format!("ringway-{node}.toml"));
    let bin = env!("CARGO_BIN_EXE_ringway");
    let name = format!("quit-{node}");
    lab.spawn(
        node,
        &name,
        &[bin, "-s", "quit", "-c", conf.to_str().unwrap()],
    );
    let status = lab.proc(&name).wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "ringway -s quit: {status:?}\n{}",
        lab.logs()
    );
}

/// One planned hand-over from `from` to `to`: the old node drains, the VIP moves before it
/// stops accepting, and the old process exits 0. Returns the report and when it moved.
fn planned_handover(
    lab: &mut Lab,
    watch: &VipWatch,
    name: &'static str,
    from: &str,
    to: &'static str,
) -> Report {
    let exit = exit_watch(lab.proc(&format!("ringway-{from}")).pid());
    let from_owned = from.to_string();
    let (report, at) = measure(
        lab,
        name,
        to,
        &[target(VIP)],
        true,
        Duration::from_secs(3),
        Duration::from_secs(12),
        move |lab| quit(lab, &from_owned),
    );
    let moved = watch.gained(to, at).map(|t| t - at);
    let proc_name = format!("ringway-{from}");
    let status = lab.proc(&proc_name).wait_exit(Duration::from_secs(10));
    let exited = exit
        .join()
        .unwrap()
        .map(|t| t.saturating_duration_since(at));
    report.print(
        moved,
        &format!(
            ", old ringway exited {} ms after the quit",
            exited.map_or(-1, |d| d.as_millis() as i64)
        ),
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "old ringway\n{}",
        lab.logs()
    );
    let moved = moved.unwrap_or_else(|| panic!("the VIP never moved to {to}\n{}", lab.logs()));
    let delay = Duration::from_secs(SHUTDOWN_DELAY.trim_end_matches('s').parse().unwrap());
    assert!(
        moved < delay,
        "the VIP moved after {moved:?}, not within shutdown_delay ({delay:?})"
    );
    report
}

/// When process `pid` (a child of ours, so it stays a zombie until reaped) exits.
fn exit_watch(pid: i32) -> std::thread::JoinHandle<Option<Instant>> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the parenthesised command name.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            if stat.is_empty() || state.starts_with('Z') {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    })
}

#[test]
fn planned_stop_hands_the_vip_over_without_failed_requests() {
    if !crate::lab_ready() {
        return;
    }
    let _serial = crate::serial();
    let (mut lab, _backends, watch) = pair();
    let mut reports = vec![planned_handover(
        &mut lab,
        &watch,
        "planned a -> b (ringway -s quit on the master)",
        "a",
        "b",
    )];
    // And back, with the roles swapped: a second measurement per run.
    start_ringway(&mut lab, "a");
    wait_log(
        &mut lab,
        "keepalived-a",
        "Entering BACKUP STATE",
        Duration::from_secs(10),
    );
    reports.push(planned_handover(
        &mut lab,
        &watch,
        "planned b -> a (ringway -s quit on the master)",
        "b",
        "a",
    ));
    // The goal, and what most runs measure, is zero. A request caught in flight at the
    // instant the old master drops the VIP (a few milliseconds) cannot be answered: the
    // old node may no longer send from the address and the new one has no such
    // connection. A crash fails about 100 in the same conditions; nopreempt about 240.
    for r in &reports {
        let failed = r.failed("new").len() + r.failed("keep-alive").len();
        assert!(
            failed <= PLANNED_IN_FLIGHT,
            "{}: {failed} requests failed",
            r.name
        );
    }
}

#[test]
fn lost_link_moves_the_vip_and_the_node_stays_backup_on_return() {
    if !crate::lab_ready() {
        return;
    }
    let _serial = crate::serial();
    let (mut lab, _backends, watch) = pair();
    let (report, at) = measure(
        &mut lab,
        "lost link (the master's cable pulled)",
        "b",
        &[target(VIP)],
        true,
        Duration::from_secs(3),
        Duration::from_secs(10),
        |lab| lab.cable("a", false),
    );
    let moved = watch.gained("b", at).map(|t| t - at);
    report.print(moved, "");
    let moved = moved.unwrap_or_else(|| panic!("the VIP never moved to b\n{}", lab.logs()));
    // b notices only by silence: 3 adverts missed plus the skew, about 3.6 s.
    assert!(moved <= Duration::from_secs(8), "VIP moved after {moved:?}");
    assert!(report.recovered(Duration::from_secs(3)), "still failing");

    let (report, at) = measure(
        &mut lab,
        "return (the old master's cable plugged back)",
        "b",
        &[target(VIP)],
        true,
        Duration::from_secs(1),
        Duration::from_secs(8),
        |lab| lab.cable("a", true),
    );
    report.print(None, "");
    assert!(watch.gained("a", at).is_none(), "a took the VIP back");
    assert!(watch.holds("b"));
    let failed: usize = ["new", "keep-alive", "sse"]
        .iter()
        .map(|k| report.failed(k).len())
        .sum();
    assert_eq!(failed, 0, "requests failed while the old master came back");
}

/// Share of `part` in `whole`, in percent.
fn percent(part: u64, whole: u64) -> u64 {
    part * 100 / whole.max(1)
}

#[test]
fn active_active_two_vips_keep_backends_even_and_survive_a_crash() {
    if !crate::lab_ready() {
        return;
    }
    let _serial = crate::serial();
    let (mut lab, backends) = lab_with_nodes();
    let nodes = [("a", lab.ns("a")), ("b", lab.ns("b"))];
    let nodes: Vec<(&str, &str)> = nodes.iter().map(|(n, ns)| (*n, ns.as_str())).collect();
    let watch1 = VipWatch::start(VIP, &nodes);
    let watch2 = VipWatch::start(VIP2, &nodes);
    start_keepalived(&mut lab, "a", EXAMPLE_ACTIVE);
    start_keepalived(&mut lab, "b", EXAMPLE_ACTIVE);
    let homes = watch1.wait_held("a", Duration::from_secs(15))
        && watch2.wait_held("b", Duration::from_secs(15));
    assert!(homes, "each node should hold its home VIP\n{}", lab.logs());
    // Let a preemption at start-up (both instances start BACKUP) settle.
    std::thread::sleep(Duration::from_secs(2));
    assert!(watch1.holds("a") && watch2.holds("b"));

    let targets = [target(VIP), target(VIP2)];
    let before = backends.counts();
    let (report, _) = measure(
        &mut lab,
        "active-active, steady",
        "b",
        &targets,
        // least_conn evens out active requests: an SSE stream holding one backend sends
        // the short requests to the other, so only short requests show even counts.
        false,
        Duration::from_secs(1),
        Duration::from_secs(5),
        |_| {},
    );
    let after = backends.counts();
    let per_backend: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: u64 = per_backend.iter().sum();
    let by_node = |n: &str| {
        report
            .samples
            .iter()
            .filter(|s| s.kind != "sse" && s.result.as_deref() == Ok(n))
            .count() as u64
    };
    let (on_a, on_b) = (by_node("a"), by_node("b"));
    println!(
        "ha active-active: node a answered {on_a}, node b {on_b}; backends served {per_backend:?} \
         ({}% / {}%)",
        percent(per_backend[0], total),
        percent(per_backend[1], total)
    );
    assert!((40..=60).contains(&percent(on_a, on_a + on_b)));
    assert!((40..=60).contains(&percent(per_backend[0], total)));

    let (report, at) = measure(
        &mut lab,
        "active-active crash (SIGKILL ringway on a; clients on both VIPs)",
        "b",
        &targets,
        true,
        Duration::from_secs(3),
        Duration::from_secs(8),
        |lab| lab.proc("ringway-a").signal(libc::SIGKILL),
    );
    let moved = watch1.gained("b", at).map(|t| t - at);
    report.print(moved, "");
    let moved = moved.unwrap_or_else(|| panic!("VIP 1 never moved to b\n{}", lab.logs()));
    assert!(moved <= CRASH_BOUND, "VIP 1 moved after {moved:?}");
    assert!(watch2.holds("b") && watch2.gained("a", at).is_none());
    assert!(report.recovered(Duration::from_secs(3)), "still failing");
}
