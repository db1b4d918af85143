//! The spin report's view of a thread's stacks: merged by function, so that samples at
//! different instructions (and lines) of one loop body count as one stack. The profile
//! keeps every address apart; this merging is the spin report's choice, not the profile's.

use std::collections::HashMap;

use crate::model::{Frame, FrameKind, Profile, SampleKind, StackId, ThreadProfile};

/// A merged stack: the frames of its hottest member stack, and the total count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackCount {
    pub frames: Vec<Frame>,
    /// The unwinder stopped before the thread's entry point.
    pub truncated: bool,
    pub count: u64,
}

/// What makes two frames the same for merging: the function, or for unnamed frames the
/// exact offset.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FrameKey<'a> {
    kind: FrameKind,
    module: &'a str,
    function: Option<&'a str>,
    unnamed_offset: u64,
}

impl<'a> FrameKey<'a> {
    fn of(frame: &'a Frame) -> Self {
        let function = frame.function.as_deref();
        FrameKey {
            kind: frame.kind,
            module: &frame.module,
            function,
            unnamed_offset: if function.is_some() {
                0
            } else {
                frame.module_offset
            },
        }
    }
}

/// The thread's on-CPU stacks merged by function, hottest first. Each merged stack shows
/// the frames (and so the lines) of its hottest member.
pub fn merged_stacks(profile: &Profile, thread: &ThreadProfile) -> Vec<StackCount> {
    // The profile lists a thread's samples hottest first (ties by stack id), so the first
    // member of each group is its hottest, and the result does not depend on hash order.
    let on_cpu = thread
        .samples
        .iter()
        .filter(|s| s.kind == SampleKind::OnCpu);
    let mut index: HashMap<(bool, Vec<FrameKey<'_>>), usize> = HashMap::new();
    let mut merged: Vec<(StackId, StackCount)> = Vec::new();
    for samples in on_cpu {
        let truncated = profile.stack_truncated(samples.stack);
        let key = (
            truncated,
            profile
                .stack_frames(samples.stack)
                .map(FrameKey::of)
                .collect(),
        );
        match index.get(&key) {
            Some(&i) => merged[i].1.count += samples.count,
            None => {
                index.insert(key, merged.len());
                let frames = profile.stack_frames(samples.stack);
                let stack = StackCount {
                    frames: frames.cloned().collect(),
                    truncated,
                    count: samples.count,
                };
                merged.push((samples.stack, stack));
            }
        }
    }
    merged.sort_by_key(|(id, stack)| (std::cmp::Reverse(stack.count), *id));
    merged.into_iter().map(|(_, stack)| stack).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Interner, StackSamples};

    fn frame(function: Option<&str>, offset: u64, line: u32) -> Frame {
        Frame {
            kind: FrameKind::User,
            function: function.map(str::to_owned),
            module: "lib.so".to_owned(),
            module_offset: offset,
            file: None,
            line: Some(line),
            address: offset,
            inlined: false,
        }
    }

    /// A profile of one thread whose samples have these (leaf frame, count).
    fn profile(leaves: &[(Frame, u64)]) -> Profile {
        let mut profile = Profile::default();
        let mut interner = Interner::default();
        let mut samples = Vec::new();
        for (leaf, count) in leaves {
            let stack = profile.intern_stack(std::slice::from_ref(leaf), false, &mut interner);
            samples.push(StackSamples {
                stack,
                kind: SampleKind::OnCpu,
                count: *count,
                weight_ns: 0,
                syscall: None,
            });
        }
        profile.threads.push(ThreadProfile {
            tid: 1,
            pid: 1,
            samples,
            ..ThreadProfile::default()
        });
        profile
    }

    #[test]
    fn lines_of_one_function_merge_and_the_hottest_line_shows() {
        let profile = profile(&[
            (frame(Some("loop"), 0x10, 3), 5),
            (frame(Some("loop"), 0x18, 4), 2),
        ]);
        let merged = merged_stacks(&profile, &profile.threads[0]);
        assert_eq!(merged.len(), 1, "{merged:#?}");
        assert_eq!(merged[0].count, 7);
        assert_eq!(merged[0].frames[0].line, Some(3));
    }

    #[test]
    fn unnamed_frames_merge_only_at_the_same_offset() {
        let profile = profile(&[(frame(None, 0x10, 0), 5), (frame(None, 0x18, 0), 2)]);
        let merged = merged_stacks(&profile, &profile.threads[0]);
        assert_eq!(merged.len(), 2);
        assert_eq!((merged[0].count, merged[1].count), (5, 2));
    }
}
