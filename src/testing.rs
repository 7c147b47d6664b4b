//! Helpers shared by unit tests.

/// Seeded mutations of real inputs, the normal suite's stand-in for a fuzzer: `rounds`
/// times, takes the next of `seeds`, damages it in one to four places (a byte replaced,
/// inserted or removed from `alphabet`, or the rest cut off), and gives the result to
/// `check` with one more random number for the check's own use.
pub fn mutations(
    seeds: &[&[u8]],
    alphabet: &[u8],
    seed: u64,
    rounds: usize,
    mut check: impl FnMut(&[u8], u64),
) {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..rounds {
        let mut body = seeds[round % seeds.len()].to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % (body.len() + 1);
            let byte = alphabet[(next() as usize) % alphabet.len()];
            match next() % 4 {
                0 if at < body.len() => body[at] = byte,
                1 => body.insert(at, byte),
                2 if at < body.len() => {
                    body.remove(at);
                }
                _ => body.truncate(at),
            }
        }
        check(&body, next());
    }
}

/// A connected TCP pair: the monoio end the code under test owns, the std end a test thread
/// drives. The monoio end is blocking on io_uring and non-blocking on epoll, as monoio's
/// own accept and connect make them on each driver (so a test catches code that forgets to
/// make a socket non-blocking before a syscall of its own on it).
pub fn socket_pair() -> (monoio::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let far = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (near, _) = listener.accept().unwrap();
    near.set_nonblocking(monoio::utils::is_legacy()).unwrap();
    (monoio::net::TcpStream::from_std(near).unwrap(), far)
}

/// Waits for a test thread while the runtime goes on: on io_uring sockets are closed by an
/// operation the ring submits on its next turn, which a blocking `join` on the runtime's
/// thread would never give it.
pub async fn joined<T>(side: std::thread::JoinHandle<T>) -> T {
    while !side.is_finished() {
        monoio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    side.join().unwrap()
}

/// `n` bytes of a pattern that differs with `seed`.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}
