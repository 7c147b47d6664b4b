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
