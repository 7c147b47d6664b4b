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
//! ([`upstream::pool::LocalPool::checkin`]).
//!
//! Control path: [`config::load`] parses and validates TOML into a [`snapshot::Snapshot`]
//! (immutable, `Arc`), [`runtime::start`] spawns one pinned worker per core,
//! [`control::run`] waits for signals on the main thread.
//!
//! # Glossary
//! - *downstream*: the client side of a connection.
//! - *upstream* / *server*: one backend address.
//! - *group*: the servers of one `[upstreams.NAME]` table plus its balancer.
//! - *snapshot*: one validated configuration, shared read-only by all workers.
//! - *generation*: the number of a snapshot; it goes up on every successful reload.
//! - *worker*: one thread, one monoio runtime, one core.

pub mod balance;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod http;
pub mod runtime;
pub mod snapshot;
pub mod template;
pub mod upstream;
pub mod worker;

/// Runs `snapshot` in the foreground: opens its listeners, starts the workers and returns
/// when SIGINT or SIGTERM arrives (or start-up fails).
pub fn serve(snapshot: snapshot::Snapshot) -> Result<(), String> {
    let _ = snapshot;
    todo!()
}
