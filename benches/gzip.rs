//! Which deflate backend ringway's gzip uses: flate2 built on zlib-rs (what ringway links)
//! against miniz_oxide (flate2's `rust_backend`), at levels 1, 6 and 9, on a 16 KiB JSON
//! API answer (`benches/data/api-16k.json`), state allocation included as for every
//! compressed response.
//!
//! `whole`: the body compressed in one piece and finished (a small answer that arrives in
//! one read). `stream`: the same body in 16 reads of 1 KiB, each sync-flushed as ringway
//! does for a streamed answer.
//!
//! miniz_oxide is driven exactly as flate2's `rust_backend` drives it (a boxed
//! `CompressorOxide` in raw format, `deflate::stream::deflate` into a 32 KiB buffer, CRC-32
//! by crc32fast, the 10-byte gzip header and 8-byte trailer), since one build of flate2 can
//! hold only one backend.

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use miniz_oxide::deflate::core::CompressorOxide;
use miniz_oxide::{DataFormat, MZFlush};

const BODY: &[u8] = include_bytes!("data/api-16k.json");

/// ringway's path: flate2's GzEncoder writing into a Vec (zlib-rs in this build).
fn flate2_gzip(body: &[u8], level: u32, piece: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    let pieces = body.chunks(piece).count();
    for (i, p) in body.chunks(piece).enumerate() {
        gz.write_all(p).expect("in memory");
        if i + 1 < pieces {
            gz.flush().expect("in memory");
        }
    }
    gz.finish().expect("in memory")
}

/// flate2's rust_backend, spelled out.
fn miniz_gzip(body: &[u8], level: u32, piece: usize) -> Vec<u8> {
    let mut c: Box<CompressorOxide> = Box::default();
    c.set_format_and_level(DataFormat::Raw, level as u8);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 32 * 1024];
    let pieces = body.chunks(piece).count();
    for (i, p) in body.chunks(piece).enumerate() {
        crc.update(p);
        let flush = if i + 1 < pieces {
            MZFlush::Sync
        } else {
            MZFlush::Finish
        };
        let mut input = p;
        loop {
            let r = miniz_oxide::deflate::stream::deflate(&mut c, input, &mut buf, flush);
            input = &input[r.bytes_consumed..];
            out.extend_from_slice(&buf[..r.bytes_written]);
            let drained = input.is_empty() && r.bytes_written < buf.len();
            match r.status {
                Ok(miniz_oxide::MZStatus::StreamEnd) => break,
                Ok(_) if drained && flush != MZFlush::Finish => break,
                Ok(_) => {}
                // No progress possible: everything is out already.
                Err(miniz_oxide::MZError::Buf) if flush != MZFlush::Finish => break,
                Err(e) => panic!("miniz_oxide: {e:?}"),
            }
        }
    }
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out
}

fn gunzip(z: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(z)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn backends(c: &mut Criterion) {
    type Compress = fn(&[u8], u32, usize) -> Vec<u8>;
    let candidates: [(&str, Compress); 2] = [("zlib-rs", flate2_gzip), ("miniz_oxide", miniz_gzip)];
    // Both give valid gzip of the same body, and say how small.
    for (name, f) in candidates {
        for level in [1, 6, 9] {
            for piece in [BODY.len(), 1024] {
                let z = f(BODY, level, piece);
                assert_eq!(gunzip(&z), BODY, "{name} level {level}");
                eprintln!(
                    "gzip bench: {name} level {level} pieces of {piece}: {} -> {} bytes",
                    BODY.len(),
                    z.len()
                );
            }
        }
    }
    for (shape, piece) in [("whole", BODY.len()), ("stream", 1024)] {
        let mut group = c.benchmark_group(format!("gzip_16k_json_{shape}"));
        group.throughput(Throughput::Bytes(BODY.len() as u64));
        for level in [1u32, 6, 9] {
            for (name, f) in candidates {
                group.bench_with_input(BenchmarkId::new(name, level), &level, |b, &level| {
                    b.iter(|| f(black_box(BODY), level, piece))
                });
            }
        }
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = backends
}
criterion_main!(benches);
