//! Spawns one pinned, named worker thread per core, each with its own monoio runtime.
