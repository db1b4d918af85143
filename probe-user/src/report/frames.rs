//! Where a thread spends its samples: the hottest stacks and the frame the loop is in.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use super::classify::fraction;
use super::merge::StackCount;
use super::schema::{LoopIn, StackFrame, StackReport};
use super::spin::round_to;
use crate::model::{Frame, FrameKind};

/// Share of a thread's samples a function must appear in to be "where the loop is". Half
/// is the least that still makes it the place most samples pass through.
pub const LOOP_IN_MIN_SHARE: f64 = 0.5;

/// Decimals kept for shares (fractions): 0.01 percentage point.
const SHARE_DECIMALS: i32 = 4;

/// The thread's stacks, hottest first; ties in a fixed order so output is reproducible.
pub(super) fn hottest_first(stacks: &[StackCount]) -> Vec<&StackCount> {
    let mut sorted: Vec<&StackCount> = stacks.iter().collect();
    sorted.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| compare_frames(a, b)));
    sorted
}

fn compare_frames(a: &StackCount, b: &StackCount) -> Ordering {
    a.frames
        .iter()
        .map(frame_key)
        .cmp(b.frames.iter().map(frame_key))
}

fn frame_key(frame: &Frame) -> (bool, Option<&str>, &str, u64) {
    let kernel = frame.kind == FrameKind::Kernel;
    let function = frame.function.as_deref();
    (kernel, function, &frame.module, frame.module_offset)
}

/// The `top` hottest stacks with their share of `samples`.
pub(super) fn top_stacks(sorted: &[&StackCount], samples: u64, top: usize) -> Vec<StackReport> {
    sorted
        .iter()
        .take(top)
        .map(|stack| StackReport {
            share: round_to(fraction(stack.count, samples), SHARE_DECIMALS),
            count: stack.count,
            truncated: stack.truncated,
            frames: stack.frames.iter().map(StackFrame::from).collect(),
        })
        .collect()
}

/// The innermost Python function common to at least [`LOOP_IN_MIN_SHARE`] of the samples;
/// else the innermost native user one; else the innermost kernel one (a thread stuck in a
/// syscall). For a Python thread the interpreter's own functions say little about where
/// the loop is: its Python code does, unless most samples are in native code that
/// Python called (`native_share`, see [`in_native_called_from_python`]) and the innermost
/// common native function is outside the `interpreter`'s modules: then the loop is that
/// function, called from the innermost common Python one.
pub(super) fn loop_in(
    sorted: &[&StackCount],
    samples: u64,
    native_share: f64,
    interpreter: &HashSet<&str>,
) -> Option<LoopIn> {
    let python = innermost_common(sorted, FrameKind::Python, samples);
    if native_share >= LOOP_IN_MIN_SHARE {
        let native = innermost_common(sorted, FrameKind::User, samples)
            .filter(|native| !interpreter.contains(native.frame.module.as_str()));
        if let Some(mut native) = native {
            native.called_from = python.map(|python| python.frame);
            return Some(native);
        }
    }
    python
        .or_else(|| innermost_common(sorted, FrameKind::User, samples))
        .or_else(|| innermost_common(sorted, FrameKind::Kernel, samples))
}

/// The interpreter's modules in a stack (innermost frame first) with Python frames: those
/// of the native frames that call into each run of Python frames (the eval loop's callers:
/// the `python3` binary or libpython); in a stack cut short before any, those of the
/// native frames the innermost Python frames called (the interpreter's call machinery).
pub(super) fn interpreter_modules(frames: &[Frame]) -> HashSet<&str> {
    let user_side: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.kind != FrameKind::Kernel)
        .collect();
    let callers: HashSet<&str> = user_side
        .windows(2)
        .filter(|pair| pair[0].kind == FrameKind::Python && pair[1].kind == FrameKind::User)
        .map(|pair| pair[1].module.as_str())
        .collect();
    if !callers.is_empty() {
        return callers;
    }
    let first_python = user_side.iter().position(|f| f.kind == FrameKind::Python);
    match first_python.and_then(|at| at.checked_sub(1)) {
        Some(callee) => HashSet::from([user_side[callee].module.as_str()]),
        None => HashSet::new(),
    }
}

/// Whether a stack (innermost frame first) of a Python thread was in native code called
/// from Python: on the CPU in user mode (a syscall storm's time is the kernel's, whoever
/// makes the calls), in a native frame below a Python frame, outside the
/// [`interpreter_modules`]. libz under `zlib.compress`, libffi and the C it calls under
/// ctypes are native; the interpreter's own helpers (`PyNumber_Add`) are Python code.
pub(super) fn in_native_called_from_python(frames: &[Frame]) -> bool {
    let Some(leaf) = frames.first() else {
        return false;
    };
    if leaf.kind != FrameKind::User || !frames.iter().any(|f| f.kind == FrameKind::Python) {
        return false;
    }
    !interpreter_modules(frames).contains(leaf.module.as_str())
}

/// A function as "the same place" across samples: by name and module, so that different
/// lines of one function count together; unnamed code by its exact module offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FunctionId<'a> {
    function: Option<&'a str>,
    module: &'a str,
    offset: Option<u64>,
}

impl<'a> FunctionId<'a> {
    fn of(frame: &'a Frame) -> Self {
        let function = frame.function.as_deref();
        Self {
            function,
            module: &frame.module,
            offset: function.is_none().then_some(frame.module_offset),
        }
    }
}

/// How many samples contain a function, and the frame that stands for it: the one from
/// the hottest stack, so the reported line is the hottest line.
struct Tally<'a> {
    samples: u64,
    frame: &'a Frame,
    first_seen: usize,
}

fn innermost_common(sorted: &[&StackCount], kind: FrameKind, samples: u64) -> Option<LoopIn> {
    if samples == 0 {
        return None;
    }
    let tallies = tally(sorted, kind);
    let common: HashSet<FunctionId<'_>> = tallies
        .iter()
        .filter(|(_, t)| fraction(t.samples, samples) >= LOOP_IN_MIN_SHARE)
        .map(|(id, _)| *id)
        .collect();
    let covered = covered_by_inner(sorted, kind, &common);
    let (_, best) = tallies
        .iter()
        .filter(|(id, _)| common.contains(*id))
        .map(|(id, t)| (covered.get(id).copied().unwrap_or(0), t))
        .min_by(|(inside_a, a), (inside_b, b)| {
            inside_a
                .cmp(inside_b)
                .then_with(|| b.samples.cmp(&a.samples))
                .then_with(|| a.first_seen.cmp(&b.first_seen))
        })?;
    Some(loop_in_from(best.frame, fraction(best.samples, samples)))
}

/// Samples per function of `kind`; a function recursing within one stack counts once.
fn tally<'a>(sorted: &[&'a StackCount], kind: FrameKind) -> HashMap<FunctionId<'a>, Tally<'a>> {
    let mut tallies: HashMap<FunctionId<'a>, Tally<'a>> = HashMap::new();
    for stack in sorted {
        let mut seen = HashSet::new();
        for frame in stack.frames.iter().filter(|f| f.kind == kind) {
            let id = FunctionId::of(frame);
            if !seen.insert(id) {
                continue;
            }
            let first_seen = tallies.len();
            tallies
                .entry(id)
                .or_insert(Tally {
                    samples: 0,
                    frame,
                    first_seen,
                })
                .samples += stack.count;
        }
    }
    tallies
}

/// For each common function, the samples in which another common function sits inside it
/// (closer to the leaf). The innermost common function is the one with none; this holds
/// for truncated stacks too, whose outer ends differ, because it only compares positions
/// within a stack.
fn covered_by_inner<'a>(
    sorted: &[&'a StackCount],
    kind: FrameKind,
    common: &HashSet<FunctionId<'a>>,
) -> HashMap<FunctionId<'a>, u64> {
    let mut covered = HashMap::new();
    for stack in sorted {
        let mut ids = stack
            .frames
            .iter()
            .filter(|f| f.kind == kind)
            .map(FunctionId::of)
            .filter(|id| common.contains(id));
        let Some(innermost) = ids.next() else {
            continue;
        };
        let mut seen = HashSet::from([innermost]);
        for id in ids {
            if seen.insert(id) {
                *covered.entry(id).or_insert(0) += stack.count;
            }
        }
    }
    covered
}

fn loop_in_from(frame: &Frame, share: f64) -> LoopIn {
    LoopIn {
        frame: frame.into(),
        share: round_to(share, SHARE_DECIMALS),
        called_from: None,
    }
}
