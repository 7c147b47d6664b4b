//! The access log on a worker: one line per request rendered into the worker's own buffer
//! ([`LocalAccessLog`]), handed whole to the log thread at [`FLUSH_AT`] bytes, on the worker's
//! 1-second tick, and when the worker goes away.
//!
//! Nothing here blocks or takes a lock: a hand-off is one `try_send`; when the log thread
//! has fallen behind, the batch is dropped and its lines counted
//! ([`crate::log::dropped_lines`]). Buffers come back from the log thread emptied, so in
//! steady state a line costs no allocation.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;

use crate::log::Sink;
use crate::snapshot::LogSettings;
use crate::template::{Part, Template, VarSource};

/// A buffer is handed to the log thread once it holds this much.
pub const FLUSH_AT: usize = 64 * 1024;
/// A new buffer's capacity: room for the line that crosses `FLUSH_AT` without growing.
const CAPACITY: usize = FLUSH_AT + 16 * 1024;

/// Workers holding lines not yet handed over, so the exit path knows whether to wait.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// One worker's access log. `!Send`: owned by the worker's thread.
#[derive(Debug)]
pub struct LocalAccessLog {
    /// Where full buffers go; `None` when no log thread runs (lines are not rendered).
    sink: Option<Sink>,
    /// Whole lines not yet handed over (no capacity while idle).
    buf: RefCell<Vec<u8>>,
    /// How many lines `buf` holds (what a dropped batch adds to the counter).
    lines: Cell<u64>,
}

impl Default for LocalAccessLog {
    fn default() -> LocalAccessLog {
        LocalAccessLog::new()
    }
}

impl LocalAccessLog {
    /// An access log feeding the process's log thread (see [`crate::log::install`]).
    pub fn new() -> LocalAccessLog {
        LocalAccessLog::with_sink(crate::log::sink().cloned())
    }

    pub fn with_sink(sink: Option<Sink>) -> LocalAccessLog {
        LocalAccessLog {
            sink,
            buf: RefCell::new(Vec::new()),
            lines: Cell::new(0),
        }
    }

    /// Renders one line for a request with `settings.access_format`, unless the access log
    /// is off.
    pub fn write(&self, settings: &LogSettings, vars: &dyn VarSource) {
        self.write_with(settings, &settings.access_format, vars);
    }

    /// Renders one line with `format` (a tcp connection's: `settings.tcp_access_format`),
    /// unless the access log is off.
    pub fn write_with(&self, settings: &LogSettings, format: &Template, vars: &dyn VarSource) {
        let Some(sink) = &self.sink else { return };
        if settings.access_log.is_none() {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        if buf.capacity() == 0 {
            *buf = sink
                .spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CAPACITY));
        }
        render_line(format, vars, &mut buf);
        if self.lines.replace(self.lines.get() + 1) == 0 {
            PENDING.fetch_add(1, Ordering::Relaxed);
        }
        if buf.len() >= FLUSH_AT {
            self.hand_off(&mut buf);
        }
    }

    /// The worker's periodic call (every second): hands over whatever is buffered, so a
    /// line reaches the log within about a second even without more traffic.
    pub fn tick(&self) {
        self.flush();
    }

    /// Hands over the buffered lines now.
    pub fn flush(&self) {
        self.hand_off(&mut self.buf.borrow_mut());
    }

    fn hand_off(&self, buf: &mut Vec<u8>) {
        let lines = self.lines.replace(0);
        if lines == 0 {
            return;
        }
        PENDING.fetch_sub(1, Ordering::Relaxed);
        let Some(sink) = &self.sink else { return };
        match sink.access.try_send(std::mem::take(buf)) {
            // The next line takes a spare buffer; until then this worker holds none.
            Ok(()) => {}
            Err(TrySendError::Full(mut back) | TrySendError::Disconnected(mut back)) => {
                sink.counters
                    .access_dropped
                    .fetch_add(lines, Ordering::Relaxed);
                back.clear();
                *buf = back;
            }
        }
    }
}

impl Drop for LocalAccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Waits (polling, on the control thread) until no worker holds unflushed lines, at most
/// `within`; workers hand theirs over on their next tick. Returns whether none are left.
pub fn wait_flushed(within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while PENDING.load(Ordering::Relaxed) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Appends one access-log line: the template with each variable escaped as nginx's
/// `escape=default` does, `-` for a variable with no value, and a newline.
pub fn render_line(template: &Template, vars: &dyn VarSource, out: &mut Vec<u8>) {
    for part in &template.parts {
        match part {
            Part::Lit(bytes) => out.extend_from_slice(bytes),
            Part::Var(var) => {
                let at = out.len();
                vars.write_var(var, out);
                if out.len() == at {
                    out.push(b'-');
                } else {
                    escape_from(out, at);
                }
            }
        }
    }
    out.push(b'\n');
}

/// Whether nginx's default log escaping writes `b` as `\xHH`.
fn needs_escape(b: u8) -> bool {
    b == b'"' || b == b'\\' || !(0x20..=0x7e).contains(&b)
}

/// Escapes `out[at..]` in place (a line stays one line whatever a client sent).
fn escape_from(out: &mut Vec<u8>, at: usize) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let escapes = out[at..].iter().filter(|&&b| needs_escape(b)).count();
    if escapes == 0 {
        return;
    }
    let mut read = out.len();
    out.resize(read + 3 * escapes, 0);
    let mut write = out.len();
    // Back to front, so each byte is read before the growing output overwrites it.
    while read > at {
        read -= 1;
        let b = out[read];
        if needs_escape(b) {
            write -= 4;
            out[write..write + 4].copy_from_slice(&[
                b'\\',
                b'x',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            write -= 1;
            out[write] = b;
        }
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
