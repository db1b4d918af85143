//! `probe watch`'s continuous profile, served the way Go's `/debug/pprof/profile?seconds=N`
//! is: a request opens a window, and when its N seconds are over it gets the samples taken
//! in between. The collector only ever adds samples up, so a window is the difference
//! between its counts at the end and at the start ("origin"); samples the collector drops
//! while a window is open (a reported episode's, or all of them when memory is reclaimed)
//! are first banked into every open window. Kept pure: the caller feeds it counts.

use std::collections::HashMap;

use crate::model::RawStack;

/// A thread: (tid, pid).
pub type ThreadKey = (u32, u32);

/// On-CPU samples by (thread, raw stack).
pub type StackCounts = HashMap<(ThreadKey, RawStack), u64>;

/// One open window, answered through `reply` when it is due.
struct Window<R> {
    until_ns: u64,
    origin: StackCounts,
    banked: StackCounts,
    reply: R,
}

/// Every open window.
pub struct Windows<R> {
    open: Vec<Window<R>>,
}

impl<R> Default for Windows<R> {
    fn default() -> Self {
        Self { open: Vec::new() }
    }
}

impl<R> Windows<R> {
    /// Opens a window until `until_ns`; `current` is what the collector holds now.
    pub fn open(&mut self, until_ns: u64, current: &StackCounts, reply: R) {
        self.open.push(Window {
            until_ns,
            origin: current.clone(),
            banked: StackCounts::new(),
            reply,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The collector is about to drop the samples of the threads `dropping` accepts (out
    /// of `current`, what it holds now): what each open window has of them so far is
    /// banked, and their origin forgotten.
    pub fn bank(&mut self, current: &StackCounts, dropping: impl Fn(u32) -> bool) {
        for window in &mut self.open {
            for (key, &count) in current.iter().filter(|(((tid, _), _), _)| dropping(*tid)) {
                let since = count.saturating_sub(window.origin.get(key).copied().unwrap_or(0));
                if since > 0 {
                    *window.banked.entry(key.clone()).or_insert(0) += since;
                }
            }
            window.origin.retain(|((tid, _), _), _| !dropping(*tid));
        }
    }

    /// Whether a window is due at `now_ns` (cheap: the samples are not looked at).
    pub fn any_due(&self, now_ns: u64) -> bool {
        self.open.iter().any(|window| window.until_ns <= now_ns)
    }

    /// Whether an open window's reply is one `which` accepts.
    pub fn any_open(&self, which: impl Fn(&R) -> bool) -> bool {
        self.open.iter().any(|window| which(&window.reply))
    }

    /// The windows due at `now_ns`, each with its samples, closed.
    pub fn take_due(&mut self, now_ns: u64, current: &StackCounts) -> Vec<(StackCounts, R)> {
        let (due, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|window| window.until_ns <= now_ns);
        self.open = open;
        due.into_iter()
            .map(|window| {
                let mut samples = window.banked;
                for (key, &count) in current {
                    let since = count.saturating_sub(window.origin.get(key).copied().unwrap_or(0));
                    if since > 0 {
                        *samples.entry(key.clone()).or_insert(0) += since;
                    }
                }
                (samples, window.reply)
            })
            .collect()
    }

    /// Every open window, closed now with what it has (watching stops).
    pub fn take_all(&mut self, current: &StackCounts) -> Vec<(StackCounts, R)> {
        self.take_due(u64::MAX, current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(leaf: u64) -> RawStack {
        RawStack {
            user: vec![leaf],
            ..RawStack::default()
        }
    }

    fn counts(entries: &[(u32, u64, u64)]) -> StackCounts {
        entries
            .iter()
            .map(|&(tid, leaf, count)| (((tid, tid), stack(leaf)), count))
            .collect()
    }

    #[test]
    fn a_window_holds_what_was_added_while_it_was_open() {
        let mut windows = Windows::default();
        windows.open(10, &counts(&[(1, 0xa, 5)]), "first");
        assert!(windows.take_due(9, &counts(&[(1, 0xa, 6)])).is_empty());
        let due = windows.take_due(10, &counts(&[(1, 0xa, 8), (2, 0xb, 3)]));
        assert_eq!(due, vec![(counts(&[(1, 0xa, 3), (2, 0xb, 3)]), "first")]);
        assert!(windows.is_empty());
    }

    #[test]
    fn samples_dropped_while_open_are_banked_first() {
        let mut windows = Windows::default();
        windows.open(10, &counts(&[(1, 0xa, 5), (2, 0xb, 1)]), ());
        // Thread 1's samples are reported and dropped: 2 of them are the window's.
        windows.bank(&counts(&[(1, 0xa, 7), (2, 0xb, 2)]), |tid| tid == 1);
        // Thread 1 comes back with new samples, counted from zero.
        let due = windows.take_due(10, &counts(&[(1, 0xa, 4), (2, 0xb, 3)]));
        assert_eq!(due[0].0, counts(&[(1, 0xa, 6), (2, 0xb, 2)]));
    }

    #[test]
    fn overlapping_windows_each_get_their_own_span() {
        let mut windows = Windows::default();
        windows.open(20, &counts(&[]), 'a');
        windows.open(30, &counts(&[(1, 0xa, 4)]), 'b');
        let due = windows.take_due(25, &counts(&[(1, 0xa, 6)]));
        assert_eq!(due, vec![(counts(&[(1, 0xa, 6)]), 'a')]);
        // Memory reclaimed: everything dropped.
        windows.bank(&counts(&[(1, 0xa, 9)]), |_| true);
        let rest = windows.take_all(&counts(&[(1, 0xa, 1)]));
        assert_eq!(rest, vec![(counts(&[(1, 0xa, 6)]), 'b')]);
    }
}
