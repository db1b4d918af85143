//! pprof's profile format: a gzipped `perftools.profiles.Profile` protobuf, what
//! `go tool pprof`, Parca, Pyroscope and Grafana read.
//!
//! Sample values are `samples/count` and `cpu/nanoseconds` for on-CPU samples, and, when
//! the profile has off-CPU samples, `off-cpu/nanoseconds` in a third column (zero in the
//! other two, so no view mixes running and blocked time). Every module is a mapping with
//! its build id; every frame is a line of a location, inlined frames (which share their
//! caller's address) lines of their caller's location, innermost first. Samples carry
//! `pid` and `thread` (tid) numeric labels and a `thread_name` one (the root label the
//! flame graphs use), and a `syscall` one when the thread was in a syscall. Function names
//! are the labels the other formats use.

mod proto;
mod table;

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message as _;

use self::proto::{Label, Sample};
use self::table::Tables;
use super::{one_line, period_ns, samples, thread_label, OutputOptions};
use crate::model::{Profile, SampleKind, StackSamples, ThreadProfile};

/// Writes `profile` as a gzipped pprof protobuf.
pub fn write_pprof(
    profile: &Profile,
    options: &OutputOptions,
    out: &mut dyn Write,
) -> io::Result<()> {
    let bytes = encode(profile, options).encode_to_vec();
    let mut gzip = GzEncoder::new(out, Compression::default());
    gzip.write_all(&bytes)?;
    gzip.finish()?;
    Ok(())
}

/// The protobuf message of `profile`.
fn encode(profile: &Profile, options: &OutputOptions) -> proto::Profile {
    let mut tables = Tables::new(profile);
    let off_cpu = samples(profile).any(|(_, s)| s.kind == SampleKind::OffCpu);
    let mut sample_type = vec![
        tables.value_type("samples", "count"),
        tables.value_type("cpu", "nanoseconds"),
    ];
    if off_cpu {
        sample_type.push(tables.value_type("off-cpu", "nanoseconds"));
    }
    let sample = samples(profile)
        .map(|(thread, sample)| encode_sample(&mut tables, thread, sample, off_cpu))
        .collect();
    let period_type = Some(tables.value_type("cpu", "nanoseconds"));
    let default_sample_type = tables.string("cpu");
    let comment = comments(profile, options)
        .iter()
        .map(|c| tables.string(c))
        .collect();
    let (mapping, location, function, string_table) = tables.finish();
    proto::Profile {
        sample_type,
        sample,
        mapping,
        location,
        function,
        string_table,
        time_nanos: start_time_ns(profile),
        duration_nanos: i64::try_from(profile.window.duration_ns).unwrap_or(i64::MAX),
        period_type,
        period: i64::try_from(period_ns(profile)).unwrap_or(i64::MAX),
        comment,
        default_sample_type,
        ..proto::Profile::default()
    }
}

fn encode_sample(
    tables: &mut Tables,
    thread: &ThreadProfile,
    sample: &StackSamples,
    off_cpu: bool,
) -> Sample {
    let count = i64::try_from(sample.count).unwrap_or(i64::MAX);
    let weight = i64::try_from(sample.weight_ns).unwrap_or(i64::MAX);
    let mut value = match sample.kind {
        SampleKind::OnCpu => vec![count, weight],
        SampleKind::OffCpu => vec![0, 0, weight],
    };
    if off_cpu {
        value.resize(3, 0);
    }
    let mut label = vec![
        tables.num_label("pid", thread.pid),
        tables.num_label("thread", thread.tid),
        Label {
            key: tables.string("thread_name"),
            str: tables.string(&thread_label(thread)),
            ..Label::default()
        },
    ];
    // The syscall the thread was in, from its saved registers: `go tool pprof -tags`
    // breaks the samples down by it, `-tagfocus=syscall=openat` keeps one.
    if let Some(syscall) = &sample.syscall {
        label.push(Label {
            key: tables.string("syscall"),
            str: tables.string(syscall),
            ..Label::default()
        });
    }
    Sample {
        location_id: tables.stack_locations(sample.stack),
        value,
        label,
    }
}

/// What was profiled, and what was lost: `go tool pprof` prints comments with `-comments`.
fn comments(profile: &Profile, options: &OutputOptions) -> Vec<String> {
    let mut comments = vec![format!("probe: {}", one_line(&options.title))];
    let loss = &profile.loss;
    comments.push(format!(
        "{} samples at {} Hz, {} lost{}",
        loss.samples,
        profile.frequency_hz,
        loss.samples_lost,
        if profile.window.interrupted {
            ", window interrupted"
        } else {
            ""
        }
    ));
    comments
}

/// When the window opened, as nanoseconds since the epoch. The profile does not record
/// it, so it is the time of writing less the window's length: later than the truth by
/// however long symbolization took.
fn start_time_ns(profile: &Profile) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = i64::try_from(now.as_nanos()).unwrap_or(i64::MAX);
    now.saturating_sub(i64::try_from(profile.window.duration_ns).unwrap_or(0))
}

#[cfg(test)]
mod tests;
