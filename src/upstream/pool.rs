//! Per-worker idle keep-alive connections to servers.
