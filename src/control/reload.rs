//! Reload: SIGHUP → parse and validate the file → carry per-server state over → open new
//! listeners → publish the snapshot with one atomic swap → tell each worker.
//!
//! Nothing changes until the new file has been read, validated and its new listeners bound;
//! any failure leaves the running configuration serving and is logged with file, line and
//! key. Workers pick the new snapshot up on their next request (`Worker::snapshot`); a
//! request in flight keeps the `Arc` of the snapshot it started with.

use std::sync::Arc;

use super::Control;
use super::state::state;
use crate::snapshot::Snapshot;
use crate::worker::inbox::WorkerMsg;

/// Reloads the configuration file of the running snapshot. Returns whether it took effect.
pub fn reload(ctl: &mut Control) -> bool {
    let old = ctl.current.load_full();
    let generation = ctl.new_generation();
    let result = build(&old, generation).and_then(|new| {
        // The new log files must be open before a worker renders the new format into them.
        if let Some(log) = ctl.log.as_mut() {
            log.apply(&new.log)
                .map_err(|e| format!("reload: cannot open the logs: {e}"))?;
        }
        let change = match ctl.listeners.update(&new) {
            Ok(change) => change,
            Err(e) => {
                if let Some(log) = ctl.log.as_mut() {
                    let _ = log.apply(&old.log);
                }
                return Err(format!("reload: {e}"));
            }
        };
        Ok((new, change))
    });
    let (new, change) = match result {
        Ok(ok) => ok,
        Err(message) => {
            crate::error!("{message}");
            crate::error!(
                "reload of {} failed; generation {} keeps serving",
                old.source.display(),
                old.generation
            );
            state().reloaded(generation, Some(message));
            return false;
        }
    };
    warn_about_restart_only_changes(&old, &new);
    if ctl.log.is_none() {
        crate::log::set_level(new.log.level);
    }
    let generation = new.generation;
    // One atomic publish: each worker sees it on its next request.
    ctl.current.store(Arc::new(new));
    for (worker, (link, listen)) in ctl.running.links.iter().zip(change.added).enumerate() {
        let msg = WorkerMsg::Reload {
            listen,
            unlisten: change.removed.clone(),
        };
        if link.send(msg).is_err() {
            crate::error!("reload: worker {worker} is gone");
        }
    }
    state().reloaded(generation, None);
    crate::info!(
        "reloaded {} (generation {generation})",
        old.source.display()
    );
    true
}

/// Reads and validates the file, and carries per-server state over from `old`.
fn build(old: &Snapshot, generation: u64) -> Result<Snapshot, String> {
    let mut new = crate::config::load(&old.source, generation).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    new.inherit(old);
    Ok(new)
}

/// `[runtime]` keys that shape threads and sockets apply only to a new process.
fn warn_about_restart_only_changes(old: &Snapshot, new: &Snapshot) {
    let (a, b) = (&old.runtime, &new.runtime);
    let mut keys = Vec::new();
    if a.workers != b.workers {
        keys.push("workers");
    }
    if a.pin_workers != b.pin_workers {
        keys.push("pin_workers");
    }
    if a.driver != b.driver {
        keys.push("driver");
    }
    if a.pid_file != b.pid_file {
        keys.push("pid_file");
    }
    if old.admin.as_ref().map(|x| x.bind) != new.admin.as_ref().map(|x| x.bind) {
        keys.push("admin.bind");
    }
    if !keys.is_empty() {
        crate::warn!(
            "reload: {} changed; this takes effect on `ringway -s upgrade` or a restart",
            keys.join(", ")
        );
    }
}
