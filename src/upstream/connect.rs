//! Dialing a server with a timeout.
