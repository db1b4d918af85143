//! The kernel half of Python frames: walk a thread's CPython frames at sample time and
//! record `(code address, bytecode byte offset)` per frame into the sample. It reproduces
//! `probe-user/src/python/frames.rs` (the reference): shims skipped without being counted,
//! bounded, stopping at a frame linking to itself.
//!
//! It runs in `walk_python`, which the sampler reaches by a tail call; the frames go into
//! the sample's scratch record (`SampleScratch`), right after its native frames, two words
//! each.
//!
//! Verifier notes: the loop is bounded ([`PY_MAX_STEPS`]); the frame count lives in the
//! scratch record and is re-read through a volatile load each time, so the verifier sees an
//! unknown (masked) index rather than one constant per path, and the paths that record a
//! frame and those that skip one converge at the loop head (a few dozen instructions per
//! step instead of one state per (step, count) pair).

use core::{
    ffi::c_void,
    ptr::{addr_of, addr_of_mut, read_volatile, write_volatile},
};

use aya_ebpf::{helpers::generated::bpf_probe_read_user, macros::map, maps::PerCpuArray};
use probe_common::{
    PyFrameRecord, PyInstrKind, PyLayoutKernel, SampleScratch, PY_ABSENT, PY_FRAME_CALL_ENTRY,
    PY_FRAME_READ_BYTES, PY_MAX_FRAMES, PY_MAX_STEPS, SAMPLE_PY_TRUNCATED, SAMPLE_PY_WALKED,
};

/// Words of one frame read.
const READ_WORDS: usize = PY_FRAME_READ_BYTES as usize / 8;

/// Per-CPU buffer for one frame's fields (too big for the 512-byte BPF stack budget along
/// with the rest of the sampler).
#[map]
static PY_SCRATCH: PerCpuArray<[u64; READ_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// Where each needed field sits inside the words read per frame.
#[derive(Clone, Copy)]
struct Fields {
    previous: usize,
    code: usize,
    instr: usize,
    /// (word, bit shift) of the owner byte; `None` when shims need no check.
    owner: Option<(usize, u64)>,
    /// (word, bit shift) of the `is_entry` byte (3.11); `None` elsewhere.
    is_entry: Option<(usize, u64)>,
    instr_shift: u64,
    owned_by_cstack: u64,
}

impl Fields {
    #[inline(always)]
    fn new(layout: &PyLayoutKernel) -> Self {
        let start = layout.frame_read_start;
        let word = |offset: u32| (offset.wrapping_sub(start) as usize / 8) & (READ_WORDS - 1);
        let shift = |offset: u32| u64::from(offset.wrapping_sub(start) % 8) * 8;
        let owner = (layout.frame_owner != PY_ABSENT)
            .then(|| (word(layout.frame_owner), shift(layout.frame_owner)));
        let is_entry = (layout.frame_is_entry != PY_ABSENT)
            .then(|| (word(layout.frame_is_entry), shift(layout.frame_is_entry)));
        Fields {
            is_entry,
            previous: word(layout.frame_previous),
            code: word(layout.frame_code),
            instr: word(layout.frame_instr),
            owner,
            instr_shift: shift(layout.frame_instr),
            owned_by_cstack: u64::from(layout.owned_by_cstack),
        }
    }
}

/// Reads a user-space `u64` at `addr`.
#[inline(always)]
unsafe fn read_u64(addr: u64) -> Option<u64> {
    let mut value = 0u64;
    // SAFETY: the helper writes at most 8 bytes into `value` and fails softly on a bad
    // address (the caller's contract covers nothing more).
    let ret = unsafe {
        bpf_probe_read_user(
            addr_of_mut!(value).cast::<c_void>(),
            8,
            addr as *const c_void,
        )
    };
    (ret == 0).then_some(value)
}

/// The thread's innermost frame (0: none): `tstate->frame`, then `->current_frame` on
/// 3.11–3.12.
#[inline(always)]
unsafe fn first_frame(layout: &PyLayoutKernel, tstate: u64) -> Option<u64> {
    // SAFETY: user-space reads through the helper, which fails softly.
    let frame = unsafe { read_u64(tstate.wrapping_add(u64::from(layout.tstate_frame)))? };
    if layout.cframe_current_frame == PY_ABSENT || frame == 0 {
        return Some(frame);
    }
    // SAFETY: as above.
    unsafe { read_u64(frame.wrapping_add(u64::from(layout.cframe_current_frame))) }
}

/// Walks the Python frames of the thread whose `PyThreadState` is at `tstate` into the
/// record in `scratch`, after its native frames (`header.py_frames` must be 0), and returns
/// the `SAMPLE_PY_*` flags.
///
/// # Safety
/// `scratch` must be this CPU's sample scratch slot, whose native frame counts are set.
#[inline(always)]
pub unsafe fn walk(scratch: *mut SampleScratch, layout: &PyLayoutKernel, tstate: u64) -> u32 {
    // SAFETY: forwarded from the caller; user memory is only read through the helper.
    let Some(mut frame) = (unsafe { first_frame(layout, tstate) }) else {
        return SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED;
    };
    let Some(read_buf) = PY_SCRATCH.get_ptr_mut(0) else {
        return SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED;
    };
    let len = layout.frame_read_len;
    if len == 0 || len > PY_FRAME_READ_BYTES {
        return SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED;
    }
    for _ in 0..PY_MAX_STEPS {
        if frame == 0 {
            return SAMPLE_PY_WALKED;
        }
        // Re-read every step (volatile): what the verifier learns about a field on one
        // path (e.g. `instr_kind == 1`) then dies with the step instead of splitting every
        // later step into one state per value (see the module doc).
        // SAFETY: `layout` is a live map value of the right type.
        let layout = unsafe { read_volatile(layout) };
        let start = u64::from(layout.frame_read_start);
        let fields = Fields::new(&layout);
        // SAFETY: `read_buf` is this CPU's buffer of PY_FRAME_READ_BYTES >= `len` bytes.
        let read = unsafe {
            bpf_probe_read_user(
                read_buf.cast::<c_void>(),
                len,
                frame.wrapping_add(start) as *const c_void,
            )
        };
        if read != 0 {
            return SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED;
        }
        // SAFETY: `read_buf` is valid (above); indexes are masked to its length.
        let words = unsafe { &*read_buf };
        let previous = word(words, fields.previous);
        let code = word(words, fields.code);
        let shim = match fields.owner {
            Some((at, shift)) => (word(words, at) >> shift) & 0xff == fields.owned_by_cstack,
            None => false,
        };
        if shim {
            // The frames recorded since the previous shim were run by one eval-loop call,
            // which this shim entered: the latest of them is that call's outermost.
            // SAFETY: forwarded from the caller.
            unsafe { mark_last_call_entry(scratch) };
        } else if code != 0 {
            let instr = word(words, fields.instr) >> fields.instr_shift;
            let adaptive = u64::from(layout.code_code_adaptive);
            let offset = instr_offset(layout.instr_kind, code, adaptive, instr);
            let entry = match fields.is_entry {
                Some((at, shift)) => (word(words, at) >> shift) & 0xff != 0,
                // 3.8–3.10 run every frame in its own eval-loop call; 3.12+ mark calls
                // at their shims instead.
                None => layout.instr_kind <= PyInstrKind::LastiCodeUnits as u32,
            };
            let flags = if entry { PY_FRAME_CALL_ENTRY } else { 0 };
            // SAFETY: forwarded from the caller.
            if !unsafe { record(scratch, code, offset, flags) } {
                return SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED;
            }
        }
        if previous == frame {
            return SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED;
        }
        frame = previous;
    }
    if frame == 0 {
        SAMPLE_PY_WALKED
    } else {
        SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED
    }
}

/// Word `index` of a frame read (masked, so no bounds check can panic).
#[inline(always)]
fn word(words: &[u64; READ_WORDS], index: usize) -> u64 {
    words[index & (READ_WORDS - 1)]
}

/// Python frame `index` of the record in `scratch`: after the native frames, two words
/// per frame. Both parts are masked (the native frames to 255 words, `index` to
/// [`PY_MAX_FRAMES`]), so the slot lies within `words` whatever the counts hold.
///
/// # Safety
/// As [`walk`].
#[inline(always)]
unsafe fn frame_slot(scratch: *mut SampleScratch, index: u32) -> *mut PyFrameRecord {
    // SAFETY: the caller's slot; the counts are re-read (volatile, see the module doc).
    unsafe {
        let native = read_volatile(addr_of!((*scratch).header.kernel_frames))
            + read_volatile(addr_of!((*scratch).header.user_frames));
        let word = (native as usize & 255) + 2 * (index as usize & (PY_MAX_FRAMES - 1));
        addr_of_mut!((*scratch).words)
            .cast::<u64>()
            .add(word)
            .cast::<PyFrameRecord>()
    }
}

/// Appends one frame; false when [`PY_MAX_FRAMES`] are already recorded.
///
/// # Safety
/// As [`walk`].
#[inline(always)]
unsafe fn record(scratch: *mut SampleScratch, code: u64, offset: u32, flags: u32) -> bool {
    // SAFETY: the caller's slot; volatile so the count is re-read from memory (see the
    // module doc), and the index is checked (and masked by `frame_slot`).
    unsafe {
        let count = addr_of_mut!((*scratch).header.py_frames);
        let len = read_volatile(count);
        if len as usize >= PY_MAX_FRAMES {
            return false;
        }
        let slot = frame_slot(scratch, len);
        (*slot).code = code;
        (*slot).offset = offset;
        (*slot).flags = flags;
        write_volatile(count, len + 1);
    }
    true
}

/// Sets [`PY_FRAME_CALL_ENTRY`] on the latest recorded frame, if any.
///
/// # Safety
/// As [`walk`].
#[inline(always)]
unsafe fn mark_last_call_entry(scratch: *mut SampleScratch) {
    // SAFETY: as in `record`.
    unsafe {
        let len = read_volatile(addr_of!((*scratch).header.py_frames));
        if len == 0 || len as usize > PY_MAX_FRAMES {
            return;
        }
        (*frame_slot(scratch, len - 1)).flags |= PY_FRAME_CALL_ENTRY;
    }
}

/// The bytecode byte offset a frame's instruction field (shifted to its first byte)
/// stands for, as `frames.rs` computes it: "not started" (negative) clamps to 0.
#[inline(always)]
fn instr_offset(kind: u32, code: u64, adaptive: u64, instr: u64) -> u32 {
    let lasti = i64::from(instr as u32 as i32);
    let offset = if kind == PyInstrKind::LastiBytes as u32 {
        lasti
    } else if kind == PyInstrKind::LastiCodeUnits as u32 {
        lasti * 2
    } else {
        instr.wrapping_sub(code.wrapping_add(adaptive)) as i64
    };
    if offset < 0 {
        0
    } else if offset > i64::from(u32::MAX) {
        u32::MAX
    } else {
        offset as u32
    }
}
