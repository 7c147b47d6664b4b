//! The `/status` JSON without a network: exact text, backward-compatible keys, percentiles
//! from the buckets, and what the snapshot and the marks contribute.

use std::sync::Arc;
use std::time::Duration;

use super::status::{GroupInfo, Layout, ListenerInfo, Process, quantile_us, status_json};
use super::tests::{L, X, Y, key, small_gauges, snapshot};
use super::*;
use crate::balance::{Ramp, Standing};
use crate::control::state::LastReload;

fn layout() -> Layout {
    Layout {
        listeners: vec![ListenerInfo {
            name: "web".into(),
            bind: L.into(),
            mode: "http",
        }],
        groups: vec![GroupInfo {
            name: "b".into(),
            balance: "least_conn",
            queue_max: Some(50),
            health_check: true,
            slow_start_ms: 30_000,
        }],
    }
}

fn process() -> Process {
    Process {
        version: "9.9.9",
        pid: 42,
        started_ms: 1_000_000,
        now_ms: 1_065_000,
        drivers: vec!["io_uring", "epoll"],
        last_reload: Some(LastReload {
            at_ms: 1_060_000,
            generation: 3,
            error: Some("t.toml:4: upstreams.b: \"x\"".into()),
        }),
    }
}

#[test]
fn status_renders_exactly() {
    let mut r = StatsReport::default();
    r.requests.insert(key("b", X, 200), 5);
    r.requests.insert(key("b", X, 502), 2);
    r.requests.insert(key("b", "", 503), 1);
    r.requests.insert(key("", "", 400), 1);
    r.connections.insert("web".into(), 2);
    let counts = r.server_mut("b", X);
    counts.failures = 2;
    counts.retries = 1;
    counts.first_byte.observe(Duration::from_millis(7));
    counts.first_byte.observe(Duration::from_millis(30));
    let mut g = small_gauges();
    g.servers[0].max_conns = 8;
    g.servers[0].standing = Standing {
        probe_down: true,
        failed_for_ms: Some(1500),
        ramp: None,
    };
    let expected = "{\"generation\":3,\"draining\":false,\"missing_workers\":0,\
         \"version\":\"9.9.9\",\"pid\":42,\"started_at_ms\":1000000,\"now_ms\":1065000,\
         \"uptime_ms\":65000,\"workers\":[{\"id\":0,\"driver\":\"io_uring\"},\
         {\"id\":1,\"driver\":\"epoll\"}],\"reloads\":{\"ok\":2,\"error\":1,\"last\":\
         {\"at_ms\":1060000,\"generation\":3,\"ok\":false,\"error\":\"t.toml:4: upstreams.b: \\\"x\\\"\"}},\
         \"first_byte_bounds_ms\":[5,10,25,50,100,250,500,1000,2500,5000,10000,30000,60000,120000,300000],\
         \"listeners\":[{\"name\":\"web\",\"bind\":\"127.0.0.1:1700\",\"mode\":\"http\",\
         \"active_connections\":2,\"requests\":9,\"responses\":{\"1xx\":0,\"2xx\":5,\"3xx\":0,\"4xx\":1,\"5xx\":3}}],\
         \"upstreams\":[{\"name\":\"b\",\"balance\":\"least_conn\",\"health_check\":true,\
         \"slow_start_ms\":30000,\"queue\":{\"depth\":3,\"max\":50,\"full\":5,\"timed_out\":1},\
         \"requests_without_server\":1,\"servers\":[{\"address\":\"127.0.0.1:1801\",\
         \"state\":\"failed\",\"active_requests\":4,\"requests\":7,\"failures\":2,\"busy_until_ms\":2500,\"retries\":1,\
         \"weight\":1,\"backup\":false,\"max_conns\":8,\"health_check\":\"failing\",\
         \"failed_for_ms\":1500,\"responses\":{\"1xx\":0,\"2xx\":5,\"3xx\":0,\"4xx\":0,\"5xx\":2},\
         \"first_byte\":{\"count\":2,\"sum_ms\":37,\"p50_ms\":10,\"p99_ms\":49.5,\
         \"buckets\":[0,1,0,1,0,0,0,0,0,0,0,0,0,0,0,0]}}]}]}\n";
    assert_eq!(status_json(&r, &g, &layout(), &process()), expected);
}

/// The keys the first `/status` had keep their place and meaning: scripts written
/// against it still work.
#[test]
fn the_first_versions_keys_are_all_still_there() {
    let mut r = StatsReport::default();
    r.requests.insert(key("b", X, 200), 5);
    r.server_mut("b", X).failures = 2;
    let text = status_json(&r, &small_gauges(), &Layout::default(), &Process::default());
    assert!(text.starts_with("{\"generation\":3,\"draining\":false,\"missing_workers\":0,"));
    assert!(text.contains("\"upstreams\":[{\"name\":\"b\",\"queue\""));
    assert!(text.contains(
        "{\"address\":\"127.0.0.1:1801\",\"state\":\"failed\",\"active_requests\":4,\
         \"requests\":5,\"failures\":2,\"busy_until_ms\":2500,"
    ));
    assert!(text.contains("\"last\":null"), "{text}");
}

#[test]
fn a_ramping_server_says_how_far_along_it_is() {
    let mut g = small_gauges();
    g.servers[0].standing.ramp = Some(Ramp {
        percent: 40,
        left_ms: 6000,
    });
    let text = status_json(
        &StatsReport::default(),
        &g,
        &Layout::default(),
        &Process::default(),
    );
    assert!(
        text.contains(",\"slow_start\":{\"percent\":40,\"left_ms\":6000},"),
        "{text}"
    );
    // No `health_check` verdict for a group whose layout does not say it has checks.
    assert!(!text.contains("\"health_check\":\""), "{text}");
    assert!(!text.contains("failed_for_ms"), "{text}");
    assert!(text.contains("\"p50_ms\":null,\"p99_ms\":null"), "{text}");
}

fn histogram(ms: &[u64]) -> Histogram {
    let mut h = Histogram::default();
    for &m in ms {
        h.observe(Duration::from_millis(m));
    }
    h
}

#[test]
fn quantiles_interpolate_inside_the_bucket_like_prometheus() {
    assert_eq!(quantile_us(&Histogram::default(), 0.5), None);
    // Ten in (25, 50] ms: the median is halfway through the bucket.
    let h = histogram(&[30; 10]);
    assert_eq!(quantile_us(&h, 0.5), Some(37_500));
    assert_eq!(quantile_us(&h, 1.0), Some(50_000));
    // 99 fast, 1 slow: p50 in the first bucket, p99 at the top of it, p100 in the slow one.
    let mut ms = vec![2; 99];
    ms.push(700);
    let h = histogram(&ms);
    assert_eq!(quantile_us(&h, 0.5), Some(2_525));
    assert_eq!(quantile_us(&h, 0.99), Some(5_000));
    assert_eq!(quantile_us(&h, 1.0), Some(1_000_000));
}

#[test]
fn a_quantile_in_the_open_last_bucket_is_the_largest_bound() {
    let h = histogram(&[400_000, 500_000]);
    assert_eq!(quantile_us(&h, 0.5), Some(300_000_000));
}

#[test]
fn layout_reads_names_binds_modes_and_group_settings() {
    let s = snapshot(
        &format!(
            "[[listener]]\nname = \"web\"\nbind = \"{L}\"\nupstream = \"b\"\n\n\
             [upstreams.b]\nbalance = \"random_two\"\nslow_start = \"20s\"\n\
             queue = {{ max = 7, timeout = \"1s\" }}\n\
             health_check = {{ path = \"/h\", interval = \"1s\" }}\n\
             servers = [{{ addr = \"{X}\" }}]\n"
        ),
        4,
    );
    let layout = Layout::read(&s);
    let l = &layout.listeners[0];
    assert_eq!(
        (l.name.as_str(), l.bind.as_str(), l.mode),
        ("web", L, "http")
    );
    let g = &layout.groups[0];
    assert_eq!(
        (
            g.name.as_str(),
            g.balance,
            g.queue_max,
            g.health_check,
            g.slow_start_ms
        ),
        ("b", "random_two", Some(7), true, 20_000)
    );
}

/// A server a reload adds to a group with `slow_start` shows its ramp in the gauges the
/// next scrape reads; the server that stayed does not ramp.
#[test]
fn a_server_added_by_a_reload_ramps_in_the_gauges() {
    let text = |servers: &str, generation| {
        snapshot(
            &format!(
                "[[listener]]\nname = \"web\"\nbind = \"{L}\"\nupstream = \"b\"\n\n\
                 [upstreams.b]\nslow_start = \"60s\"\nservers = [{servers}]\n"
            ),
            generation,
        )
    };
    let old = text(&format!("{{ addr = \"{X}\", max_conns = 3 }}"), 1);
    let mut new = text(
        &format!("{{ addr = \"{X}\", max_conns = 3 }}, {{ addr = \"{Y}\", weight = 2 }}"),
        2,
    );
    Arc::get_mut(&mut new)
        .and_then(|s| Arc::get_mut(&mut s.groups[0]))
        .expect("fresh snapshot")
        .peers
        .inherit(&old.groups[0].peers);
    let g = render::Gauges::read(&new, crate::clock::now_ms() + 15_000);
    let x = &g.servers[0];
    assert_eq!(
        (x.server.as_str(), x.max_conns, x.standing.ramp),
        (X, 3, None)
    );
    let y = &g.servers[1];
    assert_eq!((y.server.as_str(), y.weight), (Y, 2));
    let ramp = y.standing.ramp.expect("the added server ramps");
    assert!((24..=26).contains(&ramp.percent), "{ramp:?}");
    assert!((44_000..=45_000).contains(&ramp.left_ms), "{ramp:?}");
}
