//! One client connection: read a head, choose a server, stream both ways, repeat.
