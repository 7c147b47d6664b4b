//! Body framing: a small enum for how much is left, and an incremental chunked decoder.
//!
//! The decoder validates chunked framing strictly (hex sizes without overflow, CRLF after
//! every chunk, bounded extensions and trailers) and reports where the data of each chunk is,
//! so the proxy can forward the raw bytes (both sides chunked) or only the data (to an
//! HTTP/1.0 client) while never reading past the end of the message.

use std::ops::Range;

/// Longest chunk-size line (size, extensions, CRLF) or trailer section we accept.
pub const MAX_CHUNK_LINE: usize = 4096;
pub const MAX_TRAILERS: usize = 16 * 1024;

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

/// Incremental decoder for `Transfer-Encoding: chunked`.
#[derive(Clone, Debug, Default)]
pub struct ChunkedDecoder {
    _todo: (),
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        todo!()
    }

    /// Consumes as much of `input` as belongs to this body; pushes the range (within `input`)
    /// of every piece of chunk data onto `data`. Input may be split anywhere.
    pub fn decode(
        &mut self,
        _input: &[u8],
        _data: &mut Vec<Range<usize>>,
    ) -> Result<Decoded, BodyError> {
        todo!()
    }

    /// The body is complete.
    pub fn is_done(&self) -> bool {
        todo!()
    }
}

/// Appends a chunk header for `len` data bytes (`{len:x}\r\n`).
pub fn chunk_header(len: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{len:x}\r\n");
}

/// The last chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
