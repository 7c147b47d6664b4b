//! `balance = "prompt"`: the part of a JSON request body that names its conversation, found
//! by the scanner of [`crate::http::model`] over the part of the body kept for replay.
//!
//! For a chat (`"messages": [...]`) the key is the raw JSON text from the array's `[` to the
//! end of its first `"role": "user"` message: every turn of one conversation repeats it
//! unchanged (each prompt is the previous one plus new messages), while two conversations
//! that share a long system prompt differ in it. For a completion (`"prompt": "..."`) it is
//! the first `prompt_prefix` bytes of the string (all of it when shorter). Whichever of the
//! two members comes first decides; a body with neither, with no user message, or cut
//! before the key ends, has no key (the policy then falls back to least_time).
//!
//! Like the model scanner it never panics, never recurses, never allocates, reads each
//! byte a bounded number of times, and gives up (`None`) on anything it cannot follow.

use std::ops::Range;

use crate::http::model::{skip_value, skip_ws, string};

/// The byte range (inside `body`) of the body's prompt key; `prompt_prefix` bounds the key
/// of a bare `prompt` string.
pub fn prompt_key(body: &[u8], prompt_prefix: usize) -> Option<Range<usize>> {
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(body, i);
        if body.get(i)? != &b'"' {
            return None;
        }
        let key = string(body, i)?;
        i = skip_ws(body, key.end + 1);
        if body.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(body, i + 1);
        match (&body[key], body.get(i)) {
            (b"messages", Some(b'[')) => return first_user_turn(body, i),
            (b"prompt", Some(b'"')) => return prompt_start(body, i, prompt_prefix),
            _ => {}
        }
        i = skip_ws(body, skip_value(body, i)?);
        match body.get(i)? {
            b',' => i += 1,
            _ => return None,
        }
    }
}

/// From the `[` at `open` to the end of the first message whose role is `"user"`.
fn first_user_turn(body: &[u8], open: usize) -> Option<Range<usize>> {
    let mut i = open + 1;
    loop {
        i = skip_ws(body, i);
        let end = match body.get(i)? {
            b']' => return None,
            b'{' => {
                let (end, user) = message(body, i)?;
                if user {
                    return Some(open..end);
                }
                end
            }
            _ => skip_value(body, i)?,
        };
        i = skip_ws(body, end);
        match body.get(i)? {
            b',' => i += 1,
            _ => return None,
        }
    }
}

/// The message object whose `{` is at `open`: the index just past its `}`, and whether
/// its `role` is the string `user`.
fn message(body: &[u8], open: usize) -> Option<(usize, bool)> {
    let mut user = false;
    let mut i = skip_ws(body, open + 1);
    if body.get(i)? == &b'}' {
        return Some((i + 1, false));
    }
    loop {
        if body.get(i)? != &b'"' {
            return None;
        }
        let key = string(body, i)?;
        i = skip_ws(body, key.end + 1);
        if body.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(body, i + 1);
        let value_end = skip_value(body, i)?;
        if &body[key] == b"role" && body.get(i) == Some(&b'"') {
            user = body.get(i + 1..value_end - 1) == Some(b"user".as_slice());
        }
        i = skip_ws(body, value_end);
        match body.get(i)? {
            b',' => i = skip_ws(body, i + 1),
            b'}' => return Some((i + 1, user)),
            _ => return None,
        }
    }
}

/// The first `prefix` bytes of the string whose `"` is at `open`, or the whole string when
/// it is shorter. A string cut by the end of `body` before either is no key yet.
fn prompt_start(body: &[u8], open: usize, prefix: usize) -> Option<Range<usize>> {
    let start = open + 1;
    let wanted = start.saturating_add(prefix);
    match string(body, open) {
        Some(whole) if whole.end <= wanted => Some(whole),
        _ if body.len() >= wanted => Some(start..wanted),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &str) -> Option<&str> {
        prompt_key(body.as_bytes(), 16).map(|r| &body[r])
    }

    const SYSTEM: &str = r#"{"role":"system","content":"You are helpful."}"#;

    fn chat(turns: &[(&str, &str)]) -> String {
        let messages: Vec<String> = std::iter::once(SYSTEM.to_string())
            .chain(
                turns
                    .iter()
                    .map(|(role, text)| format!(r#"{{"role":"{role}","content":"{text}"}}"#)),
            )
            .collect();
        format!(
            r#"{{"model":"m","messages":[{}],"stream":true}}"#,
            messages.join(",")
        )
    }

    #[test]
    fn a_chat_key_runs_to_the_end_of_the_first_user_message() {
        let body = chat(&[("user", "hi"), ("assistant", "hello"), ("user", "more")]);
        let want = format!(r#"[{SYSTEM},{{"role":"user","content":"hi"}}"#);
        assert_eq!(key(&body), Some(want.as_str()));
    }

    #[test]
    fn every_turn_of_a_conversation_has_the_same_key() {
        let first = chat(&[("user", "plan a trip")]);
        let second = chat(&[
            ("user", "plan a trip"),
            ("assistant", "where to?"),
            ("user", "Rome"),
        ]);
        assert_eq!(key(&first), key(&second));
        // Another conversation with the same system prompt differs.
        let other = chat(&[("user", "write a poem")]);
        assert_ne!(key(&first), key(&other));
    }

    #[test]
    fn role_may_come_after_content_and_content_may_be_parts() {
        let body = r#"{"messages":[{"content":[{"type":"text","text":"x"}],"role":"user"},{"role":"user","content":"y"}]}"#;
        let want = r#"[{"content":[{"type":"text","text":"x"}],"role":"user"}"#;
        assert_eq!(key(body), Some(want));
    }

    #[test]
    fn a_prompt_key_is_its_first_prompt_prefix_bytes() {
        assert_eq!(
            key(r#"{"prompt":"Once upon a time, far away","max_tokens":8}"#),
            Some("Once upon a time")
        );
        assert_eq!(key(r#"{"prompt":"short"}"#), Some("short"));
        // Cut inside the first 16 bytes: not known yet. Cut after them: known.
        assert_eq!(key(r#"{"prompt":"Once upon"#), None);
        assert_eq!(
            key(r#"{"prompt":"Once upon a time, f"#),
            Some("Once upon a time")
        );
    }

    #[test]
    fn no_key_without_a_user_message_a_prompt_string_or_the_whole_turn() {
        assert_eq!(key(r#"{"model":"m"}"#), None);
        assert_eq!(key(r#"{"messages":[]}"#), None);
        assert_eq!(key(&format!(r#"{{"messages":[{SYSTEM}]}}"#)), None);
        assert_eq!(key(r#"{"prompt":["a","b"]}"#), None);
        assert_eq!(key(r#"{"prompt":[1,2,3]}"#), None);
        assert_eq!(key(r#"{"opts":{"messages":[{"role":"user"}]}}"#), None);
        assert_eq!(key(r#"["messages"]"#), None);
        let body = chat(&[("user", "hi")]);
        let end = body.find("hi").unwrap() + 3;
        assert_eq!(key(&body[..end]), None);
        assert!(key(&body[..end + 1]).is_some());
    }

    #[test]
    fn the_first_of_messages_and_prompt_decides() {
        assert_eq!(
            key(r#"{"prompt":"p","messages":[{"role":"user"}]}"#),
            Some("p")
        );
        assert_eq!(
            key(r#"{"messages":[{"role":"user"}],"prompt":"p"}"#),
            Some(r#"[{"role":"user"}"#)
        );
    }

    /// Seeded mutations of real bodies (the fuzz target's seeds): whatever comes back lies
    /// inside the input.
    #[test]
    fn seeded_mutations_never_panic_and_stay_in_bounds() {
        let seeds: Vec<Vec<u8>> = vec![
            chat(&[("user", "hi"), ("assistant", "yo"), ("user", "x")]).into_bytes(),
            br#"{"prompt":"once upon a time in a land","max_tokens":16,"model":"llama"}"#.to_vec(),
            br#"{"messages":[{"content":[{"type":"text","text":"a\"b"}],"role":"user"}]}"#.to_vec(),
            br#"{"messages":[{},[],"x",{"role":{"a":1}},{"role":"user"}],"prompt":"p"}"#.to_vec(),
        ];
        let alphabet = b"{}[]\":,\\ \nuserolmp";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let mut body = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % (body.len() + 1);
                let byte = alphabet[(next() as usize) % alphabet.len()];
                match next() % 4 {
                    0 if at < body.len() => body[at] = byte,
                    1 => body.insert(at, byte),
                    2 if at < body.len() => {
                        body.remove(at);
                    }
                    _ => body.truncate(at),
                }
            }
            let prefix = (next() % 40) as usize;
            if let Some(r) = prompt_key(&body, prefix) {
                assert!(r.start <= r.end && r.end <= body.len(), "{r:?} in {body:?}");
            }
        }
    }
}
