//! The framer: finds where an AMI message ends and splits its lines into headers as it goes, 64
//! bytes at a time.
//!
//! Per 64-byte block, SIMD compares (SSE2, or AVX2 when the CPU has it) give a bit mask of the
//! `\n` bytes and one of the `:` bytes; the framer walks the set bits in order, so each line's end
//! and first colon come out of the same pass, and an ordinary line becomes a header (`name ":"
//! [" "] value`) without its bytes being read again. A frame that arrives in pieces is scanned
//! once: the scan resumes at the first unfinished line.
//!
//! Tried and measured slower (docs/bench-ami.md): a branch-free variant in the style of simdjson
//! (first colon of every line from one carry-propagating addition per block, empty lines from
//! shifted masks, positions written out unconditionally). AMI lines are short but not that
//! short: with two or three lines per 64 bytes, walking the bits costs fewer instructions.

use super::message::{Span, TableWriter};

pub(crate) const BANNER_PREFIX: &[u8] = b"Asterisk Call Manager/";
pub(crate) const FOLLOWS: &[u8] = b"Response: Follows";
pub(crate) const END_COMMAND: &[u8] = b"--END COMMAND--";

/// Headers per table buffer: 1024 x 16 bytes, the tables of about fifty typical events.
const TABLE_SPANS: usize = 1024;

/// `usize` stand-in for "this line has no colon (yet)".
const NONE: usize = usize::MAX;

/// Bit `i` of each mask is set when byte `i` of a 64-byte block is `\n`, `:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Masks {
    pub(crate) nl: u64,
    pub(crate) co: u64,
}

/// Computes [`Masks`] for 64 bytes.
pub(crate) trait Masker {
    /// # Safety
    /// The CPU must have the instructions this masker uses (see [`Simd::detect`]).
    unsafe fn masks64(block: &[u8; 64]) -> Masks;
}

/// The instruction set the framer uses, chosen once per codec from the running CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Simd {
    /// Byte by byte (any architecture; also the reference the SIMD maskers are tested against).
    #[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
    Scalar,
    /// SSE2: part of the x86_64 baseline.
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// AVX2, detected at run time.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Simd {
    pub(crate) fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            if avx2() {
                return Simd::Avx2;
            }
            Simd::Sse2
        }
        #[cfg(not(target_arch = "x86_64"))]
        Simd::Scalar
    }

    /// Every variant this CPU can run (for tests: each must frame identically).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Simd> {
        #[allow(unused_mut)]
        let mut all = vec![Simd::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            all.push(Simd::Sse2);
            if avx2() {
                all.push(Simd::Avx2);
            }
        }
        all
    }
}

/// AVX2 with the bit instructions the framer leans on (`tzcnt`, `popcnt`): every x86_64 CPU
/// since 2013 (Haswell, Zen) has all three.
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("bmi1")
        && std::arch::is_x86_feature_detected!("popcnt")
}

pub(crate) struct Scalar;

impl Masker for Scalar {
    #[inline(always)]
    unsafe fn masks64(block: &[u8; 64]) -> Masks {
        let mut m = Masks { nl: 0, co: 0 };
        for (i, &b) in block.iter().enumerate() {
            m.nl |= u64::from(b == b'\n') << i;
            m.co |= u64::from(b == b':') << i;
        }
        m
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) struct Sse2;

#[cfg(target_arch = "x86_64")]
impl Masker for Sse2 {
    #[inline(always)]
    unsafe fn masks64(block: &[u8; 64]) -> Masks {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        let (mut nl, mut co) = (0u64, 0u64);
        // SAFETY: SSE2 is part of the x86_64 baseline; each unaligned 16-byte load reads inside
        // `block` (offsets 0, 16, 32, 48 of 64 bytes).
        unsafe {
            let lf = _mm_set1_epi8(b'\n' as i8);
            let colon = _mm_set1_epi8(b':' as i8);
            for i in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(16 * i).cast::<__m128i>());
                let m = |x| u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, x)) as u16) << (16 * i);
                nl |= m(lf);
                co |= m(colon);
            }
        }
        Masks { nl, co }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Masker for Avx2 {
    #[inline(always)]
    unsafe fn masks64(block: &[u8; 64]) -> Masks {
        use std::arch::x86_64::{
            __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
        };
        // SAFETY: the caller guarantees AVX2 (only the `*_avx2` entry points use this masker);
        // the two unaligned 32-byte loads read inside `block` (offsets 0 and 32 of 64 bytes).
        unsafe {
            let lo = _mm256_loadu_si256(block.as_ptr().cast::<__m256i>());
            let hi = _mm256_loadu_si256(block.as_ptr().add(32).cast::<__m256i>());
            let m = |c: u8| {
                let c = _mm256_set1_epi8(c as i8);
                u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, c)) as u32)
                    | u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, c)) as u32) << 32
            };
            Masks {
                nl: m(b'\n'),
                co: m(b':'),
            }
        }
    }
}

/// The masks of the (up to) 64 bytes at the start of `bytes`; missing bytes are neither.
///
/// # Safety
/// As [`Masker::masks64`].
#[inline(always)]
unsafe fn masks<M: Masker>(bytes: &[u8]) -> Masks {
    let mut pad = [0u8; 64];
    let block: &[u8; 64] = match bytes.get(..64) {
        Some(b) => b.try_into().unwrap_or(&pad),
        None => {
            pad[..bytes.len()].copy_from_slice(bytes);
            &pad
        }
    };
    // SAFETY: passed on from the caller.
    unsafe { M::masks64(block) }
}

/// What the framer keeps between reads of one frame. The frame always starts at offset 0 of the
/// buffer it is given (the decoder consumes whole frames).
#[derive(Debug, Default)]
pub(crate) struct FrameScan {
    /// Start of the first line not yet scanned (always a line start).
    pub(crate) scan: usize,
    /// The current frame is a legacy `Response: Follows` whose body may contain blank lines.
    pub(crate) follows: bool,
    /// Inside a `Follows` frame: `--END COMMAND--` was seen, the next empty line ends it.
    pub(crate) end_command: bool,
    /// The frame just found is a banner line (a new session inside the stream).
    pub(crate) banner: bool,
    /// The headers of the complete lines scanned so far (not for a `Follows` frame, which the
    /// general parser reads): once the end is found, the parse of an ordinary frame.
    pub(crate) spans: TableWriter,
    /// Lines without a usable colon among them: counted when the frame is delivered.
    pub(crate) malformed: u64,
}

impl FrameScan {
    pub(crate) fn new() -> FrameScan {
        FrameScan {
            spans: TableWriter::with_capacity(TABLE_SPANS),
            ..FrameScan::default()
        }
    }

    /// Ready for the next frame (keeps the allocation).
    pub(crate) fn reset(&mut self) {
        self.scan = 0;
        self.follows = false;
        self.end_command = false;
        self.banner = false;
        self.spans.clear();
        self.malformed = 0;
    }

    /// Finds the end (exclusive) of the frame at the start of `src`, with the masker `simd`
    /// selects; `None` until it is complete. Call again with the same buffer, grown.
    pub(crate) fn find_end(&mut self, simd: Simd, src: &[u8]) -> Option<usize> {
        // SAFETY: `simd` comes from `Simd::detect` (or `Simd::available` in tests), so the CPU
        // has the instructions of the masker it selects.
        unsafe {
            match simd {
                Simd::Scalar => frame_scan::<Scalar>(self, src),
                #[cfg(target_arch = "x86_64")]
                Simd::Sse2 => frame_scan::<Sse2>(self, src),
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2 => frame_scan_avx2(self, src),
            }
        }
    }
}

/// The framer: scans complete lines from `st.scan`, finding line ends and the first
/// colon of every line in one pass over 64-byte masks, and splits each line into a header as it
/// goes (`name ":" [" "] value`, the grammar of the codec's nom `header`). Returns the end
/// (exclusive) of the frame when its terminating empty line is found; otherwise leaves `st.scan`
/// at the unfinished line, which is scanned again from its start when more bytes come.
///
/// # Safety
/// As [`Masker::masks64`].
#[inline(always)]
pub(crate) unsafe fn frame_scan<M: Masker>(st: &mut FrameScan, src: &[u8]) -> Option<usize> {
    let mut line_start = st.scan;
    let mut colon = NONE;
    let mut block = line_start;
    while block < src.len() {
        // SAFETY: passed on from the caller.
        let Masks { mut nl, mut co, .. } = unsafe { masks::<M>(&src[block..]) };
        while nl != 0 {
            let i = nl.trailing_zeros() as usize;
            let upto = nl ^ (nl - 1); // bits 0..=i
            nl &= nl - 1;
            let before = co & (upto >> 1);
            if colon == NONE && before != 0 {
                colon = block + before.trailing_zeros() as usize;
            }
            co &= !upto;
            let at = block + i;
            let end = if at > line_start && src[at - 1] == b'\r' {
                at - 1
            } else {
                at
            };
            if line_start == 0 {
                let line = &src[..end];
                st.follows = line == FOLLOWS;
                // A banner after the first message: `record` appends a new session after a
                // reconnect, and the banner has no blank line after it.
                if line.starts_with(BANNER_PREFIX) {
                    st.scan = 0;
                    st.banner = true;
                    return Some(at + 1);
                }
            }
            if end == line_start {
                if !st.follows || st.end_command {
                    st.scan = 0;
                    return Some(at + 1);
                }
            } else if st.follows {
                if src[line_start..end].ends_with(END_COMMAND) {
                    st.end_command = true;
                }
            } else if colon > line_start && colon < end {
                let mut value = colon + 1;
                if value < end && src[value] == b' ' {
                    value += 1;
                }
                st.spans.push(Span {
                    name: (line_start as u32, colon as u32),
                    value: (value as u32, end as u32),
                });
            } else {
                st.malformed += 1;
            }
            colon = NONE;
            line_start = at + 1;
        }
        if colon == NONE && co != 0 {
            colon = block + co.trailing_zeros() as usize;
        }
        block += 64;
    }
    st.scan = line_start;
    None
}

/// [`frame_scan`] compiled for AVX2, BMI1 and POPCNT.
///
/// # Safety
/// The CPU must support them (see `avx2`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,popcnt")]
unsafe fn frame_scan_avx2(st: &mut FrameScan, src: &[u8]) -> Option<usize> {
    // SAFETY: this function only runs on a CPU with these features (its own contract).
    unsafe { frame_scan::<Avx2>(st, src) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`masks`] with the masker `simd` selects.
    fn masks_with(simd: Simd, bytes: &[u8]) -> Masks {
        // SAFETY: `Simd::available` lists only maskers this CPU runs.
        unsafe {
            match simd {
                Simd::Scalar => masks::<Scalar>(bytes),
                #[cfg(target_arch = "x86_64")]
                Simd::Sse2 => masks::<Sse2>(bytes),
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2 => masks::<Avx2>(bytes),
            }
        }
    }

    proptest::proptest! {
        /// Every masker marks exactly the `\n` and `:` bytes, in full and in short blocks.
        #[test]
        fn masks_mark_exactly_newlines_and_colons(bytes in proptest::collection::vec(
            proptest::sample::select(vec![b'\n', b':', b'\r', b'a', 0x0a ^ 0x80, b':' ^ 0x80, 0]), 0..100)) {
            for simd in Simd::available() {
                let m = masks_with(simd, &bytes);
                for i in 0..64 {
                    let b = bytes.get(i).copied();
                    proptest::prop_assert_eq!(m.nl >> i & 1 == 1, b == Some(b'\n'), "{:?} {}", simd, i);
                    proptest::prop_assert_eq!(m.co >> i & 1 == 1, b == Some(b':'), "{:?} {}", simd, i);
                }
            }
        }
    }

    #[test]
    fn this_cpu_uses_its_best_masker() {
        let best = Simd::detect();
        assert_eq!(Simd::available().last(), Some(&best));
    }
}
