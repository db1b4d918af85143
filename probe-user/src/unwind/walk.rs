//! The kernel's table unwinder, step for step, in userspace: for stacks read from another
//! process's memory (`probe dump`'s blocked threads) rather than sampled. The same rules
//! give the same frames and the same reasons to stop, so a stack shown by `dump` and one
//! sampled by `record` agree, and nothing is guessed in either.

use probe_common::{
    UnwindRow, CFA_END, CFA_PLT, CFA_RBP, CFA_RSP, RBP_AT_CFA, RBP_SAME, UNWIND_MAX_FRAMES,
    UNWIND_STOP_LIMIT, UNWIND_STOP_NO_MAPPING, UNWIND_STOP_NO_RBP, UNWIND_STOP_NO_RULE,
    UNWIND_STOP_READ, UNWIND_STOP_STUCK,
};

/// The user registers a walk starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registers {
    pub pc: u64,
    pub sp: u64,
    pub bp: u64,
}

/// What applies at a PC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The row of the table that covers it.
    Row(UnwindRow),
    /// No table covers it (no mapping with one): the caller by frame pointer.
    NoTable,
    /// A table covers it but gives no row (an `UNWIND_STOP_*` reason).
    Stop(u32),
}

/// The frames of one walk, innermost first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    pub pcs: Vec<u64>,
    /// The walk reached the outermost frame.
    pub complete: bool,
    /// Why it stopped before that (`UNWIND_STOP_*`), or 0.
    pub stop: u32,
}

/// Unwinds from `regs`. `rule` gives the rule at a lookup address (the PC, or one before
/// a return address); `read` reads a word of the stack.
pub fn walk(
    regs: Registers,
    mut rule: impl FnMut(u64) -> Rule,
    mut read: impl FnMut(u64) -> Option<u64>,
) -> Walked {
    let mut walked = Walked::default();
    let (mut pc, mut sp, mut bp) = (regs.pc, regs.sp, Some(regs.bp));
    loop {
        if walked.pcs.len() >= UNWIND_MAX_FRAMES {
            walked.stop = UNWIND_STOP_LIMIT;
            return walked;
        }
        walked.pcs.push(pc);
        let lookup = if walked.pcs.len() > 1 {
            pc.wrapping_sub(1)
        } else {
            pc
        };
        let (cfa, return_address) = match rule(lookup) {
            Rule::NoTable => {
                // The kernel's frame-pointer step: only while RBP still holds a frame.
                let Some(frame) = bp.filter(|&bp| bp >= sp) else {
                    walked.stop = UNWIND_STOP_NO_MAPPING;
                    return walked;
                };
                let (Some(caller_bp), Some(return_address)) = (read(frame), read(frame + 8)) else {
                    walked.stop = UNWIND_STOP_READ;
                    return walked;
                };
                bp = Some(caller_bp);
                (frame + 16, return_address)
            }
            Rule::Stop(reason) => {
                walked.stop = reason;
                return walked;
            }
            Rule::Row(row) => {
                let offset = u64::from(row.cfa_offset);
                let cfa = match (row.cfa_rule(), bp) {
                    (CFA_RSP, _) => sp.wrapping_add(offset),
                    (CFA_RBP, None) => {
                        walked.stop = UNWIND_STOP_NO_RBP;
                        return walked;
                    }
                    (CFA_RBP, Some(bp)) => bp.wrapping_add(offset),
                    (CFA_PLT, _) => sp + 8 + if pc & 15 >= offset { 8 } else { 0 },
                    (CFA_END, _) => {
                        walked.complete = true;
                        return walked;
                    }
                    _ => {
                        walked.stop = UNWIND_STOP_NO_RULE;
                        return walked;
                    }
                };
                if cfa <= sp {
                    walked.stop = UNWIND_STOP_STUCK;
                    return walked;
                }
                let Some(return_address) = read(cfa - 8) else {
                    walked.stop = UNWIND_STOP_READ;
                    return walked;
                };
                match row.rbp_rule() {
                    RBP_SAME => {}
                    RBP_AT_CFA => {
                        let at = cfa.wrapping_add((i64::from(row.rbp_offset) * 8) as u64);
                        match read(at) {
                            Some(saved) => bp = Some(saved),
                            None => {
                                walked.stop = UNWIND_STOP_READ;
                                return walked;
                            }
                        }
                    }
                    _ => bp = None,
                }
                (cfa, return_address)
            }
        };
        if cfa <= sp {
            walked.stop = UNWIND_STOP_STUCK;
            return walked;
        }
        if return_address == 0 {
            // The ABI's end of the frame chain.
            walked.complete = true;
            return walked;
        }
        pc = return_address;
        sp = cfa;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn row(cfa_rule: u8, cfa_offset: u16, rbp_rule: u8, rbp_offset: i8) -> UnwindRow {
        UnwindRow {
            pc: 0,
            cfa_offset,
            rbp_offset,
            rules: cfa_rule | rbp_rule << 4,
        }
    }

    #[test]
    fn rsp_rows_then_frame_pointers_then_the_end() {
        // leaf at 0x1000 (CFA = RSP+16), its caller at 0x2000 has no table and a frame
        // pointer; the outermost frame's saved return address is 0.
        let stack: HashMap<u64, u64> = HashMap::from([
            (0x7f08, 0x2005), // leaf's return address at CFA - 8 (CFA = 0x7f10)
            (0x7f20, 0),      // caller's frame: saved RBP ...
            (0x7f28, 0x3005), // ... and return address
            (0x7f38, 0),      // 0x3000's frame (CFA = 0x7f40): return address 0
        ]);
        let rules = |pc: u64| match pc {
            0x1000 => Rule::Row(row(CFA_RSP, 16, RBP_SAME, 0)),
            0x2004 => Rule::NoTable,
            0x3004 => Rule::Row(row(CFA_RSP, 0x10, RBP_SAME, 0)),
            _ => Rule::Stop(UNWIND_STOP_NO_RULE),
        };
        let regs = Registers {
            pc: 0x1000,
            sp: 0x7f00,
            bp: 0x7f20,
        };
        let walked = walk(regs, rules, |at| stack.get(&at).copied());
        assert_eq!(walked.pcs, vec![0x1000, 0x2005, 0x3005]);
        assert!(walked.complete, "{walked:?}");
    }

    #[test]
    fn unknown_rbp_stops_an_rbp_frame_without_inventing_it() {
        let stack = HashMap::from([(0x7f08u64, 0x2005u64)]);
        let rules = |pc: u64| match pc {
            0x1000 => Rule::Row(row(CFA_RSP, 16, probe_common::RBP_UNKNOWN, 0)),
            _ => Rule::Row(row(CFA_RBP, 16, RBP_AT_CFA, -2)),
        };
        let regs = Registers {
            pc: 0x1000,
            sp: 0x7f00,
            bp: 0,
        };
        let walked = walk(regs, rules, |at| stack.get(&at).copied());
        assert_eq!(walked.pcs, vec![0x1000, 0x2005]);
        assert_eq!(walked.stop, UNWIND_STOP_NO_RBP);
    }

    #[test]
    fn a_stack_that_does_not_advance_or_cannot_be_read_stops() {
        let regs = Registers {
            pc: 0x1000,
            sp: 0x7f00,
            bp: 0x7000,
        };
        // Frame pointer below the stack pointer: not a frame.
        let walked = walk(regs, |_| Rule::NoTable, |_| Some(1));
        assert_eq!((walked.pcs.len(), walked.stop), (1, UNWIND_STOP_NO_MAPPING));
        let walked = walk(regs, |_| Rule::Row(row(CFA_RSP, 8, RBP_SAME, 0)), |_| None);
        assert_eq!(walked.stop, UNWIND_STOP_READ);
        // A loop of frames ends at the frame limit at worst, never runs forever.
        let walked = walk(
            regs,
            |_| Rule::Row(row(CFA_RSP, 8, RBP_SAME, 0)),
            |_| Some(0x1000),
        );
        assert_eq!(walked.pcs.len(), UNWIND_MAX_FRAMES);
        assert_eq!(walked.stop, UNWIND_STOP_LIMIT);
    }
}
