//! `probe watch`: always on, for weeks. While nothing spins only `sched_switch` accounts run
//! time; a thread at or above the threshold for `--for` starts an episode: its stacks and
//! syscalls are recorded (in the kernel, for the hot threads only) for `--sample`, then one
//! event carries the spin report of it, and one more says when the episode ended.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use probe_common::MAX_THREADS;

use super::{runtime, stop_signal};
use crate::cli::{EventFormat, WatchOptions};
use crate::collect::Collector;
use crate::episodes::{Change, EpisodeEnd, EpisodeStart, Heat, HeatOptions, ThreadTotal};
use crate::event_log::EventLog;
use crate::loader::{monotonic_ns, Aggregates, LoadOptions, Probe, ProgramSet};
use crate::metrics::Metrics;
use crate::model::{LossCounters, StackStats, ThreadRecord, Window};
use crate::output::{Format, OutputOptions};
use crate::profile_dir::ProfileDir;
use crate::profiles::{StackCounts, Windows};
use crate::serve::{self, Request};
use crate::{preflight, proc, report, symbolize};

/// How often run times are read and episodes decided.
const TICK: Duration = Duration::from_millis(500);
/// How often the ring buffer is drained while an episode is sampled, and due profiles
/// answered while an HTTP request waits for one. Otherwise both happen at the tick: every
/// wake-up costs, and between episodes watch should cost next to nothing.
const DRAIN: Duration = Duration::from_millis(100);
/// An episode ends after this long below the threshold.
const COOL: Duration = Duration::from_secs(3);
/// How often the kernel's thread map is swept of threads that are gone without an exit
/// mark (one that exited before watching began, say).
const SWEEP: Duration = Duration::from_secs(60);
/// How often the samples kept for profiles are dropped (between episodes), so memory
/// follows the stacks of a few minutes, not of weeks.
const RECLAIM: Duration = Duration::from_secs(300);

/// A profile request waiting for its window to end.
struct PendingProfile {
    seconds: u64,
    /// The kernel's count of lost samples when the window opened.
    samples_lost_before: u64,
    to: ProfileTo,
}

/// Where a profile goes when its window ends.
enum ProfileTo {
    /// An HTTP request's answer.
    Reply(tokio::sync::oneshot::Sender<Result<Vec<u8>, String>>),
    /// A file in `--profile-dir`; the next window opens then.
    Dir,
}

/// Watches until SIGTERM, Ctrl-C or `--duration`.
pub fn run(options: &WatchOptions) -> anyhow::Result<()> {
    preflight::check(&[])?;
    // Before anything is attached: an output that cannot be written is said at once.
    let mut log =
        EventLog::open(options.output.as_deref()).context("failed to open the event output")?;
    let profile_dir = match &options.profile_dir {
        Some(dir) => Some(
            ProfileDir::open(dir, options.profile_dir_max_bytes)
                .context("failed to use the profile directory")?,
        ),
        None => None,
    };
    runtime()?.block_on(watch(options, &mut log, profile_dir))
}

async fn watch(
    options: &WatchOptions,
    log: &mut EventLog,
    profile_dir: Option<ProfileDir>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let stop = stop_signal();
    let mut hangup = signal(SignalKind::hangup()).context("failed to handle SIGHUP")?;
    // Before anything is attached: a port in use is said at once.
    let listener = match options.listen {
        Some(addr) => Some(
            serve::bind(addr)
                .await
                .with_context(|| format!("failed to listen on {addr}"))?,
        ),
        None => None,
    };
    let mut probe = Probe::load(&LoadOptions {
        pids: Vec::new(),
        filter_pids: false,
        frequency_hz: sampler_hz(options),
        programs: ProgramSet {
            profile_all: options.profile_hz > 0,
            ..ProgramSet::WATCH
        },
    })?;
    if listener.is_some() {
        // Needs CAP_SYS_ADMIN, which the packaged unit does not grant: without it the
        // programs' metrics stay at zero and watch_start says why.
        if let Err(err) = probe.keep_run_time_stats() {
            probe.notices.push(format!(
                "probe_bpf_program_* metrics stay at 0: {err} (it needs CAP_SYS_ADMIN, or \
                 `sysctl kernel.bpf_stats_enabled=1`)"
            ));
        }
    }
    probe.start_window()?;
    if options.profile_hz > 0 {
        probe.attach_sampling(options.profile_hz)?;
    }
    let (requests, mut requested) = tokio::sync::mpsc::channel(16);
    if let Some(listener) = listener {
        serve::spawn(listener, requests);
    }
    let mut watcher = Watcher::new(options, &probe);
    watcher.profile_dir = profile_dir;
    watcher.open_profile_file();
    watcher.started(log, &probe);
    let elapsed = async {
        match options.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    let mut tick = tokio::time::interval(TICK);
    let mut drain = tokio::time::interval(DRAIN);
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + options.heartbeat,
        options.heartbeat,
    );
    for timer in [&mut tick, &mut drain, &mut heartbeat] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    tokio::pin!(stop, elapsed);
    let stopped_by = loop {
        tokio::select! {
            reason = &mut stop => break reason,
            () = &mut elapsed => break None,
            _ = hangup.recv() => log.reopen(),
            Some(request) = requested.recv() => watcher.request(&probe, log, request),
            _ = drain.tick(), if watcher.drains_often() => {
                if probe.sampling() {
                    watcher.collector.drain(&mut probe)?;
                }
                watcher.answer_due_profiles(&mut probe, monotonic_ns());
            }
            _ = tick.tick() => {
                watcher.tick(&mut probe, log)?;
                watcher.answer_due_profiles(&mut probe, monotonic_ns());
            }
            _ = heartbeat.tick() => watcher.heartbeat(&probe, log),
        }
    };
    watcher.stop(&mut probe, log, stopped_by)?;
    probe.detach_all();
    Ok(())
}

/// The sampler's rate: the profiling rate while profiling (the episodes' samples come
/// from the same sampler), else `-F`.
fn sampler_hz(options: &WatchOptions) -> u64 {
    if options.profile_hz > 0 {
        options.profile_hz
    } else {
        options.frequency_hz
    }
}

/// An episode whose threads are being sampled: what its report subtracts.
struct Sampling {
    tid: u32,
    since_ns: u64,
    on_cpu_ns: u64,
    switches: (u64, u64),
    syscalls: BTreeMap<u32, u64>,
    loss: LossCounters,
}

/// An open episode: what its end event says.
struct OpenEpisode {
    start: EpisodeStart,
    thread: String,
    process: String,
}

struct Watcher<'a> {
    options: &'a WatchOptions,
    heat: Heat,
    collector: Collector,
    sampling: HashMap<u64, Sampling>,
    open: HashMap<u64, OpenEpisode>,
    /// Threads seen exited at the last tick, deleted from the kernel's map at this one: the
    /// switch away from an exiting thread comes after its exit mark and would put back an
    /// entry deleted at once.
    exited_last_tick: Vec<u32>,
    /// The hot threads as last written to the kernel.
    hot: Vec<u32>,
    clock: Clock,
    started: Instant,
    last_sweep: Instant,
    /// The latest aggregates' loss counters, for the heartbeat.
    loss: LossCounters,
    thread_entries: usize,
    metrics: Metrics,
    profiles: Windows<PendingProfile>,
    last_reclaim: Instant,
    profile_dir: Option<ProfileDir>,
    /// Profiles written to / lost from `--profile-dir`, and the latest failure.
    profiles_written: u64,
    profiles_lost: u64,
    last_profile_error: Option<String>,
}

impl<'a> Watcher<'a> {
    fn new(options: &'a WatchOptions, probe: &Probe) -> Self {
        Self {
            options,
            heat: Heat::new(HeatOptions {
                threshold: options.threshold_pct / 100.0,
                hold_ns: options.hold.as_nanos() as u64,
                sample_ns: options.sample.as_nanos() as u64,
                cool_ns: COOL.as_nanos() as u64,
            })
            .counting_since(probe.window_start_ns),
            collector: Collector::default(),
            sampling: HashMap::new(),
            open: HashMap::new(),
            exited_last_tick: Vec::new(),
            hot: Vec::new(),
            clock: Clock::new(probe.window_start_ns),
            started: Instant::now(),
            last_sweep: Instant::now(),
            loss: LossCounters::default(),
            thread_entries: 0,
            metrics: Metrics::new(),
            profiles: Windows::default(),
            last_reclaim: Instant::now(),
            profile_dir: None,
            profiles_written: 0,
            profiles_lost: 0,
            last_profile_error: None,
        }
    }

    fn started(&self, log: &mut EventLog, probe: &Probe) {
        let options = self.options;
        let event = serde_json::json!({
            "event": "watch_start",
            "at": self.clock.wall(monotonic_ns()),
            "threshold_pct": options.threshold_pct,
            "for_secs": options.hold.as_secs_f64(),
            "sample_secs": options.sample.as_secs_f64(),
            "frequency_hz": options.frequency_hz,
            "notices": probe.notices,
        });
        self.write(log, &event, || {
            format!(
                "{} watching: threads at >= {}% of a CPU for {} s are sampled for {} s",
                self.clock.wall(monotonic_ns()),
                options.threshold_pct,
                options.hold.as_secs_f64(),
                options.sample.as_secs_f64()
            )
        });
    }

    /// Reads every thread's run time, decides, and acts on what changed.
    fn tick(&mut self, probe: &mut Probe, log: &mut EventLog) -> anyhow::Result<()> {
        if probe.sampling() {
            self.collector.drain(probe)?;
        }
        let now = monotonic_ns();
        let aggregates = probe.read_aggregates()?;
        self.loss = aggregates.loss.clone();
        self.thread_entries = aggregates.threads.len();
        let totals = thread_totals(&aggregates, now);
        let exited: Vec<u32> = aggregates
            .threads
            .iter()
            .filter(|(_, stats)| stats.exited != 0)
            .map(|(tid, _)| *tid)
            .collect();
        let changes = self.heat.tick(now, &totals, &exited);
        for change in changes {
            match change {
                Change::Started(start) => self.start_sampling(start, &aggregates, &totals, now),
                Change::Sampled { id, tid, exited } => {
                    self.report(probe, log, id, &aggregates, &totals, now, exited, None)?;
                    debug_assert!(!self.sampling.values().any(|s| s.tid == tid));
                }
                Change::Ended(end) => self.end(log, &end),
            }
        }
        self.sync_hot(probe)?;
        self.forget_exited(probe, &aggregates, exited)?;
        self.metrics
            .kernel(&self.loss, self.thread_entries, probe.sampling());
        self.metrics
            .set_hot_threads(self.open.values().map(|episode| episode.process.as_str()));
        self.reclaim();
        Ok(())
    }

    /// Drops the samples kept for profiles now and then, between episodes (an episode's
    /// report needs its thread's samples); open profile windows keep what they had.
    fn reclaim(&mut self) {
        if self.last_reclaim.elapsed() < RECLAIM || !self.sampling.is_empty() {
            return;
        }
        self.last_reclaim = Instant::now();
        let current = self.collector.stack_counts();
        self.profiles.bank(&current, |_| true);
        self.collector.clear_samples();
    }

    /// Answers an HTTP request (see `serve`): the metrics now, or a profile window opened.
    fn request(&mut self, probe: &Probe, log: &EventLog, request: Request) {
        match request {
            Request::Metrics(reply) => {
                if let Some((cpu_secs, rss_kib)) = own_usage() {
                    self.metrics.own_usage(cpu_secs, rss_kib * 1024);
                }
                self.metrics.events(log.written, log.failed);
                self.metrics.programs(&probe.program_stats());
                // The client may have gone: nothing to answer.
                let _ = reply.send(self.metrics.encode());
            }
            Request::Profile { seconds, reply } => {
                if self.options.profile_hz == 0 {
                    let _ = reply.send(Err(
                        "continuous profiling is off (--profile-hz 0)".to_owned()
                    ));
                    return;
                }
                let until = monotonic_ns() + seconds * 1_000_000_000;
                let pending = PendingProfile {
                    seconds,
                    samples_lost_before: self.loss.samples_lost,
                    to: ProfileTo::Reply(reply),
                };
                self.profiles
                    .open(until, &self.collector.stack_counts(), pending);
            }
        }
    }

    /// Opens the next `--profile-dir` window, if there is a directory.
    fn open_profile_file(&mut self) {
        if self.profile_dir.is_none() || self.options.profile_hz == 0 {
            return;
        }
        let interval = self.options.profile_interval;
        let pending = PendingProfile {
            seconds: interval.as_secs().max(1),
            samples_lost_before: self.loss.samples_lost,
            to: ProfileTo::Dir,
        };
        let until = monotonic_ns() + interval.as_nanos() as u64;
        self.profiles
            .open(until, &self.collector.stack_counts(), pending);
    }

    /// Whether the ring buffer is drained every [`DRAIN`] rather than every [`TICK`]: while
    /// hot threads are sampled at `-F`, or an HTTP request waits for its profile.
    fn drains_often(&self) -> bool {
        !self.hot.is_empty()
            || self
                .profiles
                .any_open(|pending| matches!(pending.to, ProfileTo::Reply(_)))
    }

    /// Sends or writes every profile whose window is over.
    fn answer_due_profiles(&mut self, probe: &mut Probe, now: u64) {
        if !self.profiles.any_due(now) {
            return;
        }
        let due = self.profiles.take_due(now, &self.collector.stack_counts());
        for (samples, pending) in due {
            let profile = self.profile_bytes(probe, samples, &pending, now, None);
            let to_dir = matches!(pending.to, ProfileTo::Dir);
            self.deliver(pending.to, profile, now);
            if to_dir {
                self.open_profile_file();
            }
        }
    }

    /// Hands a finished profile to where it goes; a file window is followed by the next.
    fn deliver(&mut self, to: ProfileTo, profile: Result<Vec<u8>, String>, now: u64) {
        match to {
            // The client may have gone: nothing to answer.
            ProfileTo::Reply(reply) => {
                let _ = reply.send(profile);
            }
            ProfileTo::Dir => {
                let Some(dir) = &self.profile_dir else {
                    return;
                };
                let written = profile.and_then(|bytes| {
                    dir.write(&bytes, self.clock.system_time(now))
                        .map_err(|err| format!("{:#}", anyhow::Error::new(err)))
                });
                match written {
                    Ok(_) => self.profiles_written += 1,
                    Err(why) => {
                        self.profiles_lost += 1;
                        self.last_profile_error = Some(why);
                    }
                }
            }
        }
    }

    /// A gzipped pprof profile of `samples`, named from what the collector knows now.
    fn profile_bytes(
        &self,
        probe: &mut Probe,
        samples: StackCounts,
        pending: &PendingProfile,
        now: u64,
        stopped_by: Option<&str>,
    ) -> Result<Vec<u8>, String> {
        let aggregates = Aggregates {
            window_start_ns: now,
            ..Aggregates::default()
        };
        let mut recording = self.collector.snapshot(&aggregates, now);
        for thread in recording.threads.values_mut() {
            thread.stacks.clear();
        }
        recording.loss = LossCounters {
            samples: samples.values().sum(),
            samples_lost: self
                .loss
                .samples_lost
                .saturating_sub(pending.samples_lost_before),
            ..LossCounters::default()
        };
        recording.window = Window {
            requested_ns: pending.seconds * 1_000_000_000,
            duration_ns: pending.seconds * 1_000_000_000,
            // Cut short when watching stopped: what it has so far.
            interrupted: stopped_by.is_some(),
            interrupted_by: stopped_by.map(str::to_owned),
        };
        for (((tid, pid), stack), count) in samples {
            // A thread reported and forgotten since keeps its samples, with what /proc
            // still says of it.
            let thread = recording
                .threads
                .entry(tid)
                .or_insert_with(|| ThreadRecord {
                    tid,
                    pid,
                    name: proc::comm(pid, Some(tid)).unwrap_or_default(),
                    ..ThreadRecord::default()
                });
            thread.stacks.insert(
                stack,
                StackStats {
                    count,
                    ..StackStats::default()
                },
            );
        }
        recording
            .threads
            .retain(|_, thread| !thread.stacks.is_empty());
        recording.frequency_hz = self.options.profile_hz;
        recording.online_cpus = probe.online_cpus.len() as u32;
        let kernel_names =
            symbolize::KernelNames::look_up(&recording, |addrs| probe.name_kernel_addresses(addrs));
        let profile = symbolize::symbolize_with(recording, kernel_names);
        let mut bytes = Vec::new();
        let options = OutputOptions {
            per_thread: false,
            title: "probe watch: continuous profile".to_owned(),
        };
        crate::output::write(Format::Pprof, &profile, &options, &mut bytes)
            .map_err(|err| format!("failed to encode the profile: {err}"))?;
        Ok(bytes)
    }

    fn start_sampling(
        &mut self,
        start: EpisodeStart,
        aggregates: &Aggregates,
        totals: &[ThreadTotal],
        now: u64,
    ) {
        let tid = start.tid;
        let stats = aggregates.threads.iter().find(|(t, _)| *t == tid);
        self.sampling.insert(
            start.id,
            Sampling {
                tid,
                since_ns: now,
                on_cpu_ns: total_of(totals, tid),
                switches: stats.map_or((0, 0), |(_, s)| {
                    (s.voluntary_switches, s.involuntary_switches)
                }),
                syscalls: syscalls_of(aggregates, tid),
                loss: aggregates.loss.clone(),
            },
        );
        self.open.insert(
            start.id,
            OpenEpisode {
                start,
                thread: proc::comm(start.pid, Some(tid)).unwrap_or_default(),
                process: proc::comm(start.pid, None).unwrap_or_default(),
            },
        );
        // Its interpreter and unwind tables are found at the next drain.
        self.collector.track(start.pid);
    }

    /// The spin report of episode `id`'s sampling, as one event; its samples and syscall
    /// counts are dropped after.
    #[allow(clippy::too_many_arguments)] // One call site per cause; a struct would only rename them.
    fn report(
        &mut self,
        probe: &mut Probe,
        log: &mut EventLog,
        id: u64,
        aggregates: &Aggregates,
        totals: &[ThreadTotal],
        now: u64,
        exited: bool,
        stopped_by: Option<&str>,
    ) -> anyhow::Result<()> {
        let Some(sampling) = self.sampling.remove(&id) else {
            return Ok(());
        };
        let tid = sampling.tid;
        let mine = Aggregates {
            threads: aggregates
                .threads
                .iter()
                .filter(|(t, _)| *t == tid)
                .cloned()
                .collect(),
            syscalls: aggregates
                .syscalls
                .iter()
                .filter(|(key, _)| key.tid == tid)
                .cloned()
                .collect(),
            syscall_caches: Vec::new(),
            cpus: Vec::new(),
            window_start_ns: aggregates.window_start_ns,
            loss: aggregates.loss.clone(),
        };
        let mut recording = self.collector.snapshot(&mine, now);
        recording.threads.retain(|&t, _| t == tid);
        if let Some(thread) = recording.threads.get_mut(&tid) {
            thread.on_cpu_ns = total_of(totals, tid).saturating_sub(sampling.on_cpu_ns);
            thread.voluntary_switches = thread
                .voluntary_switches
                .saturating_sub(sampling.switches.0);
            thread.involuntary_switches = thread
                .involuntary_switches
                .saturating_sub(sampling.switches.1);
            thread.syscalls = subtract(&syscalls_of(aggregates, tid), &sampling.syscalls);
            thread.exited |= exited;
        }
        recording.window = Window {
            requested_ns: self.options.sample.as_nanos() as u64,
            duration_ns: now.saturating_sub(sampling.since_ns),
            interrupted: stopped_by.is_some() || exited,
            interrupted_by: stopped_by
                .map(str::to_owned)
                .or_else(|| exited.then(|| "the thread's exit".to_owned())),
        };
        recording.frequency_hz = sampler_hz(self.options);
        recording.online_cpus = probe.online_cpus.len() as u32;
        recording.loss = loss_since(&aggregates.loss, &sampling.loss);
        let kernel_names =
            symbolize::KernelNames::look_up(&recording, |addrs| probe.name_kernel_addresses(addrs));
        let profile = symbolize::symbolize_with(recording, kernel_names);
        let report = report::analyze(
            &profile,
            &report::SpinOptions {
                threshold_pct: self.options.threshold_pct,
                top: self.options.top,
            },
        );
        let episode = self.open.get(&id);
        let mut event = serde_json::to_value(&report).context("failed to serialize a report")?;
        if let Some(object) = event.as_object_mut() {
            object.insert("event".into(), "spin".into());
            object.insert(
                "episode".into(),
                serde_json::json!({
                    "id": id,
                    "tid": tid,
                    "pid": episode.map(|e| e.start.pid),
                    "hot_since": episode.map(|e| self.clock.wall(e.start.hot_since_ns)),
                    "share_pct": episode.map(|e| round1(100.0 * e.start.share)),
                    "sampled_from": self.clock.wall(sampling.since_ns),
                }),
            );
        }
        let header = episode.map_or(String::new(), |e| {
            format!(
                "{} episode {id}: pid {} ({}) thread {tid} ({}) at >= {}% of a CPU since {}",
                self.clock.wall(now),
                e.start.pid,
                e.process,
                e.thread,
                self.options.threshold_pct,
                self.clock.wall(e.start.hot_since_ns)
            )
        });
        self.write(log, &event, || {
            format!("{header}\n{}", report::render_text(&report).trim_end())
        });
        if let Some(thread) = report
            .spinning
            .iter()
            .chain(&report.busiest)
            .find(|t| t.tid == tid)
        {
            self.metrics.episode(thread.classification.kind.as_str());
        }
        let current = self.collector.stack_counts();
        self.profiles.bank(&current, |t| t == tid);
        self.collector.forget_thread(tid);
        probe.forget_syscalls(tid)?;
        Ok(())
    }

    fn end(&mut self, log: &mut EventLog, end: &EpisodeEnd) {
        let open = self.open.remove(&end.id);
        let (thread, process) =
            open.map_or((String::new(), String::new()), |o| (o.thread, o.process));
        let event = serde_json::json!({
            "event": "episode_end",
            "episode": {
                "id": end.id,
                "tid": end.tid,
                "pid": end.pid,
                "thread": thread,
                "process": process,
                "hot_since": self.clock.wall(end.hot_since_ns),
                "ended_at": self.clock.wall(end.ended_ns),
                "duration_secs": round1(end.duration_ns() as f64 / 1e9),
                "cause": end.cause.name(),
            },
        });
        self.write(log, &event, || {
            format!(
                "{} episode {} ended ({}): pid {} ({process}) thread {} ({thread}) was hot for {:.1} s",
                self.clock.wall(end.ended_ns),
                end.id,
                end.cause.name(),
                end.pid,
                end.tid,
                end.duration_ns() as f64 / 1e9
            )
        });
    }

    /// The kernel records the threads being sampled, and samples only while there are any.
    fn sync_hot(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        let hot = self.heat.sampling();
        if hot != self.hot {
            let dropped = probe.set_hot_threads(&hot)?;
            if dropped > 0 {
                crate::diag!("probe: warning: {dropped} hot threads did not fit in the kernel's map and are not sampled");
            }
            self.hot = hot;
        }
        if self.hot.is_empty() {
            if self.options.profile_hz == 0 {
                probe.detach_sampling();
            }
            probe.detach_syscall_counter();
            // Every sampled thread was reported: their counts are spent.
            probe.clear_syscall_counts()?;
        } else {
            probe.attach_sampling(sampler_hz(self.options))?;
            if !probe.syscall_counter_attached() {
                probe.attach_syscall_counter()?;
            }
        }
        Ok(())
    }

    /// Deletes the kernel entries of threads that exited (a tick after their exit mark)
    /// and, now and then, of threads that are gone without one; drops what is kept of
    /// processes that are gone.
    fn forget_exited(
        &mut self,
        probe: &mut Probe,
        aggregates: &Aggregates,
        exited: Vec<u32>,
    ) -> anyhow::Result<()> {
        let mut gone = std::mem::take(&mut self.exited_last_tick);
        self.exited_last_tick = exited
            .into_iter()
            .filter(|tid| !gone.contains(tid))
            .collect();
        if self.last_sweep.elapsed() >= SWEEP {
            self.last_sweep = Instant::now();
            gone.extend(
                aggregates
                    .threads
                    .iter()
                    .filter(|(tid, stats)| !proc::exists(stats.tgid, Some(*tid)))
                    .map(|(tid, _)| *tid),
            );
            gone.sort_unstable();
            gone.dedup();
        }
        if gone.is_empty() {
            return Ok(());
        }
        probe.forget_threads(&gone)?;
        for (tid, stats) in &aggregates.threads {
            if gone.contains(tid) && *tid == stats.tgid {
                self.collector.forget_process(stats.tgid);
            }
        }
        Ok(())
    }

    fn heartbeat(&self, probe: &Probe, log: &mut EventLog) {
        let own = own_usage();
        let loss = &self.loss;
        let event = serde_json::json!({
            "event": "heartbeat",
            "at": self.clock.wall(monotonic_ns()),
            "uptime_secs": round1(self.started.elapsed().as_secs_f64()),
            "cpu_secs": own.map(|u| round3(u.0)),
            "rss_kib": own.map(|u| u.1),
            "thread_map_entries": self.thread_entries,
            "thread_map_capacity": MAX_THREADS,
            "threads_tracked": self.heat.tracked_threads(),
            "episodes_open": self.heat.open_episodes(),
            "samples": loss.samples,
            "samples_lost": loss.samples_lost,
            "threads_dropped": loss.threads_dropped,
            "syscalls_dropped": loss.syscalls_dropped,
            "events_written": log.written,
            "events_lost": log.failed,
            "last_output_error": log.last_error,
            "profiles_written": self.profiles_written,
            "profiles_lost": self.profiles_lost,
            "last_profile_error": self.last_profile_error,
            "sampling": probe.sampling(),
        });
        let latest_error = log
            .last_error
            .as_deref()
            .map_or(String::new(), |e| format!(" (latest: {e})"));
        let events_lost = log.failed;
        self.write(log, &event, || {
            format!(
                "{} heartbeat: {} episodes open, {} threads in the kernel's map, {} samples \
                 lost, {events_lost} events lost{latest_error}",
                self.clock.wall(monotonic_ns()),
                self.heat.open_episodes(),
                self.thread_entries,
                loss.samples_lost,
            )
        });
    }

    /// Reports what is being sampled, ends what is open, says why watching stopped.
    fn stop(
        &mut self,
        probe: &mut Probe,
        log: &mut EventLog,
        stopped_by: Option<String>,
    ) -> anyhow::Result<()> {
        let now = monotonic_ns();
        if probe.sampling() {
            self.collector.drain(probe)?;
        }
        let aggregates = probe.read_aggregates()?;
        let totals = thread_totals(&aggregates, now);
        let reason = stopped_by.as_deref().unwrap_or("--duration");
        for change in self.heat.close_all() {
            match change {
                Change::Sampled { id, .. } => {
                    self.report(
                        probe,
                        log,
                        id,
                        &aggregates,
                        &totals,
                        now,
                        false,
                        Some(reason),
                    )?;
                }
                Change::Ended(end) => self.end(log, &end),
                Change::Started(_) => {}
            }
        }
        for (samples, pending) in self.profiles.take_all(&self.collector.stack_counts()) {
            let profile = self.profile_bytes(probe, samples, &pending, now, Some(reason));
            self.deliver(pending.to, profile, now);
        }
        let own = own_usage();
        // What the kernel programs cost since they were loaded; only when the kernel kept
        // their run time (see `Probe::run_time_counted`), so a zero is never shown as a cost.
        let kernel_programs = probe.run_time_counted().then(|| probe.program_stats());
        let event = serde_json::json!({
            "event": "watch_stop",
            "at": self.clock.wall(now),
            "stopped_by": reason,
            "uptime_secs": round3(self.started.elapsed().as_secs_f64()),
            "cpu_secs": own.map(|u| round3(u.0)),
            "rss_kib": own.map(|u| u.1),
            "kernel_programs": kernel_programs,
            "events_written": log.written,
            "events_lost": log.failed,
        });
        self.write(log, &event, || {
            format!("{} stopped by {reason}", self.clock.wall(now))
        });
        Ok(())
    }

    fn write(&self, log: &mut EventLog, event: &serde_json::Value, text: impl FnOnce() -> String) {
        match self.options.format {
            EventFormat::Json => log.write(&event.to_string()),
            EventFormat::Text => log.write(&text()),
        }
    }
}

/// Every thread's CPU time so far: completed runs from its stats, plus the run in progress
/// on each CPU (a thread spinning alone on a CPU may not be switched out for seconds).
fn thread_totals(aggregates: &Aggregates, now: u64) -> Vec<ThreadTotal> {
    let mut totals: BTreeMap<u32, ThreadTotal> = aggregates
        .threads
        .iter()
        .map(|(tid, stats)| {
            let total = ThreadTotal {
                tid: *tid,
                pid: stats.tgid,
                on_cpu_ns: stats.on_cpu_ns,
            };
            (*tid, total)
        })
        .collect();
    for cpu in &aggregates.cpus {
        if cpu.running_tid == 0 {
            continue;
        }
        let since = cpu.last_switch_ns.max(aggregates.window_start_ns);
        let total = totals.entry(cpu.running_tid).or_insert(ThreadTotal {
            tid: cpu.running_tid,
            pid: cpu.running_tgid,
            on_cpu_ns: 0,
        });
        total.on_cpu_ns += now.saturating_sub(since);
    }
    totals.into_values().collect()
}

fn total_of(totals: &[ThreadTotal], tid: u32) -> u64 {
    totals
        .iter()
        .find(|total| total.tid == tid)
        .map_or(0, |total| total.on_cpu_ns)
}

/// Thread `tid`'s syscall counts so far: the map's and those pending in the CPUs' caches.
fn syscalls_of(aggregates: &Aggregates, tid: u32) -> BTreeMap<u32, u64> {
    let mut counts = BTreeMap::new();
    for (key, count) in &aggregates.syscalls {
        if key.tid == tid {
            *counts.entry(key.nr).or_insert(0) += count;
        }
    }
    for cache in &aggregates.syscall_caches {
        for (key, pending) in cache.key.iter().zip(cache.pending) {
            let (cached_tid, nr) = probe_common::SyscallCache::split(*key);
            if cached_tid == tid && pending > 0 {
                *counts.entry(nr).or_insert(0) += pending;
            }
        }
    }
    counts
}

fn subtract(now: &BTreeMap<u32, u64>, before: &BTreeMap<u32, u64>) -> BTreeMap<u32, u64> {
    now.iter()
        .map(|(nr, count)| {
            (
                *nr,
                count.saturating_sub(before.get(nr).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, count)| *count > 0)
        .collect()
}

fn loss_since(now: &LossCounters, before: &LossCounters) -> LossCounters {
    LossCounters {
        samples: now.samples.saturating_sub(before.samples),
        samples_lost: now.samples_lost.saturating_sub(before.samples_lost),
        threads_dropped: now.threads_dropped.saturating_sub(before.threads_dropped),
        syscalls_dropped: now.syscalls_dropped.saturating_sub(before.syscalls_dropped),
        targets_dropped: now.targets_dropped.saturating_sub(before.targets_dropped),
        off_cpu_dropped: now.off_cpu_dropped.saturating_sub(before.off_cpu_dropped),
        syscall_args_lost: now
            .syscall_args_lost
            .saturating_sub(before.syscall_args_lost),
    }
}

/// probe's own CPU seconds (user + system) and resident set in KiB.
fn own_usage() -> Option<(f64, u64)> {
    // SAFETY: rusage is plain integers, for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_SELF always exists.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((cpu, rss))
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// CLOCK_MONOTONIC times as wall-clock timestamps (RFC 3339, UTC), through one pair of
/// readings taken at start.
struct Clock {
    monotonic_ns: u64,
    wall: SystemTime,
}

impl Clock {
    fn new(monotonic_ns: u64) -> Self {
        let now = crate::loader::monotonic_ns();
        let wall = SystemTime::now() - Duration::from_nanos(now.saturating_sub(monotonic_ns));
        Self { monotonic_ns, wall }
    }

    fn wall(&self, monotonic_ns: u64) -> String {
        humantime::format_rfc3339_millis(self.system_time(monotonic_ns)).to_string()
    }

    fn system_time(&self, monotonic_ns: u64) -> SystemTime {
        if monotonic_ns >= self.monotonic_ns {
            self.wall + Duration::from_nanos(monotonic_ns - self.monotonic_ns)
        } else {
            self.wall - Duration::from_nanos(self.monotonic_ns - monotonic_ns)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_common::{CpuState, SyscallCache, SyscallKey, ThreadStats};

    fn stats(tgid: u32, on_cpu_ns: u64) -> ThreadStats {
        ThreadStats {
            tgid,
            on_cpu_ns,
            ..ThreadStats::default()
        }
    }

    #[test]
    fn a_run_in_progress_counts_toward_its_thread() {
        let aggregates = Aggregates {
            threads: vec![(11, stats(10, 5_000)), (12, stats(10, 7_000))],
            cpus: vec![
                CpuState {
                    last_switch_ns: 1_000,
                    running_tid: 12,
                    running_tgid: 10,
                    ..CpuState::default()
                },
                // A thread never switched out yet: only the CPU state knows it.
                CpuState {
                    last_switch_ns: 1_500,
                    running_tid: 20,
                    running_tgid: 20,
                    ..CpuState::default()
                },
                CpuState::default(),
            ],
            window_start_ns: 500,
            ..Aggregates::default()
        };
        let totals = thread_totals(&aggregates, 3_000);
        let by_tid: Vec<(u32, u32, u64)> =
            totals.iter().map(|t| (t.tid, t.pid, t.on_cpu_ns)).collect();
        assert_eq!(by_tid, [(11, 10, 5_000), (12, 10, 9_000), (20, 20, 1_500)]);
    }

    #[test]
    fn syscalls_of_a_thread_include_its_pending_cache_entries() {
        let mut cache = SyscallCache::default();
        cache.key[0] = SyscallCache::key(7, 39);
        cache.pending[0] = 5;
        cache.key[1] = SyscallCache::key(8, 39);
        cache.pending[1] = 9;
        let key = |tid, nr, cpu| SyscallKey {
            tid,
            nr,
            cpu,
            _pad: 0,
        };
        let aggregates = Aggregates {
            syscalls: vec![(key(7, 39, 0), 100), (key(7, 39, 1), 20), (key(7, 0, 0), 3)],
            syscall_caches: vec![cache],
            ..Aggregates::default()
        };
        let counts = syscalls_of(&aggregates, 7);
        assert_eq!(counts, BTreeMap::from([(0, 3), (39, 125)]));
        let before = BTreeMap::from([(39, 25), (0, 3)]);
        assert_eq!(subtract(&counts, &before), BTreeMap::from([(39, 100)]));
    }

    #[test]
    fn wall_times_follow_the_monotonic_clock() {
        let clock = Clock {
            monotonic_ns: 10_000_000_000,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        };
        assert_eq!(clock.wall(10_000_000_000), "2027-01-15T08:00:00.000Z");
        assert_eq!(clock.wall(11_500_000_000), "2027-01-15T08:00:01.500Z");
        assert_eq!(clock.wall(9_000_000_000), "2027-01-15T07:59:59.000Z");
    }
}
