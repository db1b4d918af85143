//! User stacks unwound with the `.eh_frame` tables userspace compiled (the format is in
//! probe-common, "Native unwinding with `.eh_frame` tables"): one frame per `bpf_loop`
//! iteration, from the registers the thread had in user mode. Each frame: the mapping that
//! holds the PC (binary search), the file's page, the row (binary search within the page),
//! its rule. A PC without a rule, a failed read or a stack that does not advance ends the
//! walk with the reason in the record's flags; nothing is guessed.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    helpers::{bpf_probe_read_user, generated::bpf_loop},
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use probe_common::{
    SampleScratch, UnwindFile, UnwindMapping, UnwindProcess, UnwindRow, CFA_END, CFA_PLT, CFA_RBP,
    CFA_RSP, RBP_AT_CFA, RBP_SAME, SAMPLE_USER_COMPLETE, SAMPLE_USER_STOP_SHIFT,
    SAMPLE_USER_TABLES, UNWIND_MAPPINGS_DEFAULT, UNWIND_MAPPING_SEARCH_STEPS, UNWIND_MAX_FILES,
    UNWIND_MAX_FRAMES, UNWIND_MAX_PROCS, UNWIND_NO_FILE, UNWIND_PAGES_DEFAULT,
    UNWIND_PAGE_SEARCH_STEPS, UNWIND_PAGE_SHIFT, UNWIND_ROWS_DEFAULT, UNWIND_STOP_LIMIT,
    UNWIND_STOP_NO_MAPPING, UNWIND_STOP_NO_RBP, UNWIND_STOP_NO_RULE, UNWIND_STOP_READ,
    UNWIND_STOP_SEARCH, UNWIND_STOP_STUCK,
};

/// Every file's rows, in one array that userspace writes through a memory mapping.
#[map]
static UNWIND_ROWS: Array<UnwindRow> = Array::with_max_entries(UNWIND_ROWS_DEFAULT, BPF_F_MMAPABLE);

/// Every file's page index (see `UnwindFile`).
#[map]
static UNWIND_PAGES: Array<u64> = Array::with_max_entries(UNWIND_PAGES_DEFAULT, BPF_F_MMAPABLE);

/// Every process's executable mappings (see `UnwindProcess`).
#[map]
static UNWIND_MAPPINGS: Array<UnwindMapping> =
    Array::with_max_entries(UNWIND_MAPPINGS_DEFAULT, BPF_F_MMAPABLE);

#[map]
static UNWIND_FILES: Array<UnwindFile> = Array::with_max_entries(UNWIND_MAX_FILES, 0);

/// Processes with tables: tgid -> its mappings.
#[map]
pub static UNWIND_PROCS: HashMap<u32, UnwindProcess> =
    HashMap::with_max_entries(UNWIND_MAX_PROCS, 0);

/// The user registers a walk starts from.
pub struct UserRegisters {
    pub pc: u64,
    pub sp: u64,
    pub bp: u64,
}

/// The walk's state between iterations. It lives in a map value, not on the program's
/// stack: the verifier tracks what a program keeps on its stack (a frame count of 0, then
/// 1, then 2, ...), so every iteration of the loop would start from a new state and it would
/// check the step 129 times (~0.2 s of load time here). What it reads back from a map is an
/// unknown value each time, so after a second pass the state an iteration starts from
/// matches one already checked. The step bounds every index it uses by itself, for the
/// same reason.
#[repr(C)]
pub struct WalkState {
    pc: u64,
    sp: u64,
    bp: u64,
    /// Where the record's user frames start (after its kernel frames).
    first: u32,
    frames: u32,
    mappings_start: u32,
    mappings_len: u32,
    /// `SAMPLE_USER_COMPLETE` and the stop reason, once known.
    flags: u32,
    /// Zero once a frame could not recover the caller's RBP.
    bp_known: u32,
}

/// Which slot of [`UNWIND_WALKS`] a walk uses: the sampler's and `sched_switch`'s walks
/// have one each, so neither can overwrite the other's.
#[derive(Clone, Copy)]
pub enum WalkSlot {
    Sample = 0,
    Switch = 1,
}

/// Each CPU's walk states, one per [`WalkSlot`].
#[map]
static UNWIND_WALKS: PerCpuArray<WalkState> = PerCpuArray::with_max_entries(2, 0);

/// What `bpf_loop` passes to every iteration, on the caller's stack: pointers only, which
/// stay the same from one iteration to the next.
#[repr(C)]
struct Walk {
    state: *mut WalkState,
    /// The record's words; user frames go from `state.first` on.
    words: *mut u64,
}

/// Unwinds the user stack of process `tgid` from `regs` into the record in `scratch`
/// (after its kernel frames) and sets its user frame count and flags. Returns false, with
/// the record untouched, when the process has no tables.
///
/// # Safety
/// `scratch` must be this CPU's slot of a scratch map, used by nothing else meanwhile.
#[inline(always)]
pub unsafe fn unwind_user(
    scratch: *mut SampleScratch,
    tgid: u32,
    regs: &UserRegisters,
    slot: WalkSlot,
) -> bool {
    let Some(process) = (unsafe { UNWIND_PROCS.get(tgid) }) else {
        return false;
    };
    let Some(state) = UNWIND_WALKS.get_ptr_mut(slot as u32) else {
        return false;
    };
    // SAFETY: the caller's slot (see above); `state` is this CPU's walk slot for this
    // kind of walk, which nothing else uses meanwhile.
    unsafe {
        let header = core::ptr::addr_of_mut!((*scratch).header);
        state.write(WalkState {
            pc: regs.pc,
            sp: regs.sp,
            bp: regs.bp,
            first: (*header).kernel_frames,
            frames: 0,
            mappings_start: process.start,
            mappings_len: process.len,
            flags: 0,
            bp_known: 1,
        });
        let mut walk = Walk {
            state,
            words: core::ptr::addr_of_mut!((*scratch).words).cast::<u64>(),
        };
        bpf_loop(
            UNWIND_MAX_FRAMES as u32 + 1,
            unwind_frame as *mut c_void,
            core::ptr::addr_of_mut!(walk).cast::<c_void>(),
            0,
        );
        (*header).user_frames = (*state).frames;
        (*header).flags |= SAMPLE_USER_TABLES | (*state).flags;
    }
    true
}

/// One iteration of the walk: records the frame at `pc` and steps to its caller. Returns 1
/// to stop.
///
/// # Safety
/// `ctx` is the `Walk` that `unwind_user` passed to `bpf_loop`.
#[inline(never)]
unsafe extern "C" fn unwind_frame(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: see above; bpf_loop runs the iterations one after another, and `state` is
    // this CPU's walk slot, which `unwind_user` gave for this walk.
    let (walk, words) = unsafe {
        let walk = &*ctx.cast::<Walk>();
        (&mut *walk.state, walk.words)
    };
    if walk.frames >= UNWIND_MAX_FRAMES as u32 {
        return stop(walk, UNWIND_STOP_LIMIT);
    }
    let at = ((walk.first + walk.frames) & 0xff) as usize;
    // SAFETY: `words` is the record's array of SAMPLE_SCRATCH_WORDS (512) words; the index
    // is masked below 256.
    unsafe { *words.add(at) = walk.pc };
    walk.frames += 1;
    // A caller's PC is a return address, just past its call: look up the call itself
    // (a call can be a function's last instruction).
    let pc = if walk.frames > 1 {
        walk.pc.wrapping_sub(1)
    } else {
        walk.pc
    };
    let Some(mapping) = find_mapping(walk.mappings_start, walk.mappings_len, pc) else {
        return frame_pointer_step(walk);
    };
    if mapping.file == UNWIND_NO_FILE {
        return frame_pointer_step(walk);
    }
    let row = match find_row(mapping.file, pc.wrapping_sub(mapping.bias)) {
        Ok(row) => row,
        Err(reason) => return stop(walk, reason),
    };
    let offset = u64::from(row.cfa_offset);
    let cfa = match row.cfa_rule() {
        CFA_RSP => walk.sp.wrapping_add(offset),
        CFA_RBP if walk.bp_known == 0 => return stop(walk, UNWIND_STOP_NO_RBP),
        CFA_RBP => walk.bp.wrapping_add(offset),
        CFA_PLT => walk.sp + 8 + if walk.pc & 15 >= offset { 8 } else { 0 },
        CFA_END => {
            walk.flags |= SAMPLE_USER_COMPLETE;
            return 1;
        }
        _ => return stop(walk, UNWIND_STOP_NO_RULE),
    };
    if cfa <= walk.sp {
        return stop(walk, UNWIND_STOP_STUCK);
    }
    let Some(return_address) = read_user(cfa - 8) else {
        return stop(walk, UNWIND_STOP_READ);
    };
    match row.rbp_rule() {
        RBP_SAME => {}
        RBP_AT_CFA => {
            let at = cfa.wrapping_add((i64::from(row.rbp_offset) * 8) as u64);
            match read_user(at) {
                Some(bp) => walk.bp = bp,
                None => return stop(walk, UNWIND_STOP_READ),
            }
        }
        _ => walk.bp_known = 0,
    }
    step_to(walk, return_address, cfa)
}

/// Where no table covers the PC (code of a file without CFI, JIT code): the caller by frame
/// pointer, if RBP still holds one.
#[inline(always)]
fn frame_pointer_step(walk: &mut WalkState) -> i64 {
    if walk.bp_known == 0 || walk.bp < walk.sp {
        return stop(walk, UNWIND_STOP_NO_MAPPING);
    }
    let (Some(caller_bp), Some(return_address)) = (read_user(walk.bp), read_user(walk.bp + 8))
    else {
        return stop(walk, UNWIND_STOP_READ);
    };
    let cfa = walk.bp + 16;
    walk.bp = caller_bp;
    step_to(walk, return_address, cfa)
}

#[inline(always)]
fn step_to(walk: &mut WalkState, return_address: u64, cfa: u64) -> i64 {
    if cfa <= walk.sp {
        return stop(walk, UNWIND_STOP_STUCK);
    }
    if return_address == 0 {
        // The ABI's end of the frame chain.
        walk.flags |= SAMPLE_USER_COMPLETE;
        return 1;
    }
    walk.pc = return_address;
    walk.sp = cfa;
    0
}

#[inline(always)]
fn stop(walk: &mut WalkState, reason: u32) -> i64 {
    walk.flags |= reason << SAMPLE_USER_STOP_SHIFT;
    1
}

#[inline(always)]
fn read_user(address: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_user checks the address; a fault is an error, not a crash.
    unsafe { bpf_probe_read_user(address as *const u64) }.ok()
}

/// The mapping of `start..start + len` in `UNWIND_MAPPINGS` that holds `pc`.
#[inline(always)]
fn find_mapping(start: u32, len: u32, pc: u64) -> Option<UnwindMapping> {
    // The last mapping starting at or below `pc` is in lo..hi.
    let (mut lo, mut hi) = (0u32, len);
    for _ in 0..UNWIND_MAPPING_SEARCH_STEPS {
        if lo + 1 >= hi {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        if UNWIND_MAPPINGS.get(start + mid)?.start <= pc {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if lo + 1 < hi {
        return None;
    }
    let mapping = *UNWIND_MAPPINGS.get(start + lo)?;
    (mapping.start <= pc && pc < mapping.end).then_some(mapping)
}

/// The row of file `slot` covering the file address `pc`.
#[inline(always)]
fn find_row(slot: u32, pc: u64) -> Result<UnwindRow, u32> {
    let file = UNWIND_FILES.get(slot).ok_or(UNWIND_STOP_NO_RULE)?;
    let base = u64::from(file.base_pc);
    if pc < base {
        return Err(UNWIND_STOP_NO_RULE);
    }
    let page = (pc - base) >> UNWIND_PAGE_SHIFT;
    if page + 1 >= u64::from(file.pages_len) {
        return Err(UNWIND_STOP_NO_RULE);
    }
    let page = file.pages_start + page as u32;
    let first = *UNWIND_PAGES.get(page).ok_or(UNWIND_STOP_NO_RULE)? as u32;
    let last = *UNWIND_PAGES.get(page + 1).ok_or(UNWIND_STOP_NO_RULE)? as u32;
    // The last row at or below `pc` is in lo..hi.
    let (mut lo, mut hi) = (first, last.wrapping_add(1));
    for _ in 0..UNWIND_PAGE_SEARCH_STEPS {
        if lo + 1 >= hi {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        let row = UNWIND_ROWS
            .get(file.rows_start + mid)
            .ok_or(UNWIND_STOP_NO_RULE)?;
        if u64::from(row.pc) <= pc {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if lo + 1 < hi {
        return Err(UNWIND_STOP_SEARCH);
    }
    let row = *UNWIND_ROWS
        .get(file.rows_start + lo)
        .ok_or(UNWIND_STOP_NO_RULE)?;
    if u64::from(row.pc) > pc || lo >= file.rows_len {
        return Err(UNWIND_STOP_NO_RULE);
    }
    Ok(row)
}
