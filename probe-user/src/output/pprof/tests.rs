use std::io::Read as _;

use flate2::read::GzDecoder;
use prost::Message as _;

use super::proto::{Location, Profile, Sample};
use super::write_pprof;
use crate::output::{fixture, OutputOptions};

fn decode() -> Profile {
    let options = OutputOptions {
        per_thread: false,
        title: "python3 (pid 1000)".into(),
    };
    let mut gzipped = Vec::new();
    write_pprof(&fixture::profile(), &options, &mut gzipped).unwrap();
    let mut bytes = Vec::new();
    GzDecoder::new(gzipped.as_slice())
        .read_to_end(&mut bytes)
        .unwrap();
    Profile::decode(bytes.as_slice()).unwrap()
}

fn string(profile: &Profile, index: i64) -> &str {
    &profile.string_table[index as usize]
}

fn location(profile: &Profile, id: u64) -> &Location {
    &profile.location[id as usize - 1]
}

/// The function names of each line of each location of `sample`, leaf first.
fn names(profile: &Profile, sample: &Sample) -> Vec<Vec<String>> {
    let name = |function_id: u64| {
        let function = &profile.function[function_id as usize - 1];
        assert_eq!(function.id, function_id);
        string(profile, function.name).to_owned()
    };
    let lines = |id: u64| {
        location(profile, id)
            .line
            .iter()
            .map(|l| name(l.function_id))
    };
    sample
        .location_id
        .iter()
        .map(|&id| lines(id).collect())
        .collect()
}

fn label<'p>(profile: &'p Profile, sample: &Sample, key: &str) -> (i64, &'p str) {
    let label = sample
        .label
        .iter()
        .find(|l| string(profile, l.key) == key)
        .unwrap_or_else(|| panic!("no label {key}"));
    (label.num, string(profile, label.str))
}

#[test]
fn header_has_types_period_and_duration() {
    let profile = decode();
    assert_eq!(profile.string_table[0], "");
    let types: Vec<String> = profile
        .sample_type
        .iter()
        .map(|t| {
            format!(
                "{}/{}",
                string(&profile, t.r#type),
                string(&profile, t.unit)
            )
        })
        .collect();
    assert_eq!(
        types,
        ["samples/count", "cpu/nanoseconds", "off-cpu/nanoseconds"]
    );
    let period_type = profile.period_type.unwrap();
    assert_eq!(string(&profile, period_type.r#type), "cpu");
    assert_eq!(string(&profile, period_type.unit), "nanoseconds");
    assert_eq!(profile.period, 10_000_000);
    assert_eq!(profile.duration_nanos, 1_000_000_000);
    assert!(profile.time_nanos > 1_700_000_000_000_000_000);
    assert_eq!(string(&profile, profile.default_sample_type), "cpu");
    let comments: Vec<&str> = profile
        .comment
        .iter()
        .map(|&c| string(&profile, c))
        .collect();
    assert_eq!(
        comments,
        ["probe: python3 (pid 1000)", "60 samples at 100 Hz, 3 lost"]
    );
}

#[test]
fn inlined_frames_share_one_location() {
    let profile = decode();
    let sample = &profile.sample[2];
    assert_eq!(sample.value, [15, 150_000_000, 0]);
    assert_eq!(
        names(&profile, sample),
        [vec!["hash_step", "hash_all"], vec!["start_thread"]]
    );
    let inlined = location(&profile, sample.location_id[0]);
    let lines: Vec<i64> = inlined.line.iter().map(|l| l.line).collect();
    assert_eq!(lines, [10, 42]);
    let function = &profile.function[inlined.line[0].function_id as usize - 1];
    assert_eq!(string(&profile, function.filename), "work.c");
}

#[test]
fn mappings_carry_paths_and_build_ids() {
    let profile = decode();
    let by_file = |file: &str| {
        profile
            .mapping
            .iter()
            .find(|m| string(&profile, m.filename) == file)
            .unwrap_or_else(|| panic!("no mapping {file}"))
    };
    let libc = by_file("/usr/lib/x86_64-linux-gnu/libc.so.6");
    assert_eq!(string(&profile, libc.build_id), "c0ffee");
    assert!(libc.has_functions && libc.has_inline_frames);
    assert_eq!(string(&profile, by_file("[kernel]").build_id), "");
    assert_eq!(profile.mapping.len(), 3, "{:?}", profile.mapping);
    let start = location(&profile, profile.sample[3].location_id[1]);
    assert_eq!(profile.mapping[start.mapping_id as usize - 1].id, libc.id);
}

#[test]
fn python_and_truncated_frames_have_no_mapping() {
    let profile = decode();
    let sample = &profile.sample[1];
    let names = names(&profile, sample);
    assert_eq!(names.last().unwrap(), &["[truncated]"]);
    assert_eq!(names[0], ["is_zipfile (zipfile/__init__.py)_[py]"]);
    for &id in &sample.location_id {
        assert_eq!(location(&profile, id).mapping_id, 0);
    }
    let line = &location(&profile, sample.location_id[0]).line[0];
    assert_eq!(line.line, 230);
}

#[test]
fn off_cpu_samples_have_their_own_value_and_thread_labels() {
    let profile = decode();
    let sample = &profile.sample[4];
    assert_eq!(sample.value, [0, 0, 250_000_000]);
    assert_eq!(names(&profile, sample)[0], ["schedule_[k]"]);
    assert_eq!(label(&profile, sample, "pid").0, 1000);
    assert_eq!(label(&profile, sample, "thread").0, 1001);
    assert_eq!(label(&profile, sample, "thread_name").1, "worker tid 1001");
    // It blocked in a syscall: the label says which; samples in none have no such label.
    assert_eq!(label(&profile, sample, "syscall").1, "futex");
    let on_cpu = &profile.sample[0];
    assert_eq!(on_cpu.value, [30, 300_000_000, 0]);
    assert!(on_cpu
        .label
        .iter()
        .all(|l| string(&profile, l.key) != "syscall"));
}
