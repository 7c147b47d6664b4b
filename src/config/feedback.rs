//! `load_feedback` of an upstream group: which metrics page to poll (`path`), which of its
//! metrics count the server's waiting and running requests (`waiting`, `running`, or a
//! `preset` naming an engine), and how often (`interval`).

use std::time::Duration;

use toml::Spanned;

use super::check::Zero;
use super::raw::RawLoadFeedback;
use super::source::{Report, join};
use crate::snapshot::LoadFeedback;

/// The engines ringway knows the metric names of: (preset, waiting, running). Names as
/// each engine exports them on `/metrics` (vLLM's V1 engine, SGLang with
/// `--enable-metrics`, TGI, llama.cpp's server with `--metrics`).
pub const PRESETS: [(&str, &str, &str); 4] = [
    (
        "vllm",
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
    ),
    ("sglang", "sglang:num_queue_reqs", "sglang:num_running_reqs"),
    ("tgi", "tgi_queue_size", "tgi_batch_current_size"),
    (
        "llamacpp",
        "llamacpp:requests_deferred",
        "llamacpp:requests_processing",
    ),
];

pub fn load_feedback(
    r: &mut Report<'_, '_>,
    table: &Spanned<RawLoadFeedback>,
    base: &str,
) -> LoadFeedback {
    let raw = table.get_ref();
    let key = |k: &str| join(base, k);
    let preset = raw.preset.as_ref().and_then(|p| {
        let found = PRESETS.iter().find(|(name, _, _)| name == p.get_ref());
        if found.is_none() {
            let names: Vec<&str> = PRESETS.iter().map(|(name, _, _)| *name).collect();
            let message = format!(
                "unknown preset {:?}: expected {}, or name the metrics with `waiting` and \
                 `running`",
                p.get_ref(),
                names.join(", ")
            );
            r.at(&p.span(), &key("preset"), message);
        }
        found
    });
    let waiting = metric(r, &raw.waiting, &key("waiting"));
    let running = metric(r, &raw.running, &key("running"));
    if raw.preset.is_none() && raw.waiting.is_none() && raw.running.is_none() {
        let message = "needs a `preset` (vllm, sglang, tgi, llamacpp) or the metric names \
                       `waiting` and/or `running`";
        r.at(&table.span(), base, message);
    }
    LoadFeedback {
        path: r
            .url_path(&raw.path, &key("path"))
            .unwrap_or_else(|| "/metrics".into()),
        // A name given beside a preset replaces the preset's (an engine version that
        // renamed one).
        waiting: waiting.or_else(|| preset.map(|p| p.1.to_string())),
        running: running.or_else(|| preset.map(|p| p.2.to_string())),
        interval: r.dur(
            &raw.interval,
            &key("interval"),
            Duration::from_secs(1),
            Zero::Rejected,
        ),
    }
}

/// A metric name as Prometheus allows it: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn metric(r: &mut Report<'_, '_>, value: &Option<Spanned<String>>, key: &str) -> Option<String> {
    let name = value.as_ref()?;
    let text = name.get_ref();
    let valid = text.bytes().enumerate().all(|(i, b)| {
        b.is_ascii_alphabetic() || b == b'_' || b == b':' || (i > 0 && b.is_ascii_digit())
    });
    if text.is_empty() || !valid {
        let message =
            format!("invalid metric name {text:?}: expected e.g. \"vllm:num_requests_waiting\"");
        r.at(&name.span(), key, message);
        return None;
    }
    Some(text.clone())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_error, config, ok};
    use std::time::Duration;

    fn feedback(text: &str) -> crate::snapshot::LoadFeedback {
        let s = ok(&config("", &format!("load_feedback = {{ {text} }}")));
        s.groups[0].load_feedback.clone().expect("load_feedback")
    }

    #[test]
    fn every_preset_names_its_engines_metrics() {
        for (preset, waiting, running) in [
            (
                "vllm",
                "vllm:num_requests_waiting",
                "vllm:num_requests_running",
            ),
            ("sglang", "sglang:num_queue_reqs", "sglang:num_running_reqs"),
            ("tgi", "tgi_queue_size", "tgi_batch_current_size"),
            (
                "llamacpp",
                "llamacpp:requests_deferred",
                "llamacpp:requests_processing",
            ),
        ] {
            let f = feedback(&format!("preset = \"{preset}\""));
            assert_eq!(f.path, "/metrics");
            assert_eq!(f.waiting.as_deref(), Some(waiting), "{preset}");
            assert_eq!(f.running.as_deref(), Some(running), "{preset}");
            assert_eq!(f.interval, Duration::from_secs(1));
        }
        assert!(ok(&config("", "")).groups[0].load_feedback.is_none());
    }

    #[test]
    fn custom_metrics_path_and_interval_are_read() {
        let f = feedback("path = \"/stats\", waiting = \"queue_len\", interval = \"250ms\"");
        assert_eq!(f.path, "/stats");
        assert_eq!((f.waiting.as_deref(), f.running), (Some("queue_len"), None));
        assert_eq!(f.interval, Duration::from_millis(250));
        let f = feedback("preset = \"vllm\", running = \"vllm:running_v2\"");
        assert_eq!(f.waiting.as_deref(), Some("vllm:num_requests_waiting"));
        assert_eq!(f.running.as_deref(), Some("vllm:running_v2"));
    }

    #[test]
    fn load_feedback_values_are_checked() {
        let cases = [
            (
                "preset = \"ollama\"",
                ".preset",
                "unknown preset \"ollama\"",
            ),
            ("", "", "needs a `preset`"),
            ("path = \"/m\", interval = \"1s\"", "", "needs a `preset`"),
            ("waiting = \"a b\"", ".waiting", "invalid metric name"),
            ("running = \"9lives\"", ".running", "invalid metric name"),
            ("waiting = \"\"", ".waiting", "invalid metric name"),
            (
                "preset = \"tgi\", path = \"metrics\"",
                ".path",
                "start with `/`",
            ),
            (
                "preset = \"tgi\", interval = \"0s\"",
                ".interval",
                "greater than 0",
            ),
            (
                "preset = \"tgi\", every = \"1s\"",
                ".every",
                "unknown field",
            ),
        ];
        for (value, key, message) in cases {
            let text = config("", &format!("load_feedback = {{ {value} }}"));
            assert_error(
                &text,
                7,
                &format!("upstreams.u.load_feedback{key}"),
                message,
            );
        }
    }
}
