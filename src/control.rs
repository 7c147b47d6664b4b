//! Signals on the main thread: stop, and (next issue) reload, drain and reopen.
