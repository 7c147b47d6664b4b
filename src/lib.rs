//! ringway: a load-balancing reverse proxy, one monoio event loop per core.
//!
//! # Map of the code
//!
//! Data path (one client connection, on one worker):
//! [`worker::run`] accepts → [`http::proxy::serve`] reads and parses the head
//! ([`http::head::parse_request`]) → picks a route and a group ([`snapshot::Listener::route`])
//! → chooses a server ([`balance::Peers::pick`]) → takes a pooled connection
//! ([`upstream::pool::LocalPool::checkout`]) or dials ([`upstream::connect::dial`]) → streams the
//! request up and the response down ([`http::body`] frames both) → checks the connection back in
//! ([`upstream::pool::LocalPool::checkin`]). Every socket operation has a deadline from the
//! worker's timer wheel ([`timer::timeout`]); an idle connection waits for readiness holding
//! no buffer ([`http::scratch`]). A `mode = "tcp"` listener's connections go to
//! [`tcp::serve`] instead: pick and connect (with failover), PROXY header, relay both ways.
//!
//! Control path (main thread, see [`control`]): [`config::load`] parses and validates TOML
//! into a [`snapshot::Snapshot`] (immutable, `Arc`), [`runtime::start`] spawns one pinned
//! worker per core, [`control::run`] takes signals: SIGHUP → [`control::reload`] (load →
//! validate → inherit → one `ArcSwap::store` → [`worker::inbox::WorkerMsg`] to each
//! worker), SIGQUIT → [`control::stop::drain`], SIGUSR2 → [`control::upgrade`]. Active
//! health checks run on one prober thread ([`control::health::Prober`]), which follows the
//! snapshot and sets the servers' shared marks; the same thread polls `load_feedback`
//! ([`control::health::feedback`]).
//!
//! # Glossary
//! - *downstream*: the client side of a connection.
//! - *upstream* / *server*: one backend address.
//! - *group*: the servers of one `[upstreams.NAME]` table plus its balancer.
//! - *snapshot*: one validated configuration, shared read-only by all workers.
//! - *generation*: the number of a snapshot; every reload attempt takes the next one.
//! - *worker*: one thread, one monoio runtime, one core.

pub mod balance;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod import;
pub mod llm_sim;
pub mod log;
pub mod metrics;
pub mod nowait;
pub mod runtime;
pub mod snapshot;
pub mod splice;
pub mod tcp;
pub mod template;
#[cfg(test)]
mod testing;
pub mod timer;
pub mod upstream;
pub mod worker;

/// Runs `snapshot` in the foreground: opens its listeners (taking over the sockets in
/// `handover` after an upgrade), starts the workers, then handles signals on this thread
/// until the process should exit. Call [`control::signals::block`] first.
pub fn serve(snapshot: snapshot::Snapshot, mut handover: control::Handover) -> Result<(), String> {
    use std::sync::Arc;
    // Before the workers: each takes the log thread's sink when it starts.
    let log = control::log_thread::LogThread::start(&snapshot.log)
        .map_err(|e| format!("cannot open the logs: {e}"))?;
    raise_fd_limit(snapshot.runtime.max_connections as u64);
    let pid_file = snapshot.runtime.pid_file.clone();
    let summary: Vec<String> = snapshot
        .listeners
        .iter()
        .map(|l| format!("{} on {}", l.name, l.bind))
        .collect();
    let workers = snapshot.runtime.workers;
    let listeners =
        control::listeners::ListenerSet::open(&snapshot, workers, &mut handover.inherited)
            .map_err(|e| e.to_string())?;
    let admin = control::admin::bind(&snapshot, &mut handover.inherited)?;
    if handover.inherited.unclaimed() > 0 {
        warn!(
            "{} inherited socket(s) match no listener; closing them",
            handover.inherited.unclaimed()
        );
    }
    drop(handover.inherited);
    let current = Arc::new(arc_swap::ArcSwap::from_pointee(snapshot));
    let running = runtime::start(current.clone(), &listeners).map_err(|e| e.to_string())?;
    control::state::state().mark_started();
    let admin = match admin {
        Some(admin) => Some(admin.spawn(current.clone(), &running.links, &running.drivers)?),
        None => None,
    };
    let health = control::health::Prober::start(current.clone())
        .map_err(|e| format!("cannot start the health-check thread: {e}"))?;
    if let Some(path) = &pid_file {
        control::write_pid_file(path)
            .map_err(|e| format!("cannot write pid file {}: {e}", path.display()))?;
    }
    info!(
        "serving {} with {} worker(s) on {}",
        summary.join(", "),
        running.workers.len(),
        running.drivers.first().copied().unwrap_or("?")
    );
    if let Some(ready) = handover.ready {
        ready.report();
    }
    control::run(control::Control::new(
        current,
        listeners,
        running,
        Some(log),
        admin,
        Some(health),
    ));
    Ok(())
}

/// Raises the open-files limit for the connections the process is allowed (logged: the
/// operator sees both the change and a limit that still falls short).
fn raise_fd_limit(max_connections: u64) {
    match control::fd_limit::FdLimit::raise(max_connections) {
        Ok(limit) => {
            if limit.now > limit.before {
                info!(
                    "open-files limit raised from {} to {}",
                    limit.before, limit.now
                );
            }
            if let Some(why) = limit.shortfall() {
                warn!("{why}");
            }
        }
        Err(e) => warn!("cannot raise the open-files limit: {e}"),
    }
}
