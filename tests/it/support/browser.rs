//! [`Browser`]: headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: NUL-terminated JSON on fds 3 and 4), so a test can load a
//! page and read its live DOM again and again without a websocket client or any download.
//!
//! CI installs Debian's `chromium` and sets `RINGWAY_REQUIRE_TOOLS=1`: there a missing
//! browser fails the test; elsewhere [`chromium`] says so and the test passes.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use super::proxy::TempDir;

/// Longest wait for one answer of the browser (start-up on a loaded machine included).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether Chromium can be run; fails instead when `RINGWAY_REQUIRE_TOOLS` is set.
pub fn chromium() -> bool {
    let found = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("RINGWAY_REQUIRE_TOOLS").is_none(),
            "chromium is required (RINGWAY_REQUIRE_TOOLS is set) but not installed: \
             apt-get install -y chromium"
        );
        eprintln!("chromium is not installed; skipping (CI installs it)");
    }
    found
}

/// One headless Chromium with one page open; closed (and killed if need be) on drop.
pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: Receiver<String>,
    next_id: u64,
    session: String,
    dir: TempDir,
}

impl Browser {
    /// Starts Chromium and opens `url` in a fresh page.
    pub fn open(url: &str) -> Browser {
        let dir = TempDir::new();
        let profile = dir.path.join("profile");
        let stderr = std::fs::File::create(dir.path.join("stderr")).expect("stderr file");
        // The shell moves our pipes to fds 3 (commands in) and 4 (answers out), where
        // --remote-debugging-pipe wants them, without any unsafe fd juggling here.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec chromium \"$@\" 3<&0 4>&1 </dev/null >/dev/null")
            .arg("sh")
            .args([
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                // A hidden page's timers must keep their 1 s pace.
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--window-size=1400,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start chromium");
        let to = child.stdin.take().expect("chromium stdin");
        let out = child.stdout.take().expect("chromium stdout");
        let (tx, from) = channel();
        std::thread::spawn(move || split_messages(out, &tx));
        let mut browser = Browser {
            child,
            to,
            from,
            next_id: 0,
            session: String::new(),
            dir,
        };
        let params = format!("{{\"url\":{}}}", json_quote(url));
        let created = browser.call("Target.createTarget", &params);
        let target = string_field(&created, "targetId").expect("targetId");
        let params = format!("{{\"targetId\":{},\"flatten\":true}}", json_quote(&target));
        let attached = browser.call("Target.attachToTarget", &params);
        browser.session = string_field(&attached, "sessionId").expect("sessionId");
        browser
    }

    /// Evaluates `expression` in the page; it must produce a string, which is returned.
    pub fn eval(&mut self, expression: &str) -> String {
        let params = format!(
            "{{\"expression\":{},\"returnByValue\":true}}",
            json_quote(expression)
        );
        let answer = self.call("Runtime.evaluate", &params);
        assert!(
            !answer.contains("\"exceptionDetails\""),
            "{expression} threw: {answer}"
        );
        string_field(&answer, "value").unwrap_or_else(|| panic!("no string from {answer}"))
    }

    /// Sends one command (on the page's session once attached) and returns its answer.
    fn call(&mut self, method: &str, params: &str) -> String {
        self.next_id += 1;
        let id = self.next_id;
        let session = if self.session.is_empty() {
            String::new()
        } else {
            format!(",\"sessionId\":{}", json_quote(&self.session))
        };
        let message =
            format!("{{\"id\":{id},\"method\":\"{method}\",\"params\":{params}{session}}}\0");
        if let Err(e) = self.to.write_all(message.as_bytes()) {
            panic!("chromium went away ({e}):\n{}", self.stderr());
        }
        // Answers start with their id; events (no id) are skipped.
        let prefix = format!("{{\"id\":{id},");
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from.recv_timeout(left) {
                Ok(m) if m.starts_with(&prefix) => return m,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("chromium did not answer {method}:\n{}", self.stderr())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("chromium exited during {method}:\n{}", self.stderr())
                }
            }
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("stderr")).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .to
            .write_all(b"{\"id\":999999,\"method\":\"Browser.close\",\"params\":{}}\0");
        let closed = super::wait_until(Duration::from_secs(3), || {
            self.child.try_wait().is_ok_and(|s| s.is_some())
        });
        if !closed {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads NUL-terminated messages until the pipe closes.
fn split_messages(mut out: impl Read, tx: &std::sync::mpsc::Sender<String>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = match out.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|&b| b == 0) {
            let message = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..=end);
            if tx.send(message).is_err() {
                return;
            }
        }
    }
}

/// `text` as a JSON string literal.
pub fn json_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The first string value of `"name":` in a JSON message, unescaped.
pub fn string_field(json: &str, name: &str) -> Option<String> {
    let start = json.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let mut out = String::new();
    let mut chars = json[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let mut code = u32::from_str_radix(&hex, 16).ok()?;
                    // A surrogate pair: the low half follows as another \uXXXX.
                    if (0xD800..0xDC00).contains(&code) {
                        let low: String = chars.by_ref().skip(2).take(4).collect();
                        let low = u32::from_str_radix(&low, 16).ok()?;
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                    }
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
}

#[test]
fn string_fields_unescape_like_json() {
    let m =
        r#"{"id":3,"result":{"result":{"type":"string","value":"a\"b\\c\nd\u00e9\ud83d\ude00"}}}"#;
    assert_eq!(string_field(m, "value").as_deref(), Some("a\"b\\c\ndé😀"));
    assert_eq!(string_field(m, "missing"), None);
    assert_eq!(json_quote("a\"b\n\u{1}"), r#""a\"b\n\u0001""#);
}
