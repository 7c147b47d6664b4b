//! Active health checks: one prober for the whole process, on its own thread
//! (`ringway-health`) with its own small monoio runtime (epoll), away from the workers.
//!
//! - [`Prober::start`] (called by [`crate::serve`]) spawns the thread; [`Prober::stop`]
//!   (called when [`super::run`] returns: stop, drain, upgrade) ends and joins it.
//! - [`schedule`]: the thread's loop. Each round it loads the current snapshot (so it
//!   follows reloads), starts every probe that is due as its own task — a stalled server
//!   holds up only its own probe, bounded by `timeout` — and sleeps until the next one.
//! - [`targets`]: which servers to probe and when (keyed by upstream name and address,
//!   with jitter); [`checks`]: the rise/fall state machine; [`probe`]: one TCP or HTTP
//!   probe; [`changes`]: `ringway_upstream_health_changes_total`.
//! - [`feedback`]: `load_feedback` polls of each server's metrics page on the same
//!   thread, read by [`prom_text`]; what they find goes into the servers' marks too.
//!
//! A state change is published through the server's shared marks
//! ([`crate::balance::Peers::set_probe_up`]): every worker's next pick sees it, with no
//! message to any worker. It is logged at warn level and counted.

pub mod changes;
pub mod checks;
pub mod feedback;
pub mod probe;
pub mod prom_text;
pub mod targets;

/// The prober's small seeded random numbers (xorshift64), for spreading probes and polls
/// over their intervals; a seed makes the schedule repeatable in tests.
#[derive(Debug)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    pub fn draw(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::snapshot::Snapshot;
use changes::ChangeCounts;
use feedback::Pollers;
use targets::{Change, Key, Targets};

/// Longest sleep of the loop: how soon it sees a reload or a stop, and how late a probe
/// may start after a target's previous probe ended while the loop slept.
const TICK: Duration = Duration::from_millis(20);

/// The control thread's hold on the prober thread.
pub struct Prober {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Prober {
    /// Starts the prober thread on `current`. It runs with or without health checks
    /// configured: a reload may add some.
    pub fn start(current: Arc<ArcSwap<Snapshot>>) -> std::io::Result<Prober> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ringway-health".into())
            .spawn(move || {
                let runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build();
                match runtime {
                    Ok(mut rt) => rt.block_on(schedule(current, flag, changes::changes())),
                    Err(e) => crate::error!("health checks cannot run: no runtime: {e}"),
                }
            })?;
        Ok(Prober {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops probing and waits for the thread (at most about one [`TICK`]: probes still
    /// running are dropped with the runtime, which closes their sockets).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The prober's loop, until `stop` is set.
pub async fn schedule(
    current: Arc<ArcSwap<Snapshot>>,
    stop: Arc<AtomicBool>,
    counts: &'static ChangeCounts,
) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let targets = Rc::new(RefCell::new(Targets::new(seed)));
    let pollers = Rc::new(RefCell::new(Pollers::new(seed.rotate_left(32))));
    let mut generation = None;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let snap = current.load_full();
        if generation != Some(snap.generation) {
            generation = Some(snap.generation);
            pollers.borrow_mut().follow(&snap, now);
            let forgotten = targets.borrow_mut().follow(&snap, now);
            for key in forgotten {
                // Still configured without health_check: probes no longer hold it out.
                set_marks(&snap, &key, true);
            }
        }
        let due = targets.borrow_mut().start_due(now);
        for due in due {
            let (targets, current) = (targets.clone(), current.clone());
            monoio::spawn(async move {
                let outcome = due.probe.run().await;
                if !outcome.passed {
                    crate::debug!(
                        "health check of upstream {} server {}: {}",
                        due.key.0,
                        due.key.1,
                        outcome.reason
                    );
                }
                let change = targets
                    .borrow_mut()
                    .finish(&due.key, due.id, outcome, Instant::now());
                if let Some(change) = change {
                    publish(&current.load(), &change, counts);
                }
            });
        }
        start_polls(&pollers, &current, now);
        let next = [targets.borrow().next_start(), pollers.borrow().next_start()]
            .into_iter()
            .flatten()
            .min();
        let wait = next.map_or(TICK, |at| at.saturating_duration_since(now).min(TICK));
        monoio::time::sleep(wait).await;
    }
}

/// Starts every `load_feedback` poll due at `now`, each as its own task (a stalled server
/// holds up only its own poll, bounded by its interval). A failed poll publishes nothing:
/// the last report stands until it is stale, and the balancers then ignore it.
fn start_polls(pollers: &Rc<RefCell<Pollers>>, current: &Arc<ArcSwap<Snapshot>>, now: Instant) {
    let due = pollers.borrow_mut().start_due(now);
    for due in due {
        let (pollers, current) = (pollers.clone(), current.clone());
        monoio::spawn(async move {
            let result = due.poll.run().await;
            if !pollers
                .borrow_mut()
                .finish(&due.key, due.id, Instant::now())
            {
                return;
            }
            match result {
                Ok(load) => {
                    feedback::publish(&current.load(), &due.key, load, crate::clock::now_ms());
                }
                Err(reason) => crate::debug!(
                    "load feedback from upstream {} server {}: {reason}; ignored",
                    due.key.0,
                    due.key.1
                ),
            }
        });
    }
}

/// Makes a change visible to every worker (the marks), the log and the metrics.
fn publish(snap: &Snapshot, change: &Change, counts: &ChangeCounts) {
    let (upstream, addr) = &change.key;
    // Counted before it is published: whoever sees the new state (a scrape reading
    // `server_up`, a test) also sees the change counted.
    counts.count(upstream, &addr.to_string(), change.flip.up);
    set_marks(snap, &change.key, change.flip.up);
    let (state, word) = if change.flip.up {
        ("up", "passed")
    } else {
        ("down", "failed")
    };
    let n = change.flip.after;
    let checks = if n == 1 { "check" } else { "checks" };
    crate::warn!(
        "upstream {upstream} server {addr} is {state} after {n} {word} {checks}: {}",
        change.reason
    );
}

/// Sets the probe mark of every server of `snap` under `key` (an address listed twice in
/// a group is one server to the prober, two entries to the balancer).
fn set_marks(snap: &Snapshot, key: &Key, up: bool) {
    let (upstream, addr) = key;
    let Some(group) = snap.group_by_name(upstream).map(|id| &snap.groups[id]) else {
        return;
    };
    for (idx, server) in group.peers.servers().iter().enumerate() {
        if server.addr == *addr {
            group.peers.set_probe_up(idx, up);
        }
    }
}

#[cfg(test)]
mod tests;
