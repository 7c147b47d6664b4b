//! `ringway backend --llm`, the simulated LLM server, as a process: OpenAI formats
//! (streamed and whole), the prefix cache, slots and its queue, fail modes, and cancelling
//! the work of a client that goes away. The last test streams through the proxy.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::llm::{LlmSim, chat_body, post, sse_events};
use crate::support::*;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn a_streamed_chat_is_openai_sse_one_token_per_event_ending_with_done() {
    let sim = LlmSim::start(&["--decode-ms-per-token", "5"]);
    let mut c = Client::connect(sim.addr);
    let r = c.request(post("/v1/chat/completions", &chat_body("hi", true, 6)));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.framing, Framing::Chunked);
    assert_eq!(
        r.header("x-backend"),
        Some(sim.addr.port().to_string().as_str())
    );
    let events = sse_events(&r.text());
    assert_eq!(events.len(), 6 + 2, "{}", r.text());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..7].iter().map(|e| json(e)).collect();
    let id = chunks[0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("chatcmpl-"), "{id}");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id.as_str(), "one id for the whole stream");
        assert_eq!(c["model"], "ringway-sim");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks[..6]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text, "Hello from a simulated LLM server");
    assert!(chunks[5]["choices"][0]["finish_reason"].is_null());
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "length");
    // The connection stays usable: a completion stream with usage.
    let body =
        r#"{"prompt":"Once","stream":true,"max_tokens":3,"stream_options":{"include_usage":true}}"#;
    let r = c.request(post("/v1/completions", body));
    let events = sse_events(&r.text());
    assert_eq!(events.len(), 3 + 3, "{}", r.text());
    let first = json(&events[0]);
    assert_eq!(first["object"], "text_completion");
    assert_eq!(first["choices"][0]["text"], "Hello");
    let usage = json(&events[4]);
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(usage["usage"]["prompt_tokens"], 1);
}

#[test]
fn whole_answers_errors_and_models_follow_the_openai_api() {
    let sim = LlmSim::start(&[
        "--model",
        "m1",
        "--max-tokens",
        "4",
        "--decode-ms-per-token",
        "1",
    ]);
    let mut c = Client::connect(sim.addr);
    let body = r#"{"model":"m1","messages":[{"role":"user","content":"hi"}]}"#;
    let r = c.request(post("/v1/chat/completions", body));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = json(&r.text());
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "m1");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from a simulated"
    );
    assert_eq!(
        v["choices"][0]["finish_reason"], "stop",
        "no max_tokens: the model stopped"
    );
    assert_eq!(v["usage"]["completion_tokens"], 4);
    let r = c.request(post("/v1/completions", r#"{"prompt":"x","max_tokens":2}"#));
    let v = json(&r.text());
    assert_eq!(
        (v["object"].as_str(), v["choices"][0]["text"].as_str()),
        (Some("text_completion"), Some("Hello from"))
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    // Another model: 404, as vLLM answers.
    let r = c.request(post("/v1/chat/completions", &chat_body("hi", false, 2)));
    assert_eq!(r.status, 404);
    assert!(
        json(&r.text())["message"]
            .as_str()
            .unwrap()
            .contains("ringway-sim")
    );
    let r = c.request(post("/v1/chat/completions", "{\"messages\": [}"));
    assert_eq!(r.status, 400);
    assert!(
        json(&r.text())["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    let r = c.request("GET /v1/chat/completions HTTP/1.1\r\nHost: s\r\n\r\n");
    assert_eq!(r.status, 405);
    let r = c.request("GET /v1/models HTTP/1.1\r\nHost: s\r\n\r\n");
    assert_eq!(json(&r.text())["data"][0]["id"], "m1");
    let r = c.request("GET /health HTTP/1.1\r\nHost: s\r\n\r\n");
    assert_eq!(r.status, 200);
    let r = c.request("GET /nope HTTP/1.1\r\nHost: s\r\n\r\n");
    assert_eq!(r.status, 404);
}

/// Time from sending a streamed request to its first `data:` event.
fn first_token_time(c: &mut Client, body: &str) -> Duration {
    let start = Instant::now();
    c.send(post("/v1/chat/completions", body));
    let head = c.read_head();
    assert_eq!(head.status, 200);
    let first = c.next_chunk().expect("a first token");
    let ttft = start.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("data: {"));
    while c.next_chunk().is_some() {}
    ttft
}

#[test]
fn a_repeated_prompt_hits_the_prefix_cache_and_comes_out_sooner() {
    // 20 µs per byte: a 16 KB prompt costs ~330 ms of prefill when nothing is cached.
    let sim = LlmSim::start(&["--prefill-us-per-byte", "20", "--decode-ms-per-token", "1"]);
    let history = "The quick brown fox jumps over the lazy dog. ".repeat(360);
    let body = chat_body(&history, true, 2);
    let mut c = Client::connect(sim.addr);
    let cold = first_token_time(&mut c, &body);
    let queries = sim.metric("vllm:prefix_cache_queries_total");
    assert_eq!(sim.metric("vllm:prefix_cache_hits_total"), 0.0);
    let warm = first_token_time(&mut c, &body);
    assert!(cold >= Duration::from_millis(300), "cold {cold:?}");
    assert!(warm * 4 < cold, "warm {warm:?} vs cold {cold:?}");
    let hits = sim.metric("vllm:prefix_cache_hits_total");
    assert!(
        hits >= queries * 0.95,
        "the repeat should hit almost all of its {queries} tokens, hit {hits}"
    );
    assert_eq!(sim.metric("vllm:prefix_cache_queries_total"), 2.0 * queries);
    // A prompt that differs in its first block hits nothing, however much else matches.
    let other = chat_body(&format!("Another question. {history}"), true, 2);
    let before = sim.metric("vllm:prefix_cache_hits_total");
    let third = first_token_time(&mut c, &other);
    assert!(third >= Duration::from_millis(300), "{third:?}");
    assert!(sim.metric("vllm:prefix_cache_hits_total") - before < 20.0);
}

#[test]
fn requests_beyond_the_slots_wait_in_the_servers_queue() {
    // One slot, 50 tokens of 10 ms: each request holds the slot for ~0.5 s.
    let sim = LlmSim::start(&["--slots", "1", "--decode-ms-per-token", "10"]);
    let start = Instant::now();
    // Three clients at once, each timing its own first token.
    let readers: Vec<_> = (0..3)
        .map(|i| {
            let addr = sim.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.send(post(
                    "/v1/chat/completions",
                    &chat_body(&format!("q{i}"), true, 50),
                ));
                assert_eq!(c.read_head().status, 200);
                c.next_chunk().expect("first token");
                let first = start.elapsed();
                while c.next_chunk().is_some() {}
                first
            })
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(2), || sim.running_waiting() == (1, 2)),
        "{:?}",
        sim.running_waiting()
    );
    let mut firsts: Vec<Duration> = readers.into_iter().map(|t| t.join().unwrap()).collect();
    firsts.sort();
    // Each one starts only when the one before has its 50 tokens.
    assert!(firsts[0] < Duration::from_millis(400), "{firsts:?}");
    assert!(firsts[1] >= Duration::from_millis(450), "{firsts:?}");
    assert!(firsts[2] >= Duration::from_millis(900), "{firsts:?}");
    assert_eq!(sim.running_waiting(), (0, 0));
    assert_eq!(sim.metric("vllm:request_success_total"), 3.0);
}

#[test]
fn fail_modes_429_and_503_carry_retry_after_and_flip_at_run_time() {
    let sim = LlmSim::start(&[
        "--fail-mode",
        "429",
        "--retry-after",
        "7",
        "--max-tokens",
        "2",
    ]);
    let body = chat_body("hi", false, 2);
    let mut c = Client::connect(sim.addr);
    let r = c.request(post("/v1/chat/completions", &body));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(json(&r.text())["code"], 429);
    assert_eq!(
        c.request("GET /health HTTP/1.1\r\nHost: s\r\n\r\n").status,
        200
    );
    sim.set_mode("503 3");
    let r = c.request(post("/v1/completions", r#"{"prompt":"x"}"#));
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("3"));
    sim.set_mode("ok");
    let r = c.request(post("/v1/chat/completions", &body));
    assert_eq!(r.status, 200);
    assert!(r.header("retry-after").is_none());
    assert_eq!(sim.metric("ringway_sim_requests_refused_total"), 2.0);
    let r = Client::connect(sim.addr).request(post("/admin/mode", "slow"));
    assert_eq!(r.status, 400);
}

#[test]
fn a_hung_server_stays_healthy_and_sends_no_token_until_it_recovers() {
    let sim = LlmSim::start(&["--fail-mode", "hang", "--decode-ms-per-token", "1"]);
    let mut whole = Client::connect(sim.addr);
    whole.send(post("/v1/chat/completions", &chat_body("hi", false, 3)));
    let mut streamed = Client::connect(sim.addr);
    streamed.send(post("/v1/chat/completions", &chat_body("hi", true, 3)));
    assert_eq!(streamed.read_head().status, 200);
    assert!(whole.read_raw(Duration::from_millis(400)).is_empty());
    assert!(
        streamed.read_raw(Duration::from_millis(100)).is_empty(),
        "a token came out"
    );
    assert_eq!(
        Client::connect(sim.addr)
            .request("GET /health HTTP/1.1\r\nHost: s\r\n\r\n")
            .status,
        200
    );
    assert_eq!(sim.running_waiting(), (2, 0));
    sim.set_mode("ok");
    let r = whole.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(json(&r.text())["usage"]["completion_tokens"], 3);
    let mut body = Vec::new();
    while let Some(chunk) = streamed.next_chunk() {
        body.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&body).ends_with("data: [DONE]\n\n"));
}

#[test]
fn a_client_that_goes_away_leaves_the_running_and_waiting_counts_at_once() {
    let sim = LlmSim::start(&["--slots", "1", "--decode-ms-per-token", "20"]);
    let mut streaming = Client::connect(sim.addr);
    streaming.send(post("/v1/chat/completions", &chat_body("a", true, 1000)));
    assert_eq!(streaming.read_head().status, 200);
    streaming.next_chunk().expect("a first token");
    let mut queued = Client::connect(sim.addr);
    queued.send(post("/v1/chat/completions", &chat_body("b", false, 1000)));
    assert!(wait_until(Duration::from_secs(2), || sim.running_waiting() == (1, 1)));
    // Gone while queued.
    drop(queued);
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(1), || sim.running_waiting() == (1, 0)));
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    // Gone mid-stream.
    drop(streaming);
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(1), || sim.running_waiting() == (0, 0)));
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(sim.metric("ringway_sim_requests_cancelled_total"), 2.0);
    assert_eq!(sim.metric("vllm:request_success_total"), 0.0);
}

fn a_stream_through_the_proxy_arrives_intact(driver: &str) {
    let sim = LlmSim::start(&["--decode-ms-per-token", "5"]);
    let p = Proxy::start(driver, &single(sim.addr));
    let mut c = Client::connect(p.addr);
    let r = c.request(post("/v1/chat/completions", &chat_body("hi", true, 20)));
    assert_eq!(r.status, 200);
    let events = sse_events(&r.text());
    assert_eq!(events.len(), 22, "{}", r.text());
    assert_eq!(events[21], "[DONE]");
    let r = c.request(post("/v1/chat/completions", &chat_body("hi", false, 20)));
    assert_eq!(json(&r.text())["usage"]["completion_tokens"], 20);
}
both_drivers!(a_stream_through_the_proxy_arrives_intact);

/// Through the proxy: a client that leaves mid-stream, or while its request waits in the
/// server's queue, stops the generation (the proxy closes its upstream connection, and the
/// simulator's running and waiting counts drop).
fn a_client_leaving_the_proxy_stops_the_generation(driver: &str) {
    let sim = LlmSim::start(&["--slots", "1", "--decode-ms-per-token", "20"]);
    let p = Proxy::start(driver, &single(sim.addr));
    let mut streaming = Client::connect(p.addr);
    streaming.send(post("/v1/chat/completions", &chat_body("a", true, 1000)));
    assert_eq!(streaming.read_head().status, 200);
    streaming.next_chunk().expect("a first token");
    let mut queued = Client::connect(p.addr);
    queued.send(post("/v1/chat/completions", &chat_body("b", true, 1000)));
    assert!(wait_until(Duration::from_secs(2), || {
        sim.running_waiting() == (1, 1)
    }));
    drop(queued);
    assert!(
        wait_until(Duration::from_secs(1), || sim.running_waiting() == (1, 0)),
        "{:?}",
        sim.running_waiting()
    );
    drop(streaming);
    assert!(
        wait_until(Duration::from_secs(1), || sim.running_waiting() == (0, 0)),
        "{:?}",
        sim.running_waiting()
    );
    assert_eq!(sim.metric("ringway_sim_requests_cancelled_total"), 2.0);
}
both_drivers!(a_client_leaving_the_proxy_stops_the_generation);
