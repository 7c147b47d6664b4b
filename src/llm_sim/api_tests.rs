//! Request parsing and the shapes of what the simulator sends.

use super::*;

const STRICT: Leniency = Leniency {
    stream_by_default: false,
    empty_body_ok: false,
};
const DEMO: Leniency = Leniency {
    stream_by_default: true,
    empty_body_ok: true,
};

fn chat(body: &str) -> Result<GenRequest, ApiError> {
    parse(Endpoint::Chat, body.as_bytes(), STRICT)
}

#[test]
fn a_chat_request_gives_model_stream_max_tokens_and_a_templated_prompt() {
    let r = chat(
        r#"{"model":"m","stream":true,"max_tokens":7,"temperature":0.2,
            "stream_options":{"include_usage":true},
            "messages":[{"role":"system","content":"be brief"},
                        {"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
    )
    .unwrap();
    assert_eq!(r.model.as_deref(), Some("m"));
    assert!(r.stream && r.include_usage);
    assert_eq!(r.max_tokens, Some(7));
    assert_eq!(
        String::from_utf8(r.prompt).unwrap(),
        "<|system|>\nbe brief<|end|>\n<|user|>\nhi<|end|>\n<|assistant|>\n"
    );
    let r =
        chat(r#"{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":3}"#).unwrap();
    assert_eq!((r.stream, r.max_tokens, r.model), (false, Some(3), None));
}

#[test]
fn the_next_turns_prompt_starts_with_this_turns_prompt() {
    let turn1 =
        chat(r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"q1"}]}"#)
            .unwrap();
    let turn2 = chat(
        r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"q1"},
            {"role":"assistant","content":"a1"},{"role":"user","content":"q2"}]}"#,
    )
    .unwrap();
    assert!(turn2.prompt.starts_with(&turn1.prompt));
}

#[test]
fn completion_prompts_are_a_string_one_string_or_token_ids() {
    let p = |body: &str| parse(Endpoint::Completions, body.as_bytes(), STRICT);
    assert_eq!(p(r#"{"prompt":"abc"}"#).unwrap().prompt, b"abc");
    assert_eq!(p(r#"{"prompt":["abc"]}"#).unwrap().prompt, b"abc");
    assert_eq!(p(r#"{"prompt":[1,22,3]}"#).unwrap().prompt, b"1 22 3");
    assert!(
        p(r#"{"prompt":["a","b"]}"#)
            .unwrap_err()
            .message
            .contains("batch")
    );
    assert!(p(r#"{"prompt":{}}"#).is_err());
    assert!(p(r#"{}"#).is_err());
}

#[test]
fn bad_bodies_are_refused_with_400_and_a_reason() {
    for (body, says) in [
        ("", "not valid JSON"),
        (
            "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}",
            "not valid JSON",
        ),
        ("[1]", "JSON object"),
        ("{\"messages\":[]}", "non-empty array"),
        ("{\"messages\":[{\"content\":\"x\"}]}", "role"),
        (
            "{\"messages\":[{\"role\":\"user\",\"content\":5}]}",
            "content",
        ),
        (
            "{\"messages\":[{\"role\":\"user\"}],\"stream\":\"yes\"}",
            "stream",
        ),
        (
            "{\"messages\":[{\"role\":\"user\"}],\"max_tokens\":0}",
            "max_tokens",
        ),
        (
            "{\"messages\":[{\"role\":\"user\"}],\"max_tokens\":-3}",
            "max_tokens",
        ),
        (
            "{\"messages\":[{\"role\":\"user\"}],\"max_tokens\":1e9}",
            "max_tokens",
        ),
        ("{\"messages\":[{\"role\":\"user\"}],\"n\":2}", "n = 1"),
        ("{\"messages\":[{\"role\":\"user\"}],\"model\":3}", "model"),
    ] {
        let e = chat(body).unwrap_err();
        assert_eq!(e.status, 400, "{body}");
        assert!(e.message.contains(says), "{body}: {}", e.message);
        let json: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(json["code"], 400);
        assert_eq!(json["type"], "BadRequestError");
    }
}

#[test]
fn the_demo_takes_an_empty_body_as_a_streaming_chat() {
    let r = parse(Endpoint::Chat, b"", DEMO).unwrap();
    assert!(r.stream);
    assert_eq!(r.prompt, b"<|assistant|>\n");
    assert!(parse(Endpoint::Chat, b"{}", DEMO).unwrap().stream);
    assert!(
        !parse(Endpoint::Chat, b"{\"stream\":false}", DEMO)
            .unwrap()
            .stream
    );
    assert!(parse(Endpoint::Chat, b"nope", DEMO).is_err());
}

#[test]
fn chunks_and_completions_have_the_openai_shapes() {
    let s = Stamp {
        id: "chatcmpl-1".into(),
        created: 7,
        model: "m".into(),
        fingerprint: "fp".into(),
    };
    let first = chunk(Endpoint::Chat, &s, "Hi", true, None);
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(first["choices"][0]["delta"]["content"], "Hi");
    assert!(first["choices"][0]["finish_reason"].is_null());
    let last = chunk(Endpoint::Chat, &s, "", false, Some("length"));
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    let text = chunk(Endpoint::Completions, &s, " x", false, None);
    assert_eq!(text["object"], "text_completion");
    assert_eq!(text["choices"][0]["text"], " x");
    let usage = Usage {
        prompt: 3,
        completion: 2,
    };
    let whole = completion(Endpoint::Chat, &s, "Hi x", "stop", usage);
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["content"], "Hi x");
    assert_eq!(whole["usage"]["total_tokens"], 5);
    let u = usage_chunk(Endpoint::Chat, &s, usage);
    assert_eq!(u["choices"], json!([]));
    assert_eq!(sse(&json!({"a":1})), "data: {\"a\":1}\n\n");
}

#[test]
fn answers_are_the_same_words_for_every_request() {
    let text: String = (0..9).map(word).collect();
    assert_eq!(text, "Hello from a simulated LLM server. The cache");
    assert_eq!(word(7 + 16), word(7));
}

#[test]
fn timing_is_added_in_microseconds_per_phase() {
    let mut v = serde_json::json!({"id": "x"});
    let t = Timing {
        submitted: 100,
        slotted: 350,
        prefill_start: 1_350,
        first: 4_350,
        uncached: 1_500,
    };
    add_timing(&mut v, &t);
    assert_eq!(
        v["ringway_sim"],
        serde_json::json!({"queued_us": 250, "prefill_wait_us": 1000, "prefill_us": 3000,
                           "uncached_bytes": 1500})
    );
    assert_eq!(v["id"], "x");
}
