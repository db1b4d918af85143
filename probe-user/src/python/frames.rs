//! The userspace Python frame walker: the reference the kernel walker must match.
//!
//! Per frame it yields exactly what the kernel will record, a [`RawFrame`]
//! `(code object address, bytecode byte offset)`; names and lines are resolved later from
//! the code address ([`super::code`]).
//!
//! The walk reads a running thread without stopping it, so it must survive torn or garbage
//! data: it is bounded ([`MAX_FRAMES`] frames, [`MAX_STEPS`] links including skipped shim
//! frames), stops at a frame it has seen before, and reports truncation instead of failing.

use std::collections::HashSet;

use super::memory::{MemoryError, ProcessMemory, ReadExt};
use super::offsets::{InstrKind, PyLayout};

/// Most frames returned per walk (innermost first).
pub const MAX_FRAMES: usize = 256;
/// Most links followed per walk, counting skipped shim frames.
pub const MAX_STEPS: usize = 2 * MAX_FRAMES;

/// One Python frame as the kernel walker records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawFrame {
    /// Address of the `PyCodeObject`.
    pub code: u64,
    /// Byte offset of the current instruction in the code's bytecode (0 if not started).
    pub offset: u32,
    /// The outermost frame of its eval-loop call, as the kernel walker marks it (see
    /// `model::PyRawFrame::call_entry`): every frame up to 3.10, the `is_entry` ones in
    /// 3.11, the frame before each C-stack shim from 3.12.
    pub call_entry: bool,
}

/// Why a walk stopped early (the frames before it are still returned).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Truncation {
    /// [`MAX_FRAMES`] or [`MAX_STEPS`] reached.
    TooDeep,
    /// A frame links back to one already visited.
    Cycle,
    /// A frame could not be read (torn pointer, freed frame, garbage).
    Unreadable,
}

/// The frames of one thread, innermost first.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// The frames read.
    pub frames: Vec<RawFrame>,
    /// Set when the walk did not reach the outermost frame.
    pub truncated: Option<Truncation>,
    /// Shim (C-stack-owned) frames passed over, not in [`Walk::frames`].
    pub shims_skipped: usize,
    /// Address of the innermost frame recorded (0: none): where its locals are.
    pub innermost: u64,
}

/// Walks the Python frames of the thread whose `PyThreadState` is at `tstate`. Fails only
/// if the thread state itself cannot be read; later problems truncate the walk.
pub fn walk(layout: &PyLayout, mem: &dyn ProcessMemory, tstate: u64) -> Result<Walk, MemoryError> {
    let mut frame = mem.read_u64(tstate.wrapping_add(layout.tstate_frame))?;
    if let Some(current) = layout.cframe_current_frame {
        // 3.11–3.12: tstate->cframe->current_frame.
        frame = match frame {
            0 => 0,
            cframe => mem.read_u64(cframe.wrapping_add(current))?,
        };
    }
    Ok(walk_from(layout, mem, frame))
}

/// Walks from the frame at `frame` (0: no frame) outwards.
pub fn walk_from(layout: &PyLayout, mem: &dyn ProcessMemory, mut frame: u64) -> Walk {
    let mut walk = Walk::default();
    let mut seen = HashSet::new();
    for _ in 0..MAX_STEPS {
        if frame == 0 {
            return walk;
        }
        if !seen.insert(frame) {
            walk.truncated = Some(Truncation::Cycle);
            return walk;
        }
        let Ok(step) = read_frame(layout, mem, frame) else {
            walk.truncated = Some(Truncation::Unreadable);
            return walk;
        };
        match step.frame {
            Some(_) if walk.frames.len() == MAX_FRAMES => break,
            Some(raw) => {
                if walk.frames.is_empty() {
                    walk.innermost = frame;
                }
                walk.frames.push(raw);
            }
            None => {
                if step.shim {
                    // The frames since the previous shim ran in the call this shim entered.
                    if let Some(last) = walk.frames.last_mut() {
                        last.call_entry = true;
                    }
                }
                walk.shims_skipped += 1;
            }
        }
        frame = step.previous;
    }
    if frame != 0 {
        walk.truncated = Some(Truncation::TooDeep);
    }
    walk
}

/// One frame read: what to record (nothing for shims) and where to go next.
struct Step {
    frame: Option<RawFrame>,
    previous: u64,
    /// The frame is a C-stack shim (3.12+).
    shim: bool,
}

/// Reads the frame struct at `addr` in one read.
fn read_frame(layout: &PyLayout, mem: &dyn ProcessMemory, addr: u64) -> Result<Step, MemoryError> {
    let raw = mem.read_vec(addr, layout.frame_size as usize)?;
    let field = |off: u64| -> u64 {
        let off = off as usize;
        raw.get(off..off + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes)
            .unwrap_or(0)
    };
    let previous = field(layout.frame_previous);
    if is_shim(layout, &raw) {
        return Ok(Step {
            frame: None,
            previous,
            shim: true,
        });
    }
    let code = field(layout.frame_code);
    if code == 0 {
        return Ok(Step {
            frame: None,
            previous,
            shim: false,
        });
    }
    let offset = instruction_offset(layout, code, field(layout.frame_instr));
    let call_entry = match layout.frame_is_entry {
        Some(at) => raw.get(at as usize).is_some_and(|&b| b != 0),
        // 3.8–3.10 run every frame in its own eval-loop call; 3.12+ mark calls at shims.
        None => matches!(
            layout.instr,
            InstrKind::LastiBytes | InstrKind::LastiCodeUnits
        ),
    };
    Ok(Step {
        frame: Some(RawFrame {
            code,
            offset,
            call_entry,
        }),
        previous,
        shim: false,
    })
}

/// Whether the frame is owned by the C stack (the 3.12+ entry shim, no Python code).
fn is_shim(layout: &PyLayout, raw: &[u8]) -> bool {
    match (layout.frame_owner, layout.frame_owned_by_cstack) {
        (Some(owner), Some(cstack)) => {
            raw.get(owner as usize).map(|&b| u64::from(b)) == Some(cstack)
        }
        _ => false,
    }
}

/// Turns the frame's instruction field (`instr`, the raw 8 bytes at `frame_instr`) into a
/// bytecode byte offset, clamping "not started yet" (negative) to 0.
fn instruction_offset(layout: &PyLayout, code: u64, instr: u64) -> u32 {
    let clamp = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    match layout.instr {
        // `int f_lasti`: the low 4 bytes (little endian).
        InstrKind::LastiBytes => clamp(i64::from(instr as u32 as i32)),
        InstrKind::LastiCodeUnits => clamp(i64::from(instr as u32 as i32) * 2),
        InstrKind::PrevInstrPtr | InstrKind::InstrPtr => {
            let base = code.wrapping_add(layout.code_code_adaptive.unwrap_or(0));
            clamp(instr.wrapping_sub(base) as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::memory::FakeMemory;
    use crate::python::testutil::{noise, put_u64};

    const TSTATE: u64 = 0x1_0000;
    const CFRAME: u64 = 0x2_0000;

    /// A 3.12 frame at `addr` running `code` at byte `offset`, linked to `previous`.
    fn frame(l: &PyLayout, code: u64, offset: u64, previous: u64, owner: u8) -> Vec<u8> {
        let mut f = vec![0u8; l.frame_size as usize];
        put_u64(&mut f, l.frame_code, code);
        put_u64(&mut f, l.frame_previous, previous);
        put_u64(
            &mut f,
            l.frame_instr,
            code + l.code_code_adaptive.unwrap() + offset,
        );
        f[l.frame_owner.unwrap() as usize] = owner;
        f
    }

    /// tstate → cframe → frames at 0x30000 + 0x1000·i, chained by `links`.
    fn memory(l: &PyLayout, frames: &[(u64, u64, u64, u8)]) -> FakeMemory {
        let mut tstate = Vec::new();
        put_u64(&mut tstate, l.tstate_frame, CFRAME);
        let mut cframe = Vec::new();
        put_u64(&mut cframe, l.cframe_current_frame.unwrap(), 0x3_0000);
        let mut mem = FakeMemory::new().with(TSTATE, tstate).with(CFRAME, cframe);
        for (i, &(code, offset, previous, owner)) in frames.iter().enumerate() {
            mem.insert(
                0x3_0000 + 0x1000 * i as u64,
                frame(l, code, offset, previous, owner),
            );
        }
        mem
    }

    #[test]
    fn shim_frames_are_skipped_and_offsets_computed() {
        let l = PyLayout::table_row(3, 12).unwrap();
        let cstack = l.frame_owned_by_cstack.unwrap() as u8;
        let mem = memory(
            &l,
            &[
                (0xa000, 10, 0x3_1000, 0),
                (0xb000, 0, 0x3_2000, cstack),
                (0xc000, 4, 0, 1),
            ],
        );
        let got = walk(&l, &mem, TSTATE).unwrap();
        let want = [
            RawFrame {
                code: 0xa000,
                offset: 10,
                call_entry: true,
            },
            RawFrame {
                code: 0xc000,
                offset: 4,
                call_entry: false,
            },
        ];
        assert_eq!((got.frames.as_slice(), got.truncated), (&want[..], None));
    }

    #[test]
    fn cycles_and_unreadable_links_truncate() {
        let l = PyLayout::table_row(3, 12).unwrap();
        let mem = memory(&l, &[(0xa000, 0, 0x3_1000, 0), (0xb000, 0, 0x3_0000, 0)]);
        let got = walk(&l, &mem, TSTATE).unwrap();
        assert_eq!(
            (got.frames.len(), got.truncated),
            (2, Some(Truncation::Cycle))
        );
        let mem = memory(&l, &[(0xa000, 0, 0xdead_0000, 0)]);
        let got = walk(&l, &mem, TSTATE).unwrap();
        assert_eq!(
            (got.frames.len(), got.truncated),
            (1, Some(Truncation::Unreadable))
        );
        assert!(walk(&l, &FakeMemory::new(), TSTATE).is_err());
    }

    #[test]
    fn deep_stacks_are_bounded() {
        let l = PyLayout::table_row(3, 12).unwrap();
        let chain: Vec<_> = (0..1000u64)
            .map(|i| (0xa000, 0, 0x3_0000 + 0x1000 * (i + 1), 0))
            .collect();
        let got = walk(&l, &memory(&l, &chain), TSTATE).unwrap();
        assert_eq!(
            (got.frames.len(), got.truncated),
            (MAX_FRAMES, Some(Truncation::TooDeep))
        );
    }

    #[test]
    fn garbage_memory_never_panics() {
        for minor in 8..=13 {
            let l = PyLayout::table_row(3, minor).unwrap();
            for seed in 0..50 {
                // A page of noise whose "pointers" mostly point back into itself.
                let mut page = noise(seed, 0x4000);
                for chunk in page.chunks_exact_mut(8).step_by(3) {
                    let v = u64::from_ne_bytes(chunk.try_into().unwrap()) % 0x4000 + 0x1_0000;
                    chunk.copy_from_slice(&v.to_ne_bytes());
                }
                let mem = FakeMemory::new().with(0x1_0000, page);
                let got = walk(&l, &mem, 0x1_0000 + seed * 8);
                assert!(got.map_or(true, |w| w.frames.len() <= MAX_FRAMES));
            }
        }
    }
}
