//! What the control thread publishes about the process for the admin listener: whether a
//! graceful stop has begun, when it started, and how reloads went. Written by the control
//! thread only; read by the admin threads (never by workers, so the last reload's message
//! may sit behind a mutex).

use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{SystemTime, UNIX_EPOCH};

/// Process-wide control state.
pub struct ControlState {
    /// A graceful stop (SIGQUIT, or the old side of an upgrade) has begun: `/healthz` is 503.
    draining: AtomicBool,
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
    /// When the process began serving, in ms since the Unix epoch (0 = not yet).
    started_ms: AtomicU64,
    /// The outcome of the latest reload attempt (`None` before the first).
    last_reload: Mutex<Option<LastReload>>,
}

/// The latest reload attempt, as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastReload {
    /// When it ended, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The generation number it took (serving now if it succeeded).
    pub generation: u64,
    /// `None` when it took effect; else why not (file, line and key, as logged).
    pub error: Option<String>,
}

/// The wall clock in ms since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

static STATE: ControlState = ControlState {
    draining: AtomicBool::new(false),
    reloads_ok: AtomicU64::new(0),
    reloads_error: AtomicU64::new(0),
    started_ms: AtomicU64::new(0),
    last_reload: Mutex::new(None),
};

/// The process's control state.
pub fn state() -> &'static ControlState {
    &STATE
}

impl ControlState {
    pub fn draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    pub(super) fn begin_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Reloads so far: (succeeded, failed) — `ringway_config_reloads_total{result}`.
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Relaxed),
            self.reloads_error.load(Relaxed),
        )
    }

    /// When the process began serving (ms since the Unix epoch; 0 = not yet).
    pub fn started_ms(&self) -> u64 {
        self.started_ms.load(Relaxed)
    }

    /// Called once when the process starts serving (`crate::serve`).
    pub fn mark_started(&self) {
        self.started_ms.store(unix_ms(), Relaxed);
    }

    /// The latest reload attempt, if any.
    pub fn last_reload(&self) -> Option<LastReload> {
        self.last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts a reload attempt that took `generation` and remembers how it ended.
    pub(super) fn reloaded(&self, generation: u64, error: Option<String>) {
        self.count_reload(error.is_none());
        let last = LastReload {
            at_ms: unix_ms(),
            generation,
            error,
        };
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(last);
    }

    fn count_reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        };
        counter.fetch_add(1, Relaxed);
    }
}
