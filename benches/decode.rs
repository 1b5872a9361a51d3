//! Decoding speed against the framing limit.
//!
//! One large stream (default 256 MB, `PEREZVON_BENCH_MB` to change) is built from the fixtures
//! with unique ids. In the same run: the codec decoding it (events/s, MB/s), and a bare
//! `memchr::memmem` scan for `\r\n\r\n` over the same bytes, which is as fast as any AMI reader
//! can find message ends: the framing limit. Goal: decode >= 50 % of the framing limit's speed.
//!
//! Two floors show what part of that speed is left for decoding at all, each as a share of the
//! limit in the summary:
//! - `frames_only`: the memmem scan, plus cutting each message off the buffer as a zero-copy
//!   `Bytes` (one reference count taken, one dropped): what any decoder that hands messages out
//!   one by one must at least do. No line, no header, no table.
//! - `frames_and_line_ends` (x86_64 with AVX2): that, plus listing the offset of every line end
//!   of each message (64-byte AVX2 masks, a reused `Vec`): the least work that can index headers
//!   at all. Still no colon, no `\r`, no header table.
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

/// This CPU can run [`frames_and_line_ends`] (x86_64 with AVX2 and BMI1).
fn line_ends_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("bmi1");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// [`frames_only`] plus the offset of every `\n` of each frame; `None` where not
/// [`line_ends_supported`].
fn frames_and_line_ends(buf: &mut BytesMut) -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    if line_ends_supported() {
        let finder = memchr::memmem::Finder::new(b"\r\n\r\n");
        let mut ends = Vec::with_capacity(256);
        let mut lines = 0u64;
        while let Some(i) = finder.find(buf) {
            let frame = buf.split_to(i + 4).freeze();
            ends.clear();
            // SAFETY: `line_ends_supported` detected AVX2 and BMI1.
            unsafe { line_ends_avx2(&frame, &mut ends) };
            lines += black_box(&ends).len() as u64;
        }
        return Some(lines);
    }
    let _ = buf;
    None
}

/// Appends the offset of every `\n` in `frame` to `ends`, 64 bytes at a time.
///
/// # Safety
/// The CPU must have AVX2 and BMI1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1")]
unsafe fn line_ends_avx2(frame: &[u8], ends: &mut Vec<u32>) {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
    };
    let lf = _mm256_set1_epi8(b'\n' as i8);
    for (n, chunk) in frame.chunks(64).enumerate() {
        let mut block = [0u8; 64];
        let full: &[u8; 64] = match chunk.try_into() {
            Ok(b) => b,
            Err(_) => {
                block[..chunk.len()].copy_from_slice(chunk);
                &block
            }
        };
        // SAFETY: two unaligned 32-byte loads inside the 64-byte block; AVX2 per the contract.
        let mut nl = unsafe {
            let lo = _mm256_loadu_si256(full.as_ptr().cast::<__m256i>());
            let hi = _mm256_loadu_si256(full.as_ptr().add(32).cast::<__m256i>());
            u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, lf)) as u32)
                | u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, lf)) as u32) << 32
        };
        while nl != 0 {
            ends.push(64 * n as u32 + nl.trailing_zeros());
            nl &= nl - 1;
        }
    }
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
        g.bench_function("frames_only", |b| {
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| black_box(frames_only(buf)),
                BatchSize::PerIteration,
            )
        });
        if line_ends_supported() {
            g.bench_function("frames_and_line_ends", |b| {
                b.iter_batched_ref(
                    || BytesMut::from(&bytes[..]),
                    |buf| black_box(frames_and_line_ends(buf)),
                    BatchSize::PerIteration,
                )
            });
        }
        g.finish();
    }
    c.final_summary();

    // Plain summary lines with every figure from the same process.
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
    let lines = line_ends_supported().then(|| {
        best_of(3, || {
            let mut buf = BytesMut::from(&bytes[..]);
            let t = Instant::now();
            black_box(frames_and_line_ends(&mut buf));
            t.elapsed()
        })
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
    let share = |d: Duration| 100.0 * lim.as_secs_f64() / d.as_secs_f64();
    println!(
        "floor: frames only (memmem + a zero-copy Bytes per message) {:.0} MB/s = {:.0}% of the limit",
        rate(floor),
        share(floor)
    );
    if let Some(lines) = lines {
        println!(
            "floor: frames and their line ends (+ every \\n offset, AVX2) {:.0} MB/s = {:.0}% of the limit",
            rate(lines),
            share(lines)
        );
    }
}
