//! The kernel half of Python frames: walk a thread's CPython frames at sample time and
//! record `(code address, bytecode byte offset)` per frame into the sample. It reproduces
//! `probe-user/src/python/frames.rs` (the reference): shims skipped without being counted,
//! bounded, stopping at a frame linking to itself.
//!
//! It runs in `walk_python`, which the sampler reaches by a tail call; the frames go into
//! the sample's scratch record (`SampleScratch`), right after its native frames, two words
//! each.
//!
//! Verifier notes: the walk is a `bpf_loop` (kernel >= 5.17) of at most [`PY_MAX_STEPS`]
//! calls of one step, [`walk_step`], so the verifier checks the step's body as a function
//! of its own instead of simulating every iteration of a loop (about 1,300 instructions
//! processed instead of 180,000, ~2 ms instead of ~0.2 s). Between steps the state is a
//! [`Walk`] in `walk`'s stack frame, and the frame count lives in the scratch record: the
//! step keeps nothing in registers from one call to the next, and what it reads back is
//! an unknown value to the verifier, so after a second pass the state a step starts from
//! matches one already checked and the verifier stops. For the same reason the step bounds
//! every index it uses by itself (masks, and a check of the read length on the register
//! passed to the helper), whatever its caller checked. The step must stay a function
//! (`#[inline(never)]`, referenced by address): the kernel takes such a reference only with
//! BTF func_info (aya-build links with `--btf`) and to a static function (a private one is).

use core::{ffi::c_void, ptr::addr_of_mut};

use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_probe_read_user},
    macros::map,
    maps::PerCpuArray,
};
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
    let Some(frame) = (unsafe { first_frame(layout, tstate) }) else {
        return SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED;
    };
    let Some(read_buf) = PY_SCRATCH.get_ptr_mut(0) else {
        return SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED;
    };
    let read_len = layout.frame_read_len;
    if read_len == 0 || read_len > PY_FRAME_READ_BYTES {
        return SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED;
    }
    let mut walk = Walk {
        frame,
        scratch,
        layout,
        read_buf,
        read_len,
        flags: 0,
    };
    // SAFETY: `walk_step` is a callback of the type `bpf_loop` expects, and it receives
    // `walk`, which outlives the call.
    let steps = unsafe {
        bpf_loop(
            PY_MAX_STEPS as u32,
            walk_step as *mut c_void,
            addr_of_mut!(walk).cast::<c_void>(),
            0,
        )
    };
    if steps < 0 {
        SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED
    } else if walk.flags != 0 {
        walk.flags
    } else if walk.frame == 0 {
        SAMPLE_PY_WALKED
    } else {
        // PY_MAX_STEPS steps and still a frame to read.
        SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED
    }
}

/// The walk's state between two steps, in `walk`'s stack frame; `bpf_loop` hands each
/// step a pointer to it. The pointers are the ones `walk` checked (the verifier keeps their
/// types through the stack).
#[repr(C)]
struct Walk {
    /// The next frame to read; 0 once the outermost one is behind.
    frame: u64,
    /// The sample's record (as [`walk`]).
    scratch: *mut SampleScratch,
    /// The process's layout (a `PY_PROCS` value).
    layout: *const PyLayoutKernel,
    /// This CPU's `PY_SCRATCH` buffer.
    read_buf: *mut [u64; READ_WORDS],
    /// Bytes read per frame: the layout's `frame_read_len`, checked by `walk`.
    read_len: u32,
    /// The `SAMPLE_PY_*` flags once a step has stopped the walk, 0 until then.
    flags: u32,
}

/// `bpf_loop` callback results.
const CONTINUE: i64 = 0;
const STOP: i64 = 1;

/// One step of the walk, run by `bpf_loop` (at most [`PY_MAX_STEPS`] times): reads
/// `walk.frame` and records it, unless it is a shim, then moves to the frame it links to.
/// Never inlined: `bpf_loop` needs it as a function of its own, which the verifier checks
/// once rather than once per step.
///
/// # Safety
/// `walk` must point to a [`Walk`] whose pointers are valid (what [`walk`] passes).
#[inline(never)]
unsafe extern "C" fn walk_step(_index: u64, walk: *mut c_void) -> i64 {
    // SAFETY: `bpf_loop` passes back the `Walk` that `walk` gave it, alive for the call.
    let walk = unsafe { &mut *walk.cast::<Walk>() };
    // SAFETY: forwarded from the caller.
    match unsafe { step(walk) } {
        Some(flags) => {
            walk.flags = flags;
            STOP
        }
        None => CONTINUE,
    }
}

/// The body of [`walk_step`]: `Some(flags)` stops the walk with those `SAMPLE_PY_*` flags.
///
/// # Safety
/// As [`walk_step`].
#[inline(always)]
unsafe fn step(walk: &mut Walk) -> Option<u32> {
    let frame = walk.frame;
    if frame == 0 {
        return Some(SAMPLE_PY_WALKED);
    }
    // SAFETY: a live map value of the right type (see `Walk`).
    let layout = unsafe { &*walk.layout };
    let len = walk.read_len;
    // Never true (`walk` checked it), but the verifier does not carry that bound into the
    // callback; it needs this comparison on the very register passed to the helper (a
    // two-sided check compiles to a comparison on a copy).
    if len > PY_FRAME_READ_BYTES {
        return Some(SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED);
    }
    let fields = Fields::new(layout);
    // SAFETY: `read_buf` is this CPU's buffer of PY_FRAME_READ_BYTES >= `len` bytes.
    let read = unsafe {
        bpf_probe_read_user(
            walk.read_buf.cast::<c_void>(),
            len,
            frame.wrapping_add(u64::from(layout.frame_read_start)) as *const c_void,
        )
    };
    if read != 0 {
        return Some(SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED);
    }
    // SAFETY: `read_buf` is valid (see `Walk`); indexes are masked to its length.
    let words = unsafe { &*walk.read_buf };
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
        unsafe { mark_last_call_entry(walk.scratch) };
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
        if !unsafe { record(walk.scratch, code, offset, flags) } {
            return Some(SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED);
        }
    }
    if previous == frame {
        return Some(SAMPLE_PY_WALKED | SAMPLE_PY_TRUNCATED);
    }
    walk.frame = previous;
    None
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
    // SAFETY: the caller's slot; the offset is within `words` (masked, see above).
    unsafe {
        let native = (*scratch).header.kernel_frames + (*scratch).header.user_frames;
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
    // SAFETY: the caller's slot; the index is checked (and masked by `frame_slot`).
    unsafe {
        let len = (*scratch).header.py_frames;
        if len as usize >= PY_MAX_FRAMES {
            return false;
        }
        let slot = frame_slot(scratch, len);
        (*slot).code = code;
        (*slot).offset = offset;
        (*slot).flags = flags;
        (*scratch).header.py_frames = len + 1;
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
        let len = (*scratch).header.py_frames;
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
