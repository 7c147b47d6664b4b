//! Load feedback against the real simulator (SPEC "LLM inference fleets", issue 10 item 5):
//! three `ringway backend --llm` servers, two ringway processes (`least_conn`) over them,
//! and another client that keeps a queue on the first server. Polling the servers' vLLM
//! metrics, the two processes leave that server alone and keep the fleet's queues even;
//! blind to what they did not send, each gives it its third and its queue grows.
//! `benches/llm/feedback.py` measures the same under Poisson load.

use std::time::Duration;

use crate::admin::scrape;
use crate::support::llm::{LlmSim, chat_body, post};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(5);

/// Two slots each; a generation of 2000 tokens at 5 ms holds its slot for 10 s, longer
/// than the test, so nothing finishes while it counts.
const SIM: [&str; 4] = ["--slots", "2", "--decode-ms-per-token", "5"];

/// Sends a long non-streamed generation and leaves it open (the simulator cancels a
/// request whose client leaves).
fn hold(addr: std::net::SocketAddr) -> Client {
    let mut c = Client::connect(addr);
    c.send(post(
        "/v1/chat/completions",
        &chat_body("hold", false, 2000),
    ));
    c
}

/// Requests waiting and running on every simulator.
fn counts(sims: &[LlmSim]) -> Vec<(u64, u64)> {
    sims.iter()
        .map(|s| {
            let (running, waiting) = s.running_waiting();
            (waiting, running)
        })
        .collect()
}

/// The first server holds four (two running, two waiting) from another client; then the
/// two processes take turns sending six (with feedback, each after both have polled the
/// last). Returns each server's (waiting, running) at the end.
fn fleet_after_six(driver: &str, feedback: &str) -> Vec<(u64, u64)> {
    let sims: Vec<LlmSim> = (0..3).map(|_| LlmSim::start(&SIM)).collect();
    let list: Vec<String> = sims.iter().map(|s| server(s.addr, "")).collect();
    let mut upstream = "balance = \"least_conn\"\nread_timeout = \"60s\"".to_string();
    if !feedback.is_empty() {
        upstream.push_str(&format!("\nload_feedback = {{ {feedback} }}"));
    }
    let text = format!(
        "[admin]\nbind = \"$BIND2\"\n\n{}",
        config("", &upstream, &list)
    );
    let proxies = [Proxy::start(driver, &text), Proxy::start(driver, &text)];
    let total = |sims: &[LlmSim]| counts(sims).iter().map(|(w, r)| w + r).sum::<u64>();
    // With feedback, the next request is sent only once both processes have polled what
    // every server holds now (however late the prober runs on a loaded machine).
    let polled = |sims: &[LlmSim]| {
        let want: Vec<String> = sims
            .iter()
            .zip(counts(sims))
            .map(|(sim, (w, r))| {
                format!(
                    "ringway_upstream_reported_load{{upstream=\"u\",server=\"{}\"}} {}\n",
                    sim.addr,
                    w + r
                )
            })
            .collect();
        feedback.is_empty()
            || proxies.iter().all(|p| {
                let page = scrape(p.bind("$BIND2"));
                want.iter().all(|line| page.contains(line.as_str()))
            })
    };
    let mut clients: Vec<Client> = (0..4).map(|_| hold(sims[0].addr)).collect();
    assert!(wait_until(WAIT, || counts(&sims)[0] == (2, 2)));
    assert!(wait_until(WAIT, || polled(&sims)), "never polled");
    for i in 0..6 {
        clients.push(hold(proxies[i % 2].addr));
        assert!(
            wait_until(WAIT, || total(&sims) == 5 + i as u64),
            "{:?}",
            counts(&sims)
        );
        assert!(wait_until(WAIT, || polled(&sims)), "never polled");
    }
    let end = counts(&sims);
    drop(clients);
    end
}

fn two_proxies_keep_a_simulated_fleets_queues_even(driver: &str) {
    let even = fleet_after_six(driver, "preset = \"vllm\", interval = \"100ms\"");
    // The first server got nothing more; the six went three and three to the others.
    assert_eq!(even, vec![(2, 2), (1, 2), (1, 2)], "with load_feedback");
    let blind = fleet_after_six(driver, "");
    // Each process gave every server one of its three.
    assert_eq!(blind[0], (4, 2), "without load_feedback: {blind:?}");
    let spread = |f: &[(u64, u64)]| {
        let w = f.iter().map(|(w, _)| *w);
        w.clone().max().unwrap() - w.min().unwrap()
    };
    assert!(
        spread(&even) <= 1 && spread(&blind) >= 3,
        "{even:?} {blind:?}"
    );
}
both_drivers!(two_proxies_keep_a_simulated_fleets_queues_even);
