//! What the control thread publishes about the process for the admin listener: whether a
//! graceful stop has begun, and how reloads went. Written by the control thread only.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};

/// Process-wide control state.
pub struct ControlState {
    /// A graceful stop (SIGQUIT, or the old side of an upgrade) has begun: `/healthz` is 503.
    draining: AtomicBool,
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
}

static STATE: ControlState = ControlState {
    draining: AtomicBool::new(false),
    reloads_ok: AtomicU64::new(0),
    reloads_error: AtomicU64::new(0),
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

    pub(super) fn count_reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        };
        counter.fetch_add(1, Relaxed);
    }
}
