//! `$request_model`: the top-level `"model"` string of a JSON request body, found by a small
//! scanner over the part of the body kept for replay (`RequestBodyState::prefix`).
//!
//! The scanner never panics, never recurses (nesting is a counter), never allocates, and
//! reads each byte at most once. It is not a validator: it gives up (`None`) on anything that
//! is not a JSON object whose `model` member it can reach before the bytes end, which is
//! what a truncated prefix of a large body looks like when `model` comes after the prompt.

use std::ops::Range;

/// Longest model name reported; a longer value is treated as absent (a real model name is
/// short, and the value ends up in log lines and hash keys).
pub const MAX_MODEL_LEN: usize = 512;

/// The byte range (inside `body`, quotes excluded) of the value of the first top-level
/// `"model"` member when it is a string. Escapes are not decoded: the raw JSON text is
/// returned, so `"a\"b"` gives `a\"b`. A value holding control bytes is refused, so the
/// result never contains CR or LF.
pub fn request_model(body: &[u8]) -> Option<Range<usize>> {
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(body, i);
        match body.get(i)? {
            b'}' => return None,
            b'"' => {}
            _ => return None,
        }
        let key = string(body, i)?;
        i = skip_ws(body, key.end + 1);
        if body.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(body, i + 1);
        if &body[key] == b"model" && body.get(i) == Some(&b'"') {
            let value = string(body, i)?;
            let plain = body[value.clone()].iter().all(|&b| b >= 0x20);
            return (plain && value.len() <= MAX_MODEL_LEN).then_some(value);
        }
        i = skip_value(body, i)?;
        i = skip_ws(body, i);
        match body.get(i)? {
            b',' => i += 1,
            _ => return None,
        }
    }
}

pub(super) fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while matches!(body.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// The contents of the string whose opening quote is at `open` (the closing quote is at the
/// range's end).
pub(super) fn string(body: &[u8], open: usize) -> Option<Range<usize>> {
    let start = open + 1;
    let mut i = start;
    loop {
        match body.get(i)? {
            b'"' => return Some(start..i),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The index just past the value starting at `i`: a string, an object or array (nesting
/// counted, strings inside skipped), or a scalar (up to the next delimiter).
pub(super) fn skip_value(body: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *body.get(i)? {
            b'"' => {
                i = string(body, i)?.end + 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            // A closer or comma at depth 0 ends a scalar and is not part of it.
            b'}' | b']' | b',' if depth == 0 => return Some(i),
            b'}' | b']' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(body: &str) -> Option<&str> {
        request_model(body.as_bytes()).map(|r| &body[r])
    }

    #[test]
    fn finds_the_top_level_model_string() {
        assert_eq!(model(r#"{"model":"gpt-4o","stream":true}"#), Some("gpt-4o"));
        assert_eq!(
            model(" {\n  \"stream\": true,\n  \"model\" : \"llama-3\"\n}"),
            Some("llama-3")
        );
        assert_eq!(model(r#"{"model":""}"#), Some(""));
    }

    #[test]
    fn skips_nested_objects_arrays_and_strings_before_it() {
        let body = r#"{"messages":[{"role":"user","content":"say \"model\": {x]"}],
                      "opts":{"model":"inner","n":[1,2,{"a":"}"}]},"n":-1.5e3,"ok":false,
                      "nil":null,"model":"outer"}"#;
        assert_eq!(model(body), Some("outer"));
    }

    #[test]
    fn nested_or_non_string_model_is_absent() {
        assert_eq!(model(r#"{"opts":{"model":"inner"}}"#), None);
        assert_eq!(model(r#"{"model":42}"#), None);
        assert_eq!(model(r#"{"model":null,"x":"model"}"#), None);
        assert_eq!(model(r#"["model","gpt"]"#), None);
        assert_eq!(model(r#""model""#), None);
        assert_eq!(model(""), None);
        assert_eq!(model("{}"), None);
    }

    #[test]
    fn first_model_member_wins_and_escapes_stay_raw() {
        assert_eq!(model(r#"{"model":"a","model":"b"}"#), Some("a"));
        assert_eq!(model(r#"{"model":"a\"b\\"}"#), Some(r#"a\"b\\"#));
        // An escaped key is not decoded, so it is not `model`.
        assert_eq!(model(r#"{"mod\u0065l":"x"}"#), None);
    }

    #[test]
    fn truncated_bodies_give_up_quietly() {
        let full = r#"{"messages":[{"role":"user","content":"hi"}],"model":"m1"}"#;
        let closed = full.len() - 2; // the model string's closing quote
        for end in 0..full.len() {
            let got = request_model(&full.as_bytes()[..end]).map(|r| &full[r]);
            // Found as soon as the string is whole: the rest of the body is not needed.
            let want = (end > closed).then_some("m1");
            assert_eq!(got, want, "prefix of {end} bytes");
        }
    }

    #[test]
    fn control_bytes_and_overlong_values_are_refused() {
        assert_eq!(model("{\"model\":\"a\nb\"}"), None);
        let long = format!(r#"{{"model":"{}"}}"#, "x".repeat(MAX_MODEL_LEN + 1));
        assert_eq!(model(&long), None);
        let fits = format!(r#"{{"model":"{}"}}"#, "x".repeat(MAX_MODEL_LEN));
        assert_eq!(model(&fits).map(str::len), Some(MAX_MODEL_LEN));
    }

    #[test]
    fn malformed_separators_give_up() {
        assert_eq!(model(r#"{"a" 1,"model":"x"}"#), None);
        assert_eq!(model(r#"{"a":1 "model":"x"}"#), None);
        assert_eq!(model(r#"{model:"x"}"#), None);
        assert_eq!(model(r#"{"a":1,,"model":"x"}"#), None);
    }

    /// Seeded mutations of real request bodies: whatever the scanner returns lies inside the
    /// input, between quotes, and holds no control byte.
    #[test]
    fn seeded_mutations_never_panic_and_stay_in_bounds() {
        let seeds: [&[u8]; 4] = [
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            br#"{"messages":[{"role":"system","content":"a\"b"},{"role":"user","content":"x"}],"model":"m"}"#,
            br#"{"prompt":"once upon","max_tokens":16,"temperature":0.7,"model":"llama"}"#,
            br#"{"input":["a","b"],"opts":{"model":"x","n":[1,[2,[3]]]},"model":"bge-m3"}"#,
        ];
        let alphabet = b"{}[]\":,\\ \nmodel0-";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let mut body = seeds[round % seeds.len()].to_vec();
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
            if let Some(r) = request_model(&body) {
                assert!(r.start >= 1 && r.end < body.len(), "{r:?} in {body:?}");
                assert_eq!(body[r.start - 1], b'"');
                assert_eq!(body[r.end], b'"');
                assert!(body[r].iter().all(|&b| b >= 0x20));
            }
        }
    }
}
