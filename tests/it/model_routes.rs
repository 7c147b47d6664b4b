//! Routing by the `"model"` of a JSON request body (`[[listener.route]] model = ...`): the
//! body is read into the replay copy until the model is found, then streamed unchanged; a
//! model beyond `client_body_buffer_size`, or none, goes to the listener's upstream.

use std::time::Duration;

use crate::support::*;

/// Backends `chat` (the default), `embed` (model "bge-m3") and `small` (model "llama-8b" on
/// /v1/ paths only) behind one listener with a `client_body_buffer_size` of 1k.
fn fleet(driver: &str) -> (Proxy, [Backend; 3]) {
    let listener = r#"[[listener]]
name = "it"
bind = "$BIND"
upstream = "chat"
client_body_buffer_size = "1k"

[[listener.route]]
model = "bge-m3"
upstream = "embed"

[[listener.route]]
path_prefix = "/v1/"
model = "llama-8b"
upstream = "small"
"#;
    three_upstreams(driver, ["chat", "embed", "small"], listener)
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A chat body whose `"model"` comes after `pad` bytes of message text.
fn chat_body(model: &str, pad: usize) -> String {
    format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}],"model":"{model}","stream":false}}"#,
        "x".repeat(pad)
    )
}

fn requests_go_to_the_upstream_of_their_body_model(driver: &str) {
    let (p, backends) = fleet(driver);
    let mut c = Client::connect(p.addr);
    let cases = [
        (
            "/v1/embeddings",
            r#"{"model":"bge-m3","input":["a"]}"#.to_string(),
            "embed",
        ),
        ("/v1/chat/completions", chat_body("llama-8b", 10), "small"),
        // The second route also asks for a /v1/ path.
        ("/other", chat_body("llama-8b", 10), "chat"),
        ("/v1/chat/completions", chat_body("gpt-4o", 10), "chat"),
        // A nested "model" is not the request's model.
        (
            "/v1/x",
            r#"{"opts":{"model":"bge-m3"}}"#.to_string(),
            "chat",
        ),
        ("/v1/x", "not json, model bge-m3".to_string(), "chat"),
    ];
    for (path, body, want) in &cases {
        let r = c.request(post(path, body));
        assert_eq!(r.status, 200, "{path} {body}");
        assert_eq!(r.text(), *want, "{path} {body}");
    }
    // Each backend got the body unchanged.
    let seen: Vec<String> = backends
        .iter()
        .flat_map(|b| b.requests())
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    for (_, body, _) in &cases {
        assert!(seen.contains(body), "{body} not forwarded whole");
    }
}
both_drivers!(requests_go_to_the_upstream_of_their_body_model);

fn a_model_beyond_the_body_buffer_goes_to_the_default_upstream(driver: &str) {
    let (p, backends) = fleet(driver);
    let mut c = Client::connect(p.addr);
    // The model ends within the first 1k bytes: routed.
    let near = chat_body("bge-m3", 900);
    assert_eq!(c.request(post("/v1/x", &near)).text(), "embed");
    // It comes after 4k of prompt: the body is streamed on to the default upstream, whole.
    let far = chat_body("bge-m3", 4000);
    let r = c.request(post("/v1/x", &far));
    assert_eq!((r.status, r.text().as_str()), (200, "chat"));
    let got = backends[0].requests();
    assert_eq!(got.last().map(|r| r.body.clone()), Some(far.into_bytes()));
}
both_drivers!(a_model_beyond_the_body_buffer_goes_to_the_default_upstream);

fn expect_100_continue_gets_its_100_before_the_body_decides_the_route(driver: &str) {
    let (p, backends) = fleet(driver);
    let body = r#"{"model":"bge-m3","input":"hello"}"#;
    let mut c = Client::connect(p.addr);
    c.send(format!(
        "POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    ));
    // The client sends nothing more until it is told to continue.
    let interim = c.read_exact_within(25, Duration::from_secs(5));
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(backends[1].request_count(), 0);
    c.send(body);
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "embed"));
    assert_eq!(backends[1].requests()[0].body, body.as_bytes());
}
both_drivers!(expect_100_continue_gets_its_100_before_the_body_decides_the_route);

fn a_chunked_body_is_routed_by_a_model_split_over_chunks_and_reads(driver: &str) {
    let (p, backends) = fleet(driver);
    let body = chat_body("llama-8b", 200);
    let split = body.find("llama").expect("model in body") + 3;
    let mut c = Client::connect(p.addr);
    c.send(format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{}\r\n",
        split,
        &body[..split]
    ));
    // The rest comes a moment later, in another read: the route waits for it.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(backends[2].heads() + backends[0].heads(), 0);
    c.send(format!(
        "{:x}\r\n{}\r\n0\r\n\r\n",
        body.len() - split,
        &body[split..]
    ));
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "small"));
    let got = &backends[2].requests()[0];
    assert!(got.chunked);
    assert_eq!(got.body, body.as_bytes());
}
both_drivers!(a_chunked_body_is_routed_by_a_model_split_over_chunks_and_reads);

/// Reading stops once the model is known: the rest of the body streams to the server as the
/// client sends it (a large prompt after the model is not held back).
fn the_body_is_held_back_only_until_its_model_is_known(driver: &str) {
    let (p, backends) = fleet(driver);
    let rest = r#""input":["a long text"]}"#;
    let first = r#"{"model":"bge-m3","#;
    let mut c = Client::connect(p.addr);
    c.send(format!(
        "POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{first}",
        first.len() + rest.len()
    ));
    assert!(
        wait_until(Duration::from_secs(5), || backends[1].heads() == 1),
        "the request waited for the whole body"
    );
    c.send(rest);
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "embed"));
    assert_eq!(
        backends[1].requests()[0].body,
        format!("{first}{rest}").as_bytes()
    );
}
both_drivers!(the_body_is_held_back_only_until_its_model_is_known);

/// A listener without model routes does not wait for the body: the head reaches the server
/// before the client has sent any of it.
fn without_model_routes_the_body_is_not_waited_for(driver: &str) {
    let b = Backend::start(|req, c| {
        c.ok(&String::from_utf8_lossy(&req.body));
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 16\r\n\r\n{\"model\":");
    assert!(wait_until(Duration::from_secs(5), || b.heads() == 1));
    c.send("\"m1\"}  ");
    assert_eq!(c.read_response().text(), "{\"model\":\"m1\"}  ");
}
both_drivers!(without_model_routes_the_body_is_not_waited_for);
