//! The OpenAI wire formats the simulator speaks: request bodies of `/v1/chat/completions`
//! and `/v1/completions` in, completion objects and SSE chunks out (the shapes vLLM sends).

use serde_json::{Value, json};

use super::batch::Timing;

/// Largest `max_tokens` a request may ask for (a 128k-context model's whole window).
pub const MAX_TOKENS_LIMIT: u64 = 131_072;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

/// What the simulator takes from a request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenRequest {
    pub endpoint: Endpoint,
    pub model: Option<String>,
    /// The prompt as the model sees it: for chat, the messages through a chat template
    /// that renders each message on its own, so the prompt of a conversation's next turn
    /// starts with this turn's prompt byte for byte (what makes prefix caching work).
    pub prompt: Vec<u8>,
    pub stream: bool,
    pub max_tokens: Option<u32>,
    /// `stream_options.include_usage`: one more chunk with the token counts.
    pub include_usage: bool,
}

/// How lenient parsing is: `ringway demo` takes `curl -d '{}'` and bodiless GETs as a
/// default streaming chat; the `--llm` server follows the OpenAI API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leniency {
    pub stream_by_default: bool,
    pub empty_body_ok: bool,
}

/// A refused request: its status and an OpenAI-style error message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
        }
    }

    /// The body vLLM sends with an error.
    pub fn body(&self) -> String {
        let kind = match self.status {
            400 => "BadRequestError",
            404 => "NotFoundError",
            405 => "MethodNotAllowed",
            413 => "RequestTooLarge",
            429 => "RateLimitError",
            503 => "ServiceUnavailableError",
            _ => "Error",
        };
        let body = json!({
            "object": "error",
            "message": self.message,
            "type": kind,
            "param": null,
            "code": self.status,
        });
        format!("{body}\n")
    }
}

/// Parses a request body for `endpoint`.
pub fn parse(endpoint: Endpoint, body: &[u8], leniency: Leniency) -> Result<GenRequest, ApiError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) && leniency.empty_body_ok {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad(format!("the body is not valid JSON: {e}")))?
    };
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::bad("the body must be a JSON object"))?;
    let model = match obj.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(ApiError::bad("\"model\" must be a string")),
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => leniency.stream_by_default,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad("\"stream\" must be true or false")),
    };
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(n) = obj.get("n").filter(|n| !n.is_null())
        && n.as_u64() != Some(1)
    {
        return Err(ApiError::bad("the simulator only generates n = 1 choice"));
    }
    let max_tokens = max_tokens(obj)?;
    let empty_ok = leniency.empty_body_ok;
    let prompt = match endpoint {
        Endpoint::Chat => chat_prompt(obj.get("messages"), empty_ok)?,
        Endpoint::Completions => completion_prompt(obj.get("prompt"), empty_ok)?,
    };
    Ok(GenRequest {
        endpoint,
        model,
        prompt,
        stream,
        max_tokens,
        include_usage,
    })
}

/// `max_completion_tokens` (the newer name) or `max_tokens`: a positive integer.
fn max_tokens(obj: &serde_json::Map<String, Value>) -> Result<Option<u32>, ApiError> {
    let raw = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| obj.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)));
    let Some((key, value)) = raw else {
        return Ok(None);
    };
    match value.as_u64() {
        Some(n) if (1..=MAX_TOKENS_LIMIT).contains(&n) => Ok(Some(n as u32)),
        _ => Err(ApiError::bad(format!(
            "\"{key}\" must be an integer from 1 to {MAX_TOKENS_LIMIT}"
        ))),
    }
}

/// The chat template: `<|role|>\ncontent<|end|>\n` per message, then `<|assistant|>\n`
/// (the generation prompt, which is also how the answer starts in the next turn).
fn chat_prompt(messages: Option<&Value>, empty_ok: bool) -> Result<Vec<u8>, ApiError> {
    let list = match messages {
        Some(Value::Array(list)) if !list.is_empty() => list.as_slice(),
        None if empty_ok => &[],
        _ => return Err(ApiError::bad("\"messages\" must be a non-empty array")),
    };
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad(format!("messages[{i}] has no \"role\" string")))?;
        out.extend_from_slice(format!("<|{role}|>\n").as_bytes());
        match m.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => out.extend_from_slice(text.as_bytes()),
            // Content parts: the text ones count; an image or audio part is a placeholder.
            Some(Value::Array(parts)) => {
                for part in parts {
                    match part.get("text").and_then(Value::as_str) {
                        Some(text) => out.extend_from_slice(text.as_bytes()),
                        None => out.extend_from_slice(b"<|media|>"),
                    }
                }
            }
            Some(_) => {
                return Err(ApiError::bad(format!(
                    "messages[{i}].content must be a string or an array of parts"
                )));
            }
        }
        out.extend_from_slice(b"<|end|>\n");
    }
    out.extend_from_slice(b"<|assistant|>\n");
    Ok(out)
}

/// A completion prompt: a string, a one-string array, or token ids (rendered as text).
fn completion_prompt(prompt: Option<&Value>, empty_ok: bool) -> Result<Vec<u8>, ApiError> {
    let bad = || ApiError::bad("\"prompt\" must be a string, [string] or an array of token ids");
    match prompt {
        None if empty_ok => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(text.as_bytes().to_vec()),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(text)] => Ok(text.as_bytes().to_vec()),
            [Value::String(_), ..] => Err(ApiError::bad(
                "the simulator takes one prompt per request, not a batch",
            )),
            ids if !ids.is_empty() && ids.iter().all(Value::is_u64) => {
                let text: Vec<String> = ids.iter().map(|v| v.to_string()).collect();
                Ok(text.join(" ").into_bytes())
            }
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// Who is answering, for the ids and fields of every object sent.
#[derive(Clone, Debug)]
pub struct Stamp {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// Names the server (its port), so a client can tell which one answered.
    pub fingerprint: String,
}

/// Token counts for `usage`.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

impl Usage {
    fn json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

/// Adds where the request's time to first token went to an answer (the finish chunk of a
/// stream, or the whole answer), as `ringway_sim`: microseconds in the server's queue
/// waiting for a slot, holding a slot waiting for the prefill engine, and prefilling, and
/// the prompt bytes the prefix cache did not hold. Not in OpenAI's format (clients ignore
/// unknown fields); `benches/llm` reads it to explain its percentiles.
pub fn add_timing(v: &mut Value, t: &Timing) {
    v["ringway_sim"] = json!({
        "queued_us": t.slotted.saturating_sub(t.submitted),
        "prefill_wait_us": t.prefill_start.saturating_sub(t.slotted),
        "prefill_us": t.first.saturating_sub(t.prefill_start),
        "uncached_bytes": t.uncached,
    });
}

/// One SSE event: `data: {chunk}\n\n`.
pub fn sse(value: &Value) -> String {
    format!("data: {value}\n\n")
}

pub const SSE_DONE: &str = "data: [DONE]\n\n";

/// A streamed chunk carrying `text` (the first one also says the role, as vLLM's does).
pub fn chunk(ep: Endpoint, s: &Stamp, text: &str, first: bool, finish: Option<&str>) -> Value {
    let choice = match ep {
        Endpoint::Chat => {
            let delta = match (first, finish) {
                (_, Some(_)) if text.is_empty() => json!({}),
                (true, _) => json!({"role": "assistant", "content": text}),
                (false, _) => json!({"content": text}),
            };
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
        }
        Endpoint::Completions => {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
        }
    };
    envelope(ep, s, true, vec![choice])
}

/// The last chunk when usage is asked for: no choices, the counts.
pub fn usage_chunk(ep: Endpoint, s: &Stamp, usage: Usage) -> Value {
    let mut v = envelope(ep, s, true, Vec::new());
    v["usage"] = usage.json();
    v
}

/// A whole (non-streamed) answer.
pub fn completion(ep: Endpoint, s: &Stamp, text: &str, finish: &str, usage: Usage) -> Value {
    let choice = match ep {
        Endpoint::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": finish,
        }),
        Endpoint::Completions => {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
        }
    };
    let mut v = envelope(ep, s, false, vec![choice]);
    v["usage"] = usage.json();
    v
}

fn envelope(ep: Endpoint, s: &Stamp, streamed: bool, choices: Vec<Value>) -> Value {
    let object = match (ep, streamed) {
        (Endpoint::Chat, true) => "chat.completion.chunk",
        (Endpoint::Chat, false) => "chat.completion",
        (Endpoint::Completions, _) => "text_completion",
    };
    json!({
        "id": s.id,
        "object": object,
        "created": s.created,
        "model": s.model,
        "system_fingerprint": s.fingerprint,
        "choices": choices,
    })
}

/// The simulated model's words: token `i` of every answer is `word(i)`, so answers are
/// deterministic and the same length in bytes whoever serves them.
pub fn word(i: u32) -> &'static str {
    const OPENING: [&str; 7] = ["Hello", " from", " a", " simulated", " LLM", " server", "."];
    const WORDS: [&str; 16] = [
        " The", " cache", " keeps", " every", " prompt", " block", " it", " has", " seen,", " so",
        " the", " next", " turn", " starts", " sooner", ".",
    ];
    match OPENING.get(i as usize) {
        Some(w) => w,
        None => WORDS[(i as usize - OPENING.len()) % WORDS.len()],
    }
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
