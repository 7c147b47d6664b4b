//! Reading a server's metrics page (the Prometheus text format, 0.0.4; OpenMetrics text
//! reads the same way for gauges): the sum of one metric's samples over all its label sets
//! — vLLM, for one, reports one sample per engine and model.
//!
//! Lenient and pure: comments (`# HELP`, `# TYPE`, `# EOF`) and blank lines are skipped, a
//! line that does not parse is skipped, a sample whose value is `NaN` or infinite counts as
//! nothing; never panics on any input.

/// The sum of every sample named `name` in `text`; `None` when no usable sample has that
/// name (the metric is missing, or all its values were `NaN`).
pub fn sum(text: &[u8], name: &str) -> Option<f64> {
    let mut total: Option<f64> = None;
    for line in text.split(|&b| b == b'\n') {
        if let Some(value) = sample(line, name.as_bytes()) {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// The value of `line` when it is a finite sample of `name`.
fn sample(line: &[u8], name: &[u8]) -> Option<f64> {
    let line = line.trim_ascii();
    let rest = line.strip_prefix(name)?;
    // The name must end here: `vllm:x` is not a sample of `vllm:x_total`'s prefix `vllm:x`.
    let rest = match rest.first()? {
        b'{' => after_labels(&rest[1..])?,
        b' ' | b'\t' => rest,
        _ => return None,
    };
    let rest = rest.trim_ascii_start();
    let end = rest
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    let value: f64 = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    // Anything after the value is an optional timestamp.
    value.is_finite().then_some(value)
}

/// What follows the `}` closing a label set whose `{` was just passed; label values are
/// quoted strings in which `\` escapes the next byte (so `"a}\"b"` is one value).
fn after_labels(text: &[u8]) -> Option<&[u8]> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in text.iter().enumerate() {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => quoted = !quoted,
            (false, _, b'}') => return Some(&text[i + 1..]),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLLM: &[u8] = b"\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine=\"0\",model_name=\"llama\"} 3.0
vllm:num_requests_running{engine=\"1\",model_name=\"llama\"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine=\"0\",model_name=\"llama\"} 1.5e+01
vllm:num_requests_waiting{engine=\"1\",model_name=\"llama\"} 0.0
vllm:num_requests_waiting_by_reason{reason=\"capacity\"} 99
";

    #[test]
    fn samples_are_summed_over_label_sets() {
        assert_eq!(sum(VLLM, "vllm:num_requests_running"), Some(5.0));
        assert_eq!(sum(VLLM, "vllm:num_requests_waiting"), Some(15.0));
    }

    #[test]
    fn a_longer_name_with_the_same_beginning_is_another_metric() {
        assert_eq!(sum(VLLM, "vllm:num_requests"), None);
        assert_eq!(sum(VLLM, "vllm:num_requests_waiting_by"), None);
        assert_eq!(sum(b"tgi_queue_size_total 4\n", "tgi_queue_size"), None);
    }

    #[test]
    fn bare_samples_timestamps_and_exponents() {
        let text = b"tgi_queue_size 7\ntgi_batch_current_size 4 1700000000000\n\
                     llamacpp:requests_deferred\t2E0\r\n  sglang:num_queue_reqs{} 1e-0\n";
        assert_eq!(sum(text, "tgi_queue_size"), Some(7.0));
        assert_eq!(sum(text, "tgi_batch_current_size"), Some(4.0));
        assert_eq!(sum(text, "llamacpp:requests_deferred"), Some(2.0));
        assert_eq!(sum(text, "sglang:num_queue_reqs"), Some(1.0));
    }

    #[test]
    fn nan_and_infinities_count_as_nothing() {
        let text = b"q{a=\"1\"} NaN\nq{a=\"2\"} +Inf\nq{a=\"3\"} -Inf\nq{a=\"4\"} 2\n";
        assert_eq!(sum(text, "q"), Some(2.0));
        assert_eq!(sum(b"q NaN\n", "q"), None);
    }

    #[test]
    fn label_values_may_hold_braces_quotes_and_spaces() {
        let text = br#"q{path="/a}b",note="say \"hi\" } {",x="\\"} 3
q{unclosed="} 5
"#;
        assert_eq!(sum(text, "q"), Some(3.0));
    }

    #[test]
    fn comments_and_garbage_are_skipped() {
        let text = b"# q 100\n#q 100\nq\nq{\nq 1 2 3\nq abc\nq 4\n\xff\xfe q 9\n";
        assert_eq!(sum(text, "q"), Some(5.0));
        assert_eq!(sum(b"", "q"), None);
    }

    /// Bytes that matter to the parser, to damage pages with.
    const ALPHABET: &[u8] = b"{}\"\\ \n=#9eE.+-";

    /// A seeded mutation check: the parser never panics on damaged pages.
    #[test]
    fn mutated_pages_never_panic() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let mut page = VLLM.to_vec();
            for _ in 0..(next() % 8) {
                let at = (next() % page.len() as u64) as usize;
                page[at] = ALPHABET[(next() % ALPHABET.len() as u64) as usize];
            }
            let _ = sum(&page, "vllm:num_requests_waiting");
        }
    }
}
