//! Decoding speed against the framing limit.
//!
//! One large stream (default 256 MB, `PEREZVON_BENCH_MB` to change) is built from the fixtures
//! with unique ids. In the same run: the codec decoding it (events/s, MB/s), and a bare
//! `memchr::memmem` scan for `\r\n\r\n` over the same bytes, which is as fast as any AMI reader
//! can find message ends: the framing limit. Goal: decode >= 50 % of the framing limit's speed.
//!
//! A third figure, the floor of any decoder that hands messages out one by one: the same memmem
//! scan, plus cutting each message off the buffer as a zero-copy `Bytes` (one reference count
//! taken, one dropped) and nothing else: no line, no header, no table.
//!
//! `cargo bench --bench decode`

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput};
use perezvon::ami::AmiCodec;
use tokio_util::codec::Decoder;

#[path = "../examples/support/stream.rs"]
mod stream;

fn decode(buf: &mut BytesMut) -> u64 {
    let mut codec = AmiCodec::new();
    let mut events = 0u64;
    while let Ok(Some(m)) = codec.decode(buf) {
        // Touch the message the way a consumer would: its event name.
        events += u64::from(black_box(m.event()).is_some());
    }
    events
}

fn framing_limit(bytes: &[u8]) -> u64 {
    memchr::memmem::find_iter(bytes, b"\r\n\r\n").count() as u64
}

fn frames_only(buf: &mut BytesMut) -> u64 {
    let finder = memchr::memmem::Finder::new(b"\r\n\r\n");
    let mut frames = 0u64;
    while let Some(i) = finder.find(buf) {
        let frame = buf.split_to(i + 4).freeze();
        frames += u64::from(!black_box(frame).is_empty());
    }
    frames
}

fn best_of(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..n).map(|_| f()).min().unwrap_or_default()
}

fn main() {
    let mb: usize = std::env::var("PEREZVON_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let t = Instant::now();
    let (bytes, events) = stream::build(Path::new("fixtures/asterisk-22"), mb * 1024 * 1024);
    let size = bytes.len() as f64;
    eprintln!(
        "stream: {:.1} MB, {events} events ({:.0} bytes/event), built in {:.1?}",
        size / 1e6,
        size / events as f64,
        t.elapsed()
    );

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("ami");
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("decode", |b| {
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| {
                    let n = decode(buf);
                    assert_eq!(n, events);
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function("framing_limit_memmem", |b| {
            b.iter(|| black_box(framing_limit(black_box(&bytes))))
        });
        g.bench_function("frames_only_memmem_split", |b| {
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| black_box(frames_only(buf)),
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
    c.final_summary();

    // One plain summary line with both figures from the same process.
    let dec = best_of(3, || {
        let mut buf = BytesMut::from(&bytes[..]);
        let t = Instant::now();
        let n = decode(&mut buf);
        let d = t.elapsed();
        assert_eq!(n, events);
        d
    });
    let lim = best_of(3, || {
        let t = Instant::now();
        black_box(framing_limit(black_box(&bytes)));
        t.elapsed()
    });
    let floor = best_of(3, || {
        let mut buf = BytesMut::from(&bytes[..]);
        let t = Instant::now();
        black_box(frames_only(&mut buf));
        t.elapsed()
    });
    let rate = |d: Duration| size / d.as_secs_f64() / 1e6;
    println!(
        "summary: decode {:.0} MB/s {:.2} M events/s | framing limit {:.0} MB/s {:.2} M messages/s | decode = {:.0}% of the limit",
        rate(dec),
        events as f64 / dec.as_secs_f64() / 1e6,
        rate(lim),
        events as f64 / lim.as_secs_f64() / 1e6,
        100.0 * lim.as_secs_f64() / dec.as_secs_f64()
    );
    println!(
        "floor: memmem + one zero-copy Bytes per message {:.0} MB/s = {:.0}% of the limit",
        rate(floor),
        100.0 * lim.as_secs_f64() / floor.as_secs_f64()
    );
}
