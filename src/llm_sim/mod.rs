//! `ringway backend --llm`: a simulated OpenAI-compatible LLM inference server, for tests,
//! the demo and benchmarks. It behaves like one vLLM server on one GPU, scaled down in
//! time: continuous batching over `slots` ([`batch`]), prefill paid per prompt byte its
//! prefix cache does not hold ([`cache`]), decode paid per token, streaming and whole
//! answers in OpenAI's formats ([`api`]), and `/metrics` with vLLM's names ([`metrics`]).
//! A fail mode makes it hang or refuse with 429/503 and `Retry-After`, set by flag or at
//! run time through `POST /admin/mode` ([`server`]).
//!
//! It runs on the demo backends' HTTP server ([`crate::demo`]): one thread, one monoio
//! runtime, any number of addresses, each an independent simulated server.

pub mod api;
pub mod batch;
pub mod cache;
pub mod metrics;
pub mod server;

use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;

pub use api::Leniency;
pub use batch::Costs;

/// How the server answers generation requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Serve normally.
    Ok,
    /// Take requests and never produce a token (the engine is stuck; `/health` still 200).
    Hang,
    /// Refuse every generation request with 429 and `Retry-After`.
    TooManyRequests,
    /// Refuse every generation request with 503 and `Retry-After`.
    Unavailable,
}

impl Mode {
    /// `ok`, `hang`, `429` or `503`.
    pub fn parse(text: &str) -> Result<Mode, String> {
        match text.trim() {
            "ok" | "normal" => Ok(Mode::Ok),
            "hang" => Ok(Mode::Hang),
            "429" => Ok(Mode::TooManyRequests),
            "503" => Ok(Mode::Unavailable),
            other => Err(format!(
                "unknown fail mode {other:?} (ok, hang, 429 or 503)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Ok => "ok",
            Mode::Hang => "hang",
            Mode::TooManyRequests => "429",
            Mode::Unavailable => "503",
        }
    }
}

/// Everything `ringway backend --llm` takes on its command line.
///
/// The defaults resemble an 8B model (Llama-3-8B class) served by vLLM on one 80 GB GPU,
/// with time scaled down 10x so that tests and benchmarks run in seconds:
/// - prefill: such a GPU computes ~12k prompt tokens/s, ~4 bytes each, i.e. ~20 µs per
///   byte; scaled: 2 µs per byte (a 10 KB uncached history costs 20 ms);
/// - decode: ~20 ms per token and per request at a moderate batch; scaled: 2 ms;
/// - slots: 32 requests in the batch (vLLM allows more, but at 8B a chat server's KV
///   memory holds a few dozen long conversations at once);
/// - cache: 2 MiB of prompt text, ~500k tokens: what is left of 80 GB for the KV cache
///   next to the 16 GB of weights, at 128 KB per token (memory does not scale with time);
/// - blocks of 64 bytes: vLLM's 16-token blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The model name served (`/v1/models`); a request naming another gets 404.
    pub model: String,
    pub slots: usize,
    pub prefill_us_per_byte: f64,
    pub decode_ms_per_token: f64,
    /// Tokens generated when a request does not set `max_tokens`.
    pub max_tokens: u32,
    pub cache_bytes: u64,
    pub block_bytes: usize,
    pub mode: Mode,
    /// Seconds in the `Retry-After` of a 429/503.
    pub retry_after_secs: u32,
    /// Largest request body (413 beyond).
    pub max_body: usize,
    pub leniency: Leniency,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            model: "ringway-sim".into(),
            slots: 32,
            prefill_us_per_byte: 2.0,
            decode_ms_per_token: 2.0,
            max_tokens: 128,
            cache_bytes: 2 << 20,
            block_bytes: 64,
            mode: Mode::Ok,
            retry_after_secs: 1,
            max_body: 64 << 20,
            leniency: Leniency {
                stream_by_default: false,
                empty_body_ok: false,
            },
        }
    }
}

impl Options {
    /// Checks the values and derives the scheduler's costs.
    pub fn costs(&self) -> Result<Costs, String> {
        let prefill = checked("--prefill-us-per-byte", self.prefill_us_per_byte, 1e6)?;
        let decode = checked("--decode-ms-per-token", self.decode_ms_per_token, 1e5)?;
        if !(1..=100_000).contains(&self.slots) {
            return Err(format!("--slots {} must be 1 to 100000", self.slots));
        }
        if !(1..=1 << 20).contains(&self.block_bytes) {
            return Err(format!(
                "--block-bytes {} must be 1 to 1m",
                self.block_bytes
            ));
        }
        if self.max_tokens == 0 || u64::from(self.max_tokens) > api::MAX_TOKENS_LIMIT {
            return Err(format!(
                "--max-tokens {} must be 1 to {}",
                self.max_tokens,
                api::MAX_TOKENS_LIMIT
            ));
        }
        if self.model.is_empty() {
            return Err("--model must not be empty".into());
        }
        Ok(Costs {
            prefill_ns_per_byte: (prefill * 1000.0).round() as u64,
            decode_us_per_token: (decode * 1000.0).round() as u64,
        })
    }
}

fn checked(flag: &str, value: f64, max: f64) -> Result<f64, String> {
    if value.is_finite() && (0.0..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{flag} {value} must be a number from 0 to {max}"))
    }
}

/// Starts one simulated server per address (one thread, one runtime) and returns once
/// every address is bound.
pub fn spawn(addrs: Vec<SocketAddr>, options: Options) -> io::Result<JoinHandle<()>> {
    options.costs().map_err(io::Error::other)?;
    crate::demo::spawn_sites(addrs, options, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_out_of_range_are_refused_naming_the_flag() {
        let bad = [
            Options {
                slots: 0,
                ..Options::default()
            },
            Options {
                prefill_us_per_byte: f64::NAN,
                ..Options::default()
            },
            Options {
                decode_ms_per_token: -1.0,
                ..Options::default()
            },
            Options {
                max_tokens: 0,
                ..Options::default()
            },
            Options {
                block_bytes: 0,
                ..Options::default()
            },
        ];
        for (o, flag) in bad.iter().zip([
            "--slots",
            "--prefill-us-per-byte",
            "--decode-ms-per-token",
            "--max-tokens",
            "--block-bytes",
        ]) {
            let e = o.costs().unwrap_err();
            assert!(e.contains(flag), "{e}");
        }
        let c = Options::default().costs().unwrap();
        assert_eq!(c.prefill_ns_per_byte, 2000);
        assert_eq!(c.decode_us_per_token, 2000);
    }

    #[test]
    fn modes_parse_by_name() {
        for m in [
            Mode::Ok,
            Mode::Hang,
            Mode::TooManyRequests,
            Mode::Unavailable,
        ] {
            assert_eq!(Mode::parse(m.name()), Ok(m));
        }
        assert!(
            Mode::parse("slow")
                .unwrap_err()
                .contains("ok, hang, 429 or 503")
        );
    }
}
