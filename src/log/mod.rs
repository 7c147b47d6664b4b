//! The error log (a level filter and the `error!`/`warn!`/`info!`/`debug!` macros) and the
//! [`Sink`] that carries error lines and access-log batches to the log thread.
//!
//! Who does what:
//! - any thread formats its own error lines ([`write`]); workers render access lines into
//!   their own buffer ([`access::LocalAccessLog`]);
//! - both travel to the log thread (`control::log_thread`) through the [`Sink`] installed at
//!   start-up, always with `try_send`: a full channel drops the line and counts it
//!   ([`dropped_lines`], [`dropped_error_lines`]), it never blocks the caller. Only the log
//!   thread writes log files, stdout or stderr, so no worker waits on a disk or a pipe;
//! - before a sink is installed (start-up, `-t`, command-line errors) and after the log
//!   thread has stopped, error lines go straight to stderr.

pub mod access;
pub mod throttle;

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::snapshot::LogLevel;

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

/// The process's sink, once the log thread runs.
static SINK: OnceLock<Sink> = OnceLock::new();

/// The process-wide drop counters (a private sink in a test brings its own).
static COUNTERS: Counters = Counters::new();

/// Access batches waiting for the log thread: at 64 KiB each, 4 MiB in flight at most.
pub const ACCESS_QUEUE: usize = 64;
/// Error lines waiting for the log thread.
pub const ERROR_QUEUE: usize = 4096;
/// Emptied access buffers on their way back to the workers.
const SPARE_QUEUE: usize = 2 * ACCESS_QUEUE;

/// Sets the most verbose level that is written.
pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether events at `level` are written.
pub fn enabled(level: LogLevel) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Access-log lines dropped because the log thread fell behind (the future metric
/// `ringway_access_log_dropped_total`).
pub fn dropped_lines() -> u64 {
    COUNTERS.access_dropped.load(Ordering::Relaxed)
}

/// Error-log lines dropped because the log thread fell behind.
pub fn dropped_error_lines() -> u64 {
    COUNTERS.error_dropped.load(Ordering::Relaxed)
}

/// Lines dropped on the way to the log thread, by kind.
#[derive(Debug)]
pub struct Counters {
    pub access_dropped: AtomicU64,
    pub error_dropped: AtomicU64,
}

impl Counters {
    pub const fn new() -> Counters {
        Counters {
            access_dropped: AtomicU64::new(0),
            error_dropped: AtomicU64::new(0),
        }
    }
}

impl Default for Counters {
    fn default() -> Counters {
        Counters::new()
    }
}

/// The sending side of the log thread's channels; cheap to clone, one per worker.
#[derive(Clone, Debug)]
pub struct Sink {
    /// Full access-log buffers (whole lines only).
    pub access: Sender<Vec<u8>>,
    /// One formatted error line each.
    pub errors: Sender<Vec<u8>>,
    /// Emptied access buffers coming back, so a worker in steady state allocates none.
    pub spare: Receiver<Vec<u8>>,
    pub counters: &'static Counters,
}

/// The receiving side, owned by the log thread.
#[derive(Debug)]
pub struct Drain {
    pub access: Receiver<Vec<u8>>,
    pub errors: Receiver<Vec<u8>>,
    pub spare: Sender<Vec<u8>>,
}

/// A new pair of channel ends. `counters` is [`process_counters`] for the process's sink.
pub fn channel(counters: &'static Counters) -> (Sink, Drain) {
    let (access_tx, access_rx) = crossbeam_channel::bounded(ACCESS_QUEUE);
    let (errors_tx, errors_rx) = crossbeam_channel::bounded(ERROR_QUEUE);
    let (spare_tx, spare_rx) = crossbeam_channel::bounded(SPARE_QUEUE);
    let sink = Sink {
        access: access_tx,
        errors: errors_tx,
        spare: spare_rx,
        counters,
    };
    let drain = Drain {
        access: access_rx,
        errors: errors_rx,
        spare: spare_tx,
    };
    (sink, drain)
}

/// The counters [`dropped_lines`] and [`dropped_error_lines`] read.
pub fn process_counters() -> &'static Counters {
    &COUNTERS
}

/// Makes `sink` the process's sink; `false` if one was installed already (it stays).
pub fn install(sink: Sink) -> bool {
    SINK.set(sink).is_ok()
}

/// The process's sink, once installed.
pub fn sink() -> Option<&'static Sink> {
    SINK.get()
}

/// Writes one line, `ringway[pid]: level: message`, through the sink when there is one.
pub fn write(level: LogLevel, args: std::fmt::Arguments<'_>) {
    let name = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    };
    // Error lines are rare (failures, not requests): one allocation each is fine.
    let mut line = Vec::with_capacity(128);
    let _ = writeln!(line, "ringway[{}]: {name}: {args}", std::process::id());
    match SINK.get() {
        Some(sink) => send_error_line(sink, line),
        None => write_stderr(&line),
    }
}

/// Hands `line` to the log thread; drops and counts it when the queue is full; writes it to
/// stderr when the log thread is gone (the process is exiting).
pub fn send_error_line(sink: &Sink, line: Vec<u8>) {
    match sink.errors.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            sink.counters.error_dropped.fetch_add(1, Ordering::Relaxed);
        }
        Err(TrySendError::Disconnected(line)) => write_stderr(&line),
    }
}

fn write_stderr(line: &[u8]) {
    let _ = std::io::stderr().lock().write_all(line);
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, format_args!($($arg)*));
        }
    };
}

#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log_at!($crate::snapshot::LogLevel::Error, $($arg)*) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log_at!($crate::snapshot::LogLevel::Warn, $($arg)*) }; }
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log_at!($crate::snapshot::LogLevel::Info, $($arg)*) }; }
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log_at!($crate::snapshot::LogLevel::Debug, $($arg)*) }; }

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked() -> &'static Counters {
        Box::leak(Box::new(Counters::new()))
    }

    #[test]
    fn error_lines_beyond_the_queue_are_dropped_and_counted() {
        let counters = leaked();
        let (sink, drain) = channel(counters);
        for i in 0..ERROR_QUEUE + 5 {
            send_error_line(&sink, format!("line {i}\n").into_bytes());
        }
        assert_eq!(counters.error_dropped.load(Ordering::Relaxed), 5);
        assert_eq!(drain.errors.len(), ERROR_QUEUE);
        assert_eq!(drain.errors.recv().unwrap(), b"line 0\n");
    }
}
