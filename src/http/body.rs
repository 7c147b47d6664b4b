//! Body framing: an incremental, strict decoder for `Transfer-Encoding: chunked`.
//!
//! The decoder validates chunked framing strictly (hex sizes without overflow, CRLF after
//! every chunk, bounded extensions and trailers) and reports where the data of each chunk is,
//! so the proxy can forward the raw bytes (both sides chunked) or only the data (to an
//! HTTP/1.0 client) while never reading past the end of the message.
//!
//! Strict means: 1 to 16 hex digits, at most 2^62; spaces/tabs after the size only before a
//! `;` extension; extensions skipped but free of control bytes; every line ends in CRLF (a
//! bare LF is an error, never a line end, so we cannot disagree with the next hop about
//! where a chunk ends); trailer lines are `name:value` with token names and no control
//! bytes. Length-framed bodies need no decoder: the proxy counts down the `u64` from
//! `RequestBody::Length` / `ResponseBody::Length`.

use std::ops::Range;

/// Longest chunk-size line (size, extensions, CRLF) or trailer section we accept.
pub const MAX_CHUNK_LINE: usize = 4096;
pub const MAX_TRAILERS: usize = 16 * 1024;

/// Largest chunk size accepted; leaves headroom so sums of sizes never overflow a u64.
pub const MAX_CHUNK_SIZE: u64 = 1 << 62;

/// Most hex digits in a chunk size (leading zeros count).
const MAX_SIZE_DIGITS: u8 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Bad chunk size, missing CRLF, line or trailers too long.
    Malformed(&'static str),
}

/// The outcome of one `ChunkedDecoder::decode` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of `input` consumed (all of it unless `done`).
    pub consumed: usize,
    /// The last chunk and the trailers have been consumed.
    pub done: bool,
}

/// Where the decoder is in the chunked grammar (RFC 9112 7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Before the first hex digit of a chunk size.
    #[default]
    SizeStart,
    /// Inside the hex digits.
    Size,
    /// Spaces/tabs after the digits: only a `;` may follow.
    SizeBws,
    /// Inside chunk extensions, up to the CR.
    Ext,
    /// The CR of the size line seen; the LF must follow.
    SizeLf,
    /// Inside chunk data; `ChunkedDecoder::left` bytes to go.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final CRLF.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// The CR of the final CRLF seen.
    EndLf,
    Done,
    /// An error was returned; every later call returns it again.
    Failed(&'static str),
}

/// Incremental decoder for `Transfer-Encoding: chunked`.
#[derive(Clone, Debug, Default)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size being read, then the data bytes left in the current chunk.
    left: u64,
    /// Hex digits of the current size so far.
    digits: u8,
    /// Bytes of the current size line or trailer line so far (bounded by MAX_CHUNK_LINE).
    line: usize,
    /// Bytes of the trailer section so far (bounded by MAX_TRAILERS).
    trailers: usize,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes as much of `input` as belongs to this body; pushes the range (within `input`)
    /// of every piece of chunk data onto `data`. Input may be split anywhere.
    pub fn decode(
        &mut self,
        input: &[u8],
        data: &mut Vec<Range<usize>>,
    ) -> Result<Decoded, BodyError> {
        if let State::Failed(why) = self.state {
            return Err(BodyError::Malformed(why));
        }
        let mut pos = 0;
        while let Some(&b) = input.get(pos) {
            match self.state {
                State::Done => break,
                State::Data => {
                    let available = (input.len() - pos) as u64;
                    // Fits in usize: at most `available`, which came from a usize.
                    let take = self.left.min(available) as usize;
                    data.push(pos..pos + take);
                    pos += take;
                    self.left -= take as u64;
                    if self.left == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    pos += 1;
                    if let Err(why) = self.step(b) {
                        self.state = State::Failed(why);
                        return Err(BodyError::Malformed(why));
                    }
                }
            }
        }
        Ok(Decoded {
            consumed: pos,
            done: self.state == State::Done,
        })
    }

    /// The body is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Advances over one framing byte (anything but chunk data).
    fn step(&mut self, b: u8) -> Result<(), &'static str> {
        match self.state {
            State::SizeStart => {
                self.left = hex(b).ok_or("invalid chunk size")?;
                self.digits = 1;
                self.line = 1;
                self.state = State::Size;
            }
            State::Size | State::SizeBws | State::Ext | State::SizeLf => self.size_line(b)?,
            State::DataCr => self.expect(b, b'\r', State::DataLf, "missing CRLF after chunk")?,
            State::DataLf => {
                self.expect(b, b'\n', State::SizeStart, "missing CRLF after chunk")?;
                self.line = 0;
            }
            State::TrailerStart
            | State::TrailerName
            | State::TrailerValue
            | State::TrailerLf
            | State::EndLf => self.trailer(b)?,
            State::Data | State::Done | State::Failed(_) => return Err("decoder misuse"),
        }
        Ok(())
    }

    /// One byte of a chunk-size line after its first digit.
    fn size_line(&mut self, b: u8) -> Result<(), &'static str> {
        self.line += 1;
        if self.line > MAX_CHUNK_LINE {
            return Err("chunk size line too long");
        }
        match (self.state, b) {
            (State::Size, _) if hex(b).is_some() => {
                let digit = hex(b).unwrap_or(0);
                self.digits += 1;
                if self.digits > MAX_SIZE_DIGITS {
                    return Err("chunk size has too many digits");
                }
                self.left = (self.left.checked_mul(16))
                    .and_then(|n| n.checked_add(digit))
                    .filter(|&n| n <= MAX_CHUNK_SIZE)
                    .ok_or("chunk size too large")?;
            }
            (State::Size | State::SizeBws, b' ' | b'\t') => self.state = State::SizeBws,
            (State::Size | State::SizeBws, b';') => self.state = State::Ext,
            (State::Size | State::Ext, b'\r') => self.state = State::SizeLf,
            (State::Ext, _) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {}
            (State::SizeLf, b'\n') if self.left == 0 => {
                self.line = 0;
                self.state = State::TrailerStart;
            }
            (State::SizeLf, b'\n') => self.state = State::Data,
            (State::SizeLf, _) => return Err("missing LF after chunk size"),
            (_, b'\n') => return Err("bare LF in chunk size line"),
            (State::Ext, _) => return Err("invalid byte in chunk extension"),
            _ => return Err("invalid chunk size"),
        }
        Ok(())
    }

    /// One byte of the trailer section (field lines, then the final CRLF).
    fn trailer(&mut self, b: u8) -> Result<(), &'static str> {
        self.line += 1;
        self.trailers += 1;
        if self.line > MAX_CHUNK_LINE {
            return Err("trailer line too long");
        }
        if self.trailers > MAX_TRAILERS {
            return Err("trailer section too long");
        }
        self.state = match (self.state, b) {
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart | State::TrailerName, _) if is_token(b) => State::TrailerName,
            (State::TrailerName, b':') => State::TrailerValue,
            (State::TrailerValue, b'\r') => State::TrailerLf,
            (State::TrailerValue, _) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {
                State::TrailerValue
            }
            (State::TrailerLf, b'\n') => {
                self.line = 0;
                State::TrailerStart
            }
            (State::EndLf, b'\n') => State::Done,
            (State::TrailerLf | State::EndLf, _) => return Err("missing LF in trailers"),
            (_, b'\n') => return Err("bare LF in trailers"),
            _ => return Err("invalid trailer field"),
        };
        Ok(())
    }

    fn expect(
        &mut self,
        b: u8,
        want: u8,
        next: State,
        why: &'static str,
    ) -> Result<(), &'static str> {
        if b != want {
            return Err(why);
        }
        self.state = next;
        Ok(())
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// RFC 9110 tchar.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Appends a chunk header for `len` data bytes (`{len:x}\r\n`).
pub fn chunk_header(len: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{len:x}\r\n");
}

/// The last chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `step` bytes; returns the payload, the bytes
    /// consumed, and whether the body ended.
    fn decode_in_steps(wire: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), BodyError> {
        let mut decoder = ChunkedDecoder::new();
        let mut payload = Vec::new();
        let mut consumed = 0;
        for piece in wire.chunks(step.max(1)) {
            let mut ranges = Vec::new();
            let d = decoder.decode(piece, &mut ranges)?;
            for r in ranges {
                assert!(
                    r.end <= d.consumed,
                    "data range {r:?} past consumed {}",
                    d.consumed
                );
                payload.extend_from_slice(&piece[r]);
            }
            consumed += d.consumed;
            if d.done {
                assert!(decoder.is_done());
                return Ok((payload, consumed, true));
            }
            assert_eq!(
                d.consumed,
                piece.len(),
                "a body not done consumes all its input"
            );
        }
        Ok((payload, consumed, decoder.is_done()))
    }

    fn one_shot(wire: &[u8]) -> Result<(Vec<u8>, usize, bool), BodyError> {
        decode_in_steps(wire, wire.len())
    }

    fn assert_malformed(wire: &[u8]) {
        assert!(
            matches!(one_shot(wire), Err(BodyError::Malformed(_))),
            "expected an error for {:?}",
            String::from_utf8_lossy(wire)
        );
        for step in [1, 2, 3, 7] {
            assert!(
                decode_in_steps(wire, step).is_err(),
                "step {step}: {wire:?}"
            );
        }
    }

    fn bodies() -> Vec<(Vec<u8>, Vec<u8>)> {
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut big_wire = Vec::new();
        for piece in big.chunks(1234) {
            chunk_header(piece.len(), &mut big_wire);
            big_wire.extend_from_slice(piece);
            big_wire.extend_from_slice(b"\r\n");
        }
        big_wire.extend_from_slice(LAST_CHUNK);
        vec![
            (b"0\r\n\r\n".to_vec(), b"".to_vec()),
            (b"5\r\nhello\r\n0\r\n\r\n".to_vec(), b"hello".to_vec()),
            (
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
                b"hello world".to_vec(),
            ),
            (
                b"A\r\n0123456789\r\n0\r\n\r\n".to_vec(),
                b"0123456789".to_vec(),
            ),
            (
                b"3;name=value;x\r\nabc\r\n0;last\r\n\r\n".to_vec(),
                b"abc".to_vec(),
            ),
            (b"3 \t;ext\r\nabc\r\n0\r\n\r\n".to_vec(), b"abc".to_vec()),
            (
                b"000003\r\n\r\n\r\r\n0\r\nX-Sum: 1\r\nY:\r\n\r\n".to_vec(),
                b"\r\n\r".to_vec(),
            ),
            (big_wire, big),
        ]
    }

    #[test]
    fn byte_by_byte_feeding_equals_one_shot_feeding() {
        for (wire, payload) in bodies() {
            let whole = one_shot(&wire).expect("valid body");
            assert_eq!(whole, (payload.clone(), wire.len(), true));
            for step in [1, 2, 3, 5, 8, 13, 64, 1000] {
                assert_eq!(
                    decode_in_steps(&wire, step).expect("valid body"),
                    whole,
                    "step {step}"
                );
            }
        }
    }

    #[test]
    fn data_ranges_concatenate_to_the_payload() {
        let mut ranges = Vec::new();
        let wire = b"4\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n";
        let d = ChunkedDecoder::new()
            .decode(wire, &mut ranges)
            .expect("valid");
        assert_eq!(
            d,
            Decoded {
                consumed: wire.len(),
                done: true
            }
        );
        let joined: Vec<u8> = ranges
            .iter()
            .flat_map(|r| wire[r.clone()].to_vec())
            .collect();
        assert_eq!(joined, b"Wikipedia in \r\n\r\nchunks.");
    }

    #[test]
    fn pipelined_bytes_after_the_body_are_not_consumed() {
        let wire = b"3\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\n";
        let body_len = wire.len() - b"GET /next HTTP/1.1\r\n".len();
        let (payload, consumed, done) = one_shot(wire).expect("valid");
        assert_eq!(
            (payload.as_slice(), consumed, done),
            (&b"abc"[..], body_len, true)
        );
        let (_, consumed, done) = decode_in_steps(wire, 1).expect("valid");
        assert_eq!((consumed, done), (body_len, true));
    }

    #[test]
    fn a_done_decoder_consumes_nothing_more() {
        let mut decoder = ChunkedDecoder::new();
        let mut ranges = Vec::new();
        decoder.decode(b"0\r\n\r\n", &mut ranges).expect("valid");
        let d = decoder
            .decode(b"5\r\nhello", &mut ranges)
            .expect("done is not an error");
        assert_eq!(
            d,
            Decoded {
                consumed: 0,
                done: true
            }
        );
        assert!(ranges.is_empty());
    }

    #[test]
    fn incomplete_body_is_not_done() {
        for wire in [
            &b"5\r\nhel"[..],
            b"5\r\nhello\r\n",
            b"0\r\n",
            b"0\r\nX: y\r\n",
            b"a",
        ] {
            let (_, consumed, done) = one_shot(wire).expect("valid so far");
            assert_eq!((consumed, done), (wire.len(), false), "{wire:?}");
        }
    }

    #[test]
    fn bad_chunk_sizes_are_rejected() {
        for wire in [
            &b"\r\nabc\r\n0\r\n\r\n"[..],
            b"x\r\n",
            b"-1\r\n",
            b"+1\r\n",
            b"0x5\r\nhello\r\n",
            b" 5\r\nhello\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5 5\r\n",
            b"5\t\r\n",
            b"g\r\n",
        ] {
            assert_malformed(wire);
        }
    }

    #[test]
    fn chunk_size_overflow_is_rejected() {
        assert_malformed(b"ffffffffffffffffff\r\n");
        assert_malformed(b"10000000000000000\r\n");
        assert_malformed(b"4000000000000001\r\n");
        assert_malformed(b"00000000000000001\r\n");
        let (_, consumed, done) = one_shot(b"4000000000000000\r\nab").expect("2^62 is allowed");
        assert_eq!((consumed, done), (20, false));
    }

    #[test]
    fn missing_crlf_after_data_is_rejected() {
        assert_malformed(b"3\r\nabcd\r\n0\r\n\r\n");
        assert_malformed(b"3\r\nabc0\r\n\r\n");
        assert_malformed(b"3\r\nabc\r0\r\n\r\n");
        assert_malformed(b"3\r\nabc\n0\r\n\r\n");
    }

    #[test]
    fn bare_lf_is_rejected_everywhere() {
        assert_malformed(b"3\nabc\r\n0\r\n\r\n");
        assert_malformed(b"3;ext\nabc\r\n0\r\n\r\n");
        assert_malformed(b"3\r\nabc\r\n0\n\r\n");
        assert_malformed(b"3\r\nabc\r\n0\r\n\n");
        assert_malformed(b"0\r\nX: y\n\r\n");
        assert_malformed(b"3\r\nabc\r\n0\r\nX: y\r\n\n");
        assert_malformed(b"3\r\r\nabc\r\n0\r\n\r\n");
    }

    #[test]
    fn control_bytes_in_extensions_and_trailers_are_rejected() {
        assert_malformed(b"3;a\0b\r\nabc\r\n0\r\n\r\n");
        assert_malformed(b"3;a\x7f\r\nabc\r\n0\r\n\r\n");
        assert_malformed(b"0\r\nX: a\0b\r\n\r\n");
        assert_malformed(b"0\r\n folded\r\n\r\n");
        assert_malformed(b"0\r\nX : y\r\n\r\n");
        assert_malformed(b"0\r\n: y\r\n\r\n");
        assert_malformed(b"0\r\nnocolon\r\n\r\n");
    }

    #[test]
    fn over_long_size_line_is_rejected() {
        let mut wire = b"5;".to_vec();
        wire.resize(MAX_CHUNK_LINE, b'x');
        wire.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_malformed(&wire);
        // A line of exactly MAX_CHUNK_LINE bytes (CRLF included) is fine.
        let mut ok = b"5;".to_vec();
        ok.resize(MAX_CHUNK_LINE - 2, b'x');
        ok.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(one_shot(&ok).expect("at the limit").0, b"hello");
    }

    #[test]
    fn over_long_trailers_are_rejected() {
        let mut long_line = b"0\r\nX: ".to_vec();
        long_line.resize(3 + MAX_CHUNK_LINE, b'v');
        long_line.extend_from_slice(b"\r\n\r\n");
        assert_malformed(&long_line);

        let mut many = b"0\r\n".to_vec();
        let line = format!("X-T: {}\r\n", "v".repeat(1000));
        while many.len() < MAX_TRAILERS + 3 {
            many.extend_from_slice(line.as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_malformed(&many);
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = ChunkedDecoder::new();
        let mut ranges = Vec::new();
        assert!(decoder.decode(b"z", &mut ranges).is_err());
        assert!(decoder.decode(b"0\r\n\r\n", &mut ranges).is_err());
        assert!(!decoder.is_done());
    }

    #[test]
    fn chunk_header_is_lowercase_hex_with_crlf() {
        let mut out = Vec::new();
        chunk_header(0x1a2b, &mut out);
        assert_eq!(out, b"1a2b\r\n");
    }
}
