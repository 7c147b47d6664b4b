//! [`LlmSim`]: `ringway backend --llm` as a child process on a free port, with helpers to
//! read its vLLM metrics, flip its fail mode, and build OpenAI request bytes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::proxy::{TempDir, binary};
use super::{Client, free_port, wait_until};

/// A running simulated LLM server; killed on drop.
pub struct LlmSim {
    child: Child,
    pub addr: SocketAddr,
    stderr: PathBuf,
    _dir: TempDir,
}

impl LlmSim {
    /// Starts `ringway backend --llm --bind 127.0.0.1:PORT <args>` and waits for `/health`.
    pub fn start(args: &[&str]) -> LlmSim {
        let dir = TempDir::new();
        let stderr = dir.path.join("sim.err");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(binary())
            .args(["backend", "--llm", "--bind", &addr.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn ringway backend --llm");
        let mut sim = LlmSim {
            child,
            addr,
            stderr,
            _dir: dir,
        };
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        if !up {
            let _ = sim.child.kill();
            panic!(
                "the simulator never listened on {addr}: {}",
                std::fs::read_to_string(&sim.stderr).unwrap_or_default()
            );
        }
        sim
    }

    /// The whole `/metrics` text.
    pub fn metrics(&self) -> String {
        let r = Client::connect(self.addr).request("GET /metrics HTTP/1.1\r\nHost: sim\r\n\r\n");
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    }

    /// The value of metric `name` (its first sample).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    /// `vllm:num_requests_running` and `vllm:num_requests_waiting`.
    pub fn running_waiting(&self) -> (u64, u64) {
        (
            self.metric("vllm:num_requests_running") as u64,
            self.metric("vllm:num_requests_waiting") as u64,
        )
    }

    /// `POST /admin/mode` with `ok`, `hang`, `429` or `503` (and optional Retry-After secs).
    pub fn set_mode(&self, mode: &str) {
        let r = Client::connect(self.addr).request(post("/admin/mode", mode));
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

impl Drop for LlmSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes of `POST path` with `body`.
pub fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A chat request body: one user message, streamed or not, `max_tokens` tokens.
pub fn chat_body(user: &str, stream: bool, max_tokens: u32) -> String {
    serde_json::json!({
        "model": "ringway-sim",
        "messages": [{"role": "user", "content": user}],
        "stream": stream,
        "max_tokens": max_tokens,
    })
    .to_string()
}

/// The JSON payloads of an SSE body's `data:` events (`[DONE]` as the string).
pub fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}
