//! `probe watch`'s decisions, kept pure: fed each thread's CPU time at every tick, it says
//! when a thread has been hot long enough to start an episode, when the episode's sampling
//! is over, and when the episode ends. No kernel, no clock: the tests feed it totals.
//!
//! A thread is hot when its CPU time over the last `hold` (`--for`) is at least `threshold`
//! of one CPU: a mean over the whole stretch, so a short dip (preempted for a tick on a busy
//! machine) does not reset it. An episode ends once the thread spends `cool` in a row below
//! the threshold, or exits; its duration runs from the start of the stretch that made it
//! hot to the end of its last hot tick.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// What counts as hot, and for how long.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeatOptions {
    /// Share of one CPU (1.0 = a whole CPU) at or above which a thread is hot.
    pub threshold: f64,
    /// How long a thread must be hot before its episode starts (`--for`), ns.
    pub hold_ns: u64,
    /// How long an episode's threads are sampled (`--sample`), ns.
    pub sample_ns: u64,
    /// How long below the threshold ends an episode, ns.
    pub cool_ns: u64,
}

/// One thread's CPU time so far, as read at a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadTotal {
    pub tid: u32,
    pub pid: u32,
    /// Nanoseconds on a CPU since watching began (a run still in progress included).
    pub on_cpu_ns: u64,
}

/// What changed at a tick, for the caller to act on, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Thread `tid` has been hot for `hold`: sample it from now for `sample`.
    Started(EpisodeStart),
    /// The sampling of episode `id` is over (or its thread exited): report it.
    Sampled { id: u64, tid: u32, exited: bool },
    /// Episode `id` ended: its thread cooled down or exited.
    Ended(EpisodeEnd),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpisodeStart {
    pub id: u64,
    pub tid: u32,
    pub pid: u32,
    /// When the hot stretch began (`hold` before it was seen), ns.
    pub hot_since_ns: u64,
    /// Its share of one CPU over that stretch.
    pub share: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpisodeEnd {
    pub id: u64,
    pub tid: u32,
    pub pid: u32,
    pub hot_since_ns: u64,
    /// The end of its last hot tick, ns.
    pub ended_ns: u64,
    pub cause: EndCause,
}

/// Why an episode ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndCause {
    /// Below the threshold for `cool`.
    Cooled,
    /// The thread exited.
    Exited,
    /// Watching stopped while it was still hot.
    Stopped,
}

impl EndCause {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cooled => "cooled",
            Self::Exited => "exited",
            Self::Stopped => "stopped",
        }
    }
}

impl EpisodeEnd {
    pub fn duration_ns(&self) -> u64 {
        self.ended_ns.saturating_sub(self.hot_since_ns)
    }
}

/// A thread's recent history: (tick time, its total then), oldest first, spanning `hold`.
#[derive(Debug, Default)]
struct History {
    pid: u32,
    points: VecDeque<(u64, u64)>,
}

impl History {
    /// Its share of one CPU over the last `span_ns`, once the history covers that long.
    fn share_over(&self, now_ns: u64, span_ns: u64) -> Option<f64> {
        let &(_, now_total) = self.points.back()?;
        let since = now_ns.checked_sub(span_ns)?;
        // The newest point at or before `since`: the stretch is then at least `span`. The
        // points are in time order, so a binary search finds it (a thread's history holds
        // a point per tick over the hold, and every thread is asked every tick).
        let after = self.points.partition_point(|(at, _)| *at <= since);
        let &(at, total) = self.points.get(after.checked_sub(1)?)?;
        let elapsed = now_ns.saturating_sub(at).max(1);
        Some(now_total.saturating_sub(total) as f64 / elapsed as f64)
    }
}

#[derive(Debug)]
struct Episode {
    id: u64,
    pid: u32,
    hot_since_ns: u64,
    /// Sampling until this time; `None` once reported.
    sampling_until_ns: Option<u64>,
    /// The end of its latest hot tick.
    last_hot_ns: u64,
}

/// The episode state of every thread.
#[derive(Debug)]
pub struct Heat {
    options: HeatOptions,
    threads: HashMap<u32, History>,
    /// By tid: at most one open episode per thread.
    episodes: BTreeMap<u32, Episode>,
    /// The previous tick; before the first one, when the totals started counting (see
    /// [`Heat::counting_since`]).
    last_tick_ns: Option<u64>,
    next_id: u64,
}

impl Heat {
    pub fn new(options: HeatOptions) -> Self {
        Self {
            options,
            threads: HashMap::new(),
            episodes: BTreeMap::new(),
            last_tick_ns: None,
            next_id: 1,
        }
    }

    /// The totals count from `start_ns` (the window's start): every thread had 0 then, so
    /// the first tick's threads get a history from there.
    pub fn counting_since(mut self, start_ns: u64) -> Self {
        self.last_tick_ns = Some(start_ns);
        self
    }

    /// Threads with an open episode.
    pub fn open_episodes(&self) -> usize {
        self.episodes.len()
    }

    /// The threads being sampled now.
    pub fn sampling(&self) -> Vec<u32> {
        self.episodes
            .iter()
            .filter(|(_, e)| e.sampling_until_ns.is_some())
            .map(|(&tid, _)| tid)
            .collect()
    }

    /// Threads whose history is kept (for the heartbeat: it must not grow without bound).
    pub fn tracked_threads(&self) -> usize {
        self.threads.len()
    }

    /// One tick at `now_ns`: `totals` holds every thread the kernel knows (a thread absent
    /// from it exited and was forgotten), `exited` the ones that exited since the last tick.
    pub fn tick(&mut self, now_ns: u64, totals: &[ThreadTotal], exited: &[u32]) -> Vec<Change> {
        let previous_tick = self.last_tick_ns.replace(now_ns);
        let keep_ns = self.options.hold_ns.max(self.options.cool_ns);
        let mut seen = std::collections::HashSet::with_capacity(totals.len());
        for total in totals {
            seen.insert(total.tid);
            let history = self.threads.entry(total.tid).or_insert_with(|| {
                // Not in the previous tick's totals: it had not run since they started
                // counting (a thread gets its total at its first switch, or from the CPU it
                // is running on), so it had 0 then. Its share over a stretch reaching back
                // before it existed is lower, never higher, than over its life.
                History {
                    pid: total.pid,
                    points: previous_tick
                        .filter(|&previous| previous < now_ns)
                        .map(|previous| (previous, 0))
                        .into_iter()
                        .collect(),
                }
            });
            if history.pid != total.pid {
                // A new thread (or a reused tid): its history starts now.
                history.pid = total.pid;
                history.points.clear();
            }
            history.points.push_back((now_ns, total.on_cpu_ns));
            // Keep the newest point at or before `now - keep`, and everything after it.
            while history.points.len() >= 2 && history.points[1].0 + keep_ns <= now_ns {
                history.points.pop_front();
            }
        }
        self.threads.retain(|tid, _| seen.contains(tid));

        let mut changes = Vec::new();
        self.end_episodes(now_ns, previous_tick, exited, &seen, &mut changes);
        self.finish_sampling(now_ns, exited, &mut changes);
        self.start_episodes(now_ns, &mut changes);
        changes
    }

    /// Every open episode, reported and ended (watching stops).
    pub fn close_all(&mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        for (tid, episode) in std::mem::take(&mut self.episodes) {
            close(tid, &episode, EndCause::Stopped, &mut changes);
        }
        changes
    }

    fn end_episodes(
        &mut self,
        now_ns: u64,
        previous_tick: Option<u64>,
        exited: &[u32],
        seen: &std::collections::HashSet<u32>,
        changes: &mut Vec<Change>,
    ) {
        let threshold = self.options.threshold;
        let cool_ns = self.options.cool_ns;
        let mut ended = Vec::new();
        for (&tid, episode) in &mut self.episodes {
            let gone = exited.contains(&tid) || !seen.contains(&tid);
            let history = self.threads.get(&tid);
            // This tick's share: since the previous tick.
            let tick_share = previous_tick
                .and_then(|previous| history?.share_over(now_ns, now_ns.saturating_sub(previous)));
            if !gone && tick_share.is_some_and(|share| share >= threshold) {
                episode.last_hot_ns = now_ns;
            }
            let cooled = now_ns.saturating_sub(episode.last_hot_ns) >= cool_ns;
            if gone || cooled {
                ended.push((tid, gone));
            }
        }
        for (tid, gone) in ended {
            let Some(episode) = self.episodes.remove(&tid) else {
                continue;
            };
            // A next episode needs a whole new hot stretch: not one counted from before
            // this one ended.
            if let Some(history) = self.threads.get_mut(&tid) {
                let newest = history.points.back().copied();
                history.points.clear();
                history.points.extend(newest);
            }
            let cause = if gone {
                EndCause::Exited
            } else {
                EndCause::Cooled
            };
            close(tid, &episode, cause, changes);
        }
    }

    fn finish_sampling(&mut self, now_ns: u64, exited: &[u32], changes: &mut Vec<Change>) {
        for (&tid, episode) in &mut self.episodes {
            let Some(until) = episode.sampling_until_ns else {
                continue;
            };
            if now_ns >= until {
                episode.sampling_until_ns = None;
                changes.push(Change::Sampled {
                    id: episode.id,
                    tid,
                    exited: exited.contains(&tid),
                });
            }
        }
    }

    fn start_episodes(&mut self, now_ns: u64, changes: &mut Vec<Change>) {
        let HeatOptions {
            threshold,
            hold_ns,
            sample_ns,
            ..
        } = self.options;
        let mut hot: Vec<(u32, u32, f64)> = self
            .threads
            .iter()
            .filter(|(tid, _)| !self.episodes.contains_key(tid))
            .filter_map(|(&tid, history)| {
                let share = history.share_over(now_ns, hold_ns)?;
                (share >= threshold).then_some((tid, history.pid, share))
            })
            .collect();
        hot.sort_unstable_by_key(|&(tid, _, _)| tid);
        for (tid, pid, share) in hot {
            let id = self.next_id;
            self.next_id += 1;
            let hot_since_ns = now_ns.saturating_sub(hold_ns);
            self.episodes.insert(
                tid,
                Episode {
                    id,
                    pid,
                    hot_since_ns,
                    sampling_until_ns: Some(now_ns + sample_ns),
                    last_hot_ns: now_ns,
                },
            );
            changes.push(Change::Started(EpisodeStart {
                id,
                tid,
                pid,
                hot_since_ns,
                share,
            }));
        }
    }
}

/// The changes that close `episode` of thread `tid`: its report if it was still being
/// sampled (its thread exited if that is why), then its end.
fn close(tid: u32, episode: &Episode, cause: EndCause, changes: &mut Vec<Change>) {
    if episode.sampling_until_ns.is_some() {
        changes.push(Change::Sampled {
            id: episode.id,
            tid,
            exited: cause == EndCause::Exited,
        });
    }
    changes.push(Change::Ended(EpisodeEnd {
        id: episode.id,
        tid,
        pid: episode.pid,
        hot_since_ns: episode.hot_since_ns,
        ended_ns: episode.last_hot_ns,
        cause,
    }));
}

#[cfg(test)]
mod tests;
