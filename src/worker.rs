//! One worker: its snapshot cache, pools and cursors, and the accept loops.
