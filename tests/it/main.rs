//! End-to-end tests: the real `ringway` binary (`ringway -c FILE`) in front of scriptable
//! backends on 127.0.0.1, driven over raw sockets. Every proxy test runs on io_uring and on
//! epoll (`both_drivers!`); ports are picked at run time; every wait is bounded.

mod support;

mod access_log;
mod admin;
mod attack;
mod backpressure;
mod backup;
mod balance;
mod basic;
mod cancel;
mod cli;
mod early_answers;
mod edges;
mod errors;
mod failover;
mod feedback;
mod gzip;
mod harness;
mod headers;
mod health;
mod idle;
mod import;
mod lifecycle;
mod llm_balance;
mod llm_feedback;
mod llm_sim;
mod misbehaving;
mod model_routes;
mod mutation;
mod pool;
mod proxy_protocol;
mod queue;
mod reload;
mod response_framing;
mod retries;
mod routes;
mod runtime;
mod smuggling;
mod spliced;
mod status_page;
mod tcp;
mod timeouts;
mod tools;
mod upgrade;
