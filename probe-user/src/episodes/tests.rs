use super::*;

const SEC: u64 = 1_000_000_000;
const TICK: u64 = SEC / 2;

fn options() -> HeatOptions {
    HeatOptions {
        threshold: 0.9,
        hold_ns: 30 * SEC,
        sample_ns: 5 * SEC,
        cool_ns: 3 * SEC,
    }
}

/// Drives `heat` tick by tick from `from` to `to` (exclusive), with thread 7 of process 5
/// using `share(t)` of a CPU in the tick ending at t; returns the changes with their times.
struct Run {
    heat: Heat,
    now: u64,
    total: u64,
    exited: bool,
    changes: Vec<(u64, Change)>,
}

impl Run {
    fn new() -> Self {
        let mut heat = Heat::new(options());
        assert!(heat.tick(0, &[total(0)], &[]).is_empty());
        Self {
            heat,
            now: 0,
            total: 0,
            exited: false,
            changes: Vec::new(),
        }
    }

    fn run(&mut self, until: u64, share: impl Fn(u64) -> f64) {
        while self.now + TICK <= until {
            self.now += TICK;
            self.total += (share(self.now) * TICK as f64) as u64;
            let totals = if self.exited {
                vec![]
            } else {
                vec![total(self.total)]
            };
            for change in self.heat.tick(self.now, &totals, &[]) {
                self.changes.push((self.now, change));
            }
        }
    }
}

fn total(on_cpu_ns: u64) -> ThreadTotal {
    ThreadTotal {
        tid: 7,
        pid: 5,
        on_cpu_ns,
    }
}

#[test]
fn a_spinner_starts_one_episode_is_sampled_and_ends_when_it_stops() {
    let mut run = Run::new();
    run.run(50 * SEC, |_| 1.0);
    run.run(60 * SEC, |_| 0.0);
    let [(started_at, Change::Started(start)), (sampled_at, Change::Sampled { id, tid, exited }), (ended_at, Change::Ended(end))] =
        run.changes.as_slice()
    else {
        panic!("{:?}", run.changes);
    };
    assert_eq!(*started_at, 30 * SEC);
    assert_eq!(
        (start.id, start.tid, start.pid, start.hot_since_ns),
        (1, 7, 5, 0)
    );
    assert!((start.share - 1.0).abs() < 1e-9);
    assert_eq!((*sampled_at, *id, *tid, *exited), (35 * SEC, 1, 7, false));
    // Last hot tick ends at 50 s; 3 s below the threshold end it.
    assert_eq!(*ended_at, 53 * SEC);
    assert_eq!(end.ended_ns, 50 * SEC);
    assert_eq!(end.duration_ns(), 50 * SEC);
    assert_eq!(end.cause, EndCause::Cooled);
    assert_eq!(run.heat.open_episodes(), 0);
}

#[test]
fn idle_and_briefly_hot_threads_start_nothing() {
    let mut idle = Run::new();
    idle.run(100 * SEC, |_| 0.01);
    assert!(idle.changes.is_empty());
    // Hot for 20 s of a 30 s hold, then idle: never enough.
    let mut brief = Run::new();
    brief.run(100 * SEC, |t| if t <= 20 * SEC { 1.0 } else { 0.0 });
    assert!(brief.changes.is_empty(), "{:?}", brief.changes);
    // 85% steady: below the threshold.
    let mut warm = Run::new();
    warm.run(100 * SEC, |_| 0.85);
    assert!(warm.changes.is_empty());
}

#[test]
fn dips_below_the_threshold_neither_reset_the_hold_nor_end_the_episode() {
    let mut run = Run::new();
    // 100% and 85% ticks in turn: a 92.5% mean, below the threshold half of the time.
    let pattern = |t: u64| {
        if (t / TICK).is_multiple_of(2) {
            1.0
        } else {
            0.85
        }
    };
    run.run(120 * SEC, pattern);
    let kinds: Vec<&str> = run
        .changes
        .iter()
        .map(|(_, change)| match change {
            Change::Started(_) => "started",
            Change::Sampled { .. } => "sampled",
            Change::Ended(_) => "ended",
        })
        .collect();
    assert_eq!(kinds, ["started", "sampled"]);
    assert_eq!(run.changes[0].0, 30 * SEC);
}

#[test]
fn a_thread_that_exits_while_sampled_is_reported_and_ended() {
    let mut run = Run::new();
    run.run(32 * SEC, |_| 1.0);
    run.exited = true;
    run.run(33 * SEC, |_| 1.0);
    let changes: Vec<&Change> = run.changes.iter().map(|(_, c)| c).collect();
    assert!(matches!(changes[0], Change::Started(_)));
    assert_eq!(
        *changes[1],
        Change::Sampled {
            id: 1,
            tid: 7,
            exited: true
        }
    );
    let Change::Ended(end) = changes[2] else {
        panic!("{changes:?}");
    };
    assert_eq!(end.cause, EndCause::Exited);
    assert_eq!(end.ended_ns, 32 * SEC);
    assert_eq!(run.heat.tracked_threads(), 0);
}

#[test]
fn stopping_reports_and_ends_what_is_open() {
    let mut run = Run::new();
    run.run(31 * SEC, |_| 1.0);
    assert_eq!(run.heat.sampling(), [7]);
    let changes = run.heat.close_all();
    assert_eq!(
        changes[0],
        Change::Sampled {
            id: 1,
            tid: 7,
            exited: false
        }
    );
    let Change::Ended(end) = changes[1] else {
        panic!("{changes:?}");
    };
    assert_eq!((end.cause, end.ended_ns), (EndCause::Stopped, 31 * SEC));
    assert!(run.heat.sampling().is_empty());
}

#[test]
fn a_second_episode_needs_a_whole_new_hot_stretch() {
    let mut run = Run::new();
    // Hot to 40 s, idle 4 s (the episode ends at 43 s), hot again from 44 s.
    run.run(120 * SEC, |t| {
        if t <= 40 * SEC || t > 44 * SEC {
            1.0
        } else {
            0.0
        }
    });
    let starts: Vec<(u64, u64)> = run
        .changes
        .iter()
        .filter_map(|(at, change)| match change {
            Change::Started(start) => Some((*at, start.id)),
            _ => None,
        })
        .collect();
    // Not at 43.5 s from the 30 s before (still a 90% mean), but once 30 s have passed
    // since the first ended (29 s of them hot).
    assert_eq!(starts, [(30 * SEC, 1), (73 * SEC, 2)]);
}

#[test]
fn a_reused_tid_in_another_process_starts_from_nothing() {
    let mut heat = Heat::new(options());
    for second in 0..=29 {
        let on_cpu = second * SEC;
        heat.tick(on_cpu, &[total(on_cpu)], &[]);
    }
    // Same tid, another process, and its counter from zero: no hot history.
    let reused = ThreadTotal {
        tid: 7,
        pid: 6,
        on_cpu_ns: 0,
    };
    assert!(heat.tick(30 * SEC, &[reused], &[]).is_empty());
    assert_eq!(heat.tracked_threads(), 1);
}

#[test]
fn a_thread_first_seen_mid_run_counts_from_the_tick_before_it() {
    // Thread 7 starts spinning at 10.1 s, first seen at the 10.5 s tick with 0.4 s of CPU:
    // it had 0 at the 10 s tick, so its hold is judged from there, not from 10.5 s.
    let options = HeatOptions {
        hold_ns: 3 * SEC,
        sample_ns: 2 * SEC,
        ..options()
    };
    let mut heat = Heat::new(options).counting_since(0);
    let started = 10 * SEC + SEC / 10;
    let mut first_start = None;
    for tick in 1..=40 {
        let now = tick * TICK;
        let totals = if now > started {
            vec![total(now - started)]
        } else {
            vec![]
        };
        for change in heat.tick(now, &totals, &[]) {
            if let Change::Started(start) = change {
                first_start.get_or_insert((now, start.hot_since_ns));
            }
        }
    }
    // 2.9 s of CPU over the 3 s since the 10 s tick: 97%, at 13 s.
    assert_eq!(first_start, Some((13 * SEC, 10 * SEC)));
    // The first tick's threads count from when counting began.
    let mut heat = Heat::new(options).counting_since(0);
    let changes = heat.tick(3 * SEC, &[total(3 * SEC)], &[]);
    assert!(
        matches!(changes.as_slice(), [Change::Started(_)]),
        "{changes:?}"
    );
    // Without that origin the history starts at the first tick.
    let mut heat = Heat::new(options);
    assert!(heat.tick(3 * SEC, &[total(3 * SEC)], &[]).is_empty());
}
