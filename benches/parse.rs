//! Micro-benchmarks of the sans-io HTTP/1.x core: request heads (curl/wrk-sized and a
//! 20-header browser request), a typical response head, and chunked decoding of 64 KiB.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringway::http::body::{ChunkedDecoder, LAST_CHUNK, chunk_header};
use ringway::http::head::{HeadLimits, parse_request, parse_response};

const LIMITS: HeadLimits = HeadLimits {
    max_header_size: 16 * 1024,
};

/// What `curl http://127.0.0.1:1700/` and wrk send.
const CURL: &[u8] =
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1700\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

/// A browser navigation: 20 headers, cookies, client hints.
const BROWSER: &[u8] = b"GET /v1/chat/completions?model=llama-3&stream=true HTTP/1.1\r\n\
Host: api.example.com\r\n\
Connection: keep-alive\r\n\
Cache-Control: max-age=0\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Sec-Fetch-Site: none\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-User: ?1\r\n\
Sec-Fetch-Dest: document\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en;q=0.9,fr;q=0.8\r\n\
Cookie: session=4f1c2a9e8b7d6c5f4e3d2c1b0a998877; theme=dark; _ga=GA1.1.123456789.1700000000\r\n\
If-None-Match: \"5f3e-1a2b3c4d\"\r\n\
If-Modified-Since: Tue, 14 May 2024 10:00:00 GMT\r\n\
Referer: https://example.com/start\r\n\
DNT: 1\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: uvicorn\r\n\
Date: Tue, 14 May 2024 10:00:00 GMT\r\n\
Content-Type: application/json\r\n\
Content-Length: 1234\r\n\
X-Request-Id: 0f8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d\r\n\
Connection: keep-alive\r\n\r\n";

/// 64 KiB of payload in 4 KiB chunks, the way a streaming server writes it.
fn chunked_body() -> Vec<u8> {
    let payload = vec![b'x'; 64 * 1024];
    let mut wire = Vec::with_capacity(payload.len() + 1024);
    for piece in payload.chunks(4096) {
        chunk_header(piece.len(), &mut wire);
        wire.extend_from_slice(piece);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(LAST_CHUNK);
    wire
}

fn heads(c: &mut Criterion) {
    let mut g = c.benchmark_group("head");
    for (name, wire) in [
        ("request_curl", CURL),
        ("request_browser_20_headers", BROWSER),
    ] {
        assert!(parse_request(wire, LIMITS).expect("valid").is_some());
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse_request(black_box(wire), LIMITS)));
    }
    // What httparse alone costs on the same bytes: our validation is the difference.
    for (name, wire) in [
        ("httparse_only_curl", CURL),
        ("httparse_only_browser", BROWSER),
    ] {
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; 128];
                let mut req = httparse::Request::new(&mut headers);
                req.parse(black_box(wire)).map(|s| s.is_complete())
            })
        });
    }
    assert!(
        parse_response(RESPONSE, false, 16 * 1024)
            .expect("valid")
            .is_some()
    );
    g.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    g.bench_function("response", |b| {
        b.iter(|| parse_response(black_box(RESPONSE), false, 16 * 1024))
    });
    g.finish();
}

fn chunked(c: &mut Criterion) {
    let wire = chunked_body();
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    let mut ranges = Vec::with_capacity(64);
    g.bench_function("decode_64k_one_read", |b| {
        b.iter(|| {
            ranges.clear();
            let mut decoder = ChunkedDecoder::new();
            decoder.decode(black_box(&wire), &mut ranges)
        })
    });
    // The same body as it arrives from a socket: 16 KiB reads that split chunks anywhere.
    g.bench_function("decode_64k_16k_reads", |b| {
        b.iter(|| {
            let mut decoder = ChunkedDecoder::new();
            for read in black_box(&wire).chunks(16 * 1024) {
                ranges.clear();
                let _ = decoder.decode(read, &mut ranges);
            }
            decoder.is_done()
        })
    });
    g.finish();
}

criterion_group!(benches, heads, chunked);
criterion_main!(benches);
