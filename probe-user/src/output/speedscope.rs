//! speedscope's JSON file format (<https://www.speedscope.app/file-format-schema.json>):
//! a table of frames shared by all profiles, and `sampled` profiles whose samples are
//! stacks of frame indices, outermost first, with weights.
//!
//! With `per_thread`, each thread is a profile of its own (speedscope lists them in its
//! thread menu and opens the busiest one); otherwise one profile holds every thread.
//! Weights are nanoseconds: on-CPU samples weigh their sampling periods, off-CPU ones
//! their blocked time, under an `[off-cpu]` root frame, so both are time in one view.
//! Frames are one per label, so speedscope merges them as the flame graph does; each
//! carries its source file when known, but no line, which differs from sample to sample.

use std::collections::HashMap;
use std::io::{self, Write};

use serde::Serialize;

use super::{frame_labels, one_line, sample_path, thread_label, OutputOptions};
use crate::model::{Profile, StackId, ThreadProfile};

const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct File {
    #[serde(rename = "$schema")]
    schema: &'static str,
    exporter: &'static str,
    name: String,
    active_profile_index: usize,
    shared: Shared,
    profiles: Vec<SampledProfile>,
}

#[derive(Serialize)]
struct Shared {
    frames: Vec<Frame>,
}

#[derive(Serialize)]
struct Frame {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SampledProfile {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    unit: &'static str,
    start_value: u64,
    end_value: u64,
    samples: Vec<Vec<usize>>,
    weights: Vec<u64>,
}

/// The shared frame table being built: one frame per label.
struct Frames<'a> {
    labels: &'a [String],
    index: HashMap<&'a str, usize>,
    frames: Vec<Frame>,
}

impl<'a> Frames<'a> {
    fn new(labels: &'a [String]) -> Self {
        Frames {
            labels,
            index: HashMap::new(),
            frames: Vec::new(),
        }
    }

    /// The index of the frame labelled `label` (one of `labels` or a marker), added with
    /// `file` when new.
    fn index_of(&mut self, label: &'a str, file: Option<&str>) -> usize {
        if let Some(&index) = self.index.get(label) {
            return index;
        }
        self.frames.push(Frame {
            name: label.to_owned(),
            file: file.map(str::to_owned),
        });
        self.index.insert(label, self.frames.len() - 1);
        self.frames.len() - 1
    }
}

/// Writes `profile` as a speedscope JSON file.
pub fn write_speedscope(
    profile: &Profile,
    options: &OutputOptions,
    out: &mut dyn Write,
) -> io::Result<()> {
    let labels = frame_labels(profile);
    let mut frames = Frames::new(&labels);
    let profiles = if options.per_thread {
        let threads = profile.threads.iter().filter(|t| !t.samples.is_empty());
        let profiles = threads.map(|t| sampled(profile, &mut frames, &thread_label(t), &[t]));
        profiles.collect()
    } else {
        let threads: Vec<&ThreadProfile> = profile.threads.iter().collect();
        vec![sampled(
            profile,
            &mut frames,
            &one_line(&options.title),
            &threads,
        )]
    };
    let file = File {
        schema: SCHEMA,
        exporter: "probe",
        name: one_line(&options.title),
        active_profile_index: busiest(&profiles),
        shared: Shared {
            frames: frames.frames,
        },
        profiles,
    };
    serde_json::to_writer(&mut *out, &file)?;
    out.write_all(b"\n")
}

/// A profile of the samples of `threads`.
fn sampled<'a>(
    profile: &'a Profile,
    frames: &mut Frames<'a>,
    name: &str,
    threads: &[&'a ThreadProfile],
) -> SampledProfile {
    let mut samples = Vec::new();
    let mut weights = Vec::new();
    for sample in threads.iter().flat_map(|thread| &thread.samples) {
        let stack = sample_path(profile, frames.labels, None, sample);
        let files = stack_files(profile, sample.stack, stack.len());
        let indices = stack.iter().zip(files);
        samples.push(
            indices
                .map(|(label, file)| frames.index_of(label, file))
                .collect(),
        );
        weights.push(sample.weight_ns);
    }
    SampledProfile {
        kind: "sampled",
        name: name.to_owned(),
        unit: "nanoseconds",
        start_value: 0,
        end_value: weights.iter().sum(),
        samples,
        weights,
    }
}

/// The source file of each frame of a sample path of `len` labels (outermost first, so
/// any marker frames, which have no file, come first).
fn stack_files(
    profile: &Profile,
    stack: StackId,
    len: usize,
) -> impl Iterator<Item = Option<&str>> {
    let mut files: Vec<Option<&str>> = profile
        .stack_frames(stack)
        .map(|frame| frame.file.as_deref())
        .collect();
    files.reverse();
    let markers = len.saturating_sub(files.len());
    std::iter::repeat_n(None, markers).chain(files)
}

/// The index of the profile with the most weight, which speedscope opens first.
fn busiest(profiles: &[SampledProfile]) -> usize {
    let weights = profiles.iter().map(|p| p.end_value).enumerate();
    weights
        .max_by_key(|&(index, weight)| (weight, std::cmp::Reverse(index)))
        .map_or(0, |(index, _)| index)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::write_speedscope;
    use crate::output::{fixture, OutputOptions};

    fn speedscope(per_thread: bool) -> Value {
        let options = OutputOptions {
            per_thread,
            title: "python3 (pid 1000)".into(),
        };
        let mut out = Vec::new();
        write_speedscope(&fixture::profile(), &options, &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    /// The frame names of every sample of profile `index`, outermost first, and weights.
    fn stacks(file: &Value, index: usize) -> Vec<(Vec<String>, u64)> {
        let frames = file["shared"]["frames"].as_array().unwrap();
        let profile = &file["profiles"][index];
        let samples = profile["samples"].as_array().unwrap();
        let weights = profile["weights"].as_array().unwrap();
        assert_eq!(samples.len(), weights.len());
        samples
            .iter()
            .zip(weights)
            .map(|(stack, weight)| {
                let names = stack.as_array().unwrap().iter().map(|i| {
                    let frame = &frames[i.as_u64().unwrap() as usize];
                    frame["name"].as_str().unwrap().to_owned()
                });
                (names.collect(), weight.as_u64().unwrap())
            })
            .collect()
    }

    #[test]
    fn one_profile_per_thread_with_shared_frames() {
        let file = speedscope(true);
        assert_eq!(
            file["$schema"],
            "https://www.speedscope.app/file-format-schema.json"
        );
        assert_eq!(file["exporter"], "probe");
        assert_eq!(file["name"], "python3 (pid 1000)");
        // The worker thread has the most time, blocked time included.
        assert_eq!(file["activeProfileIndex"], 1);
        let profiles = file["profiles"].as_array().unwrap();
        let names: Vec<&str> = profiles
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["python3 [py \"MainThread\"] tid 1000", "worker tid 1001"]
        );
        for profile in profiles {
            assert_eq!(profile["type"], "sampled");
            assert_eq!(profile["unit"], "nanoseconds");
            assert_eq!(profile["startValue"], 0);
        }
        assert_eq!(profiles[0]["endValue"], 400_000_000);
        assert_eq!(profiles[1]["endValue"], 450_000_000);
    }

    #[test]
    fn stacks_are_outermost_first_with_markers_and_files() {
        let file = speedscope(true);
        let worker = stacks(&file, 1);
        assert_eq!(worker[0].0, ["start_thread", "hash_all", "hash_step"]);
        assert_eq!(worker[0].1, 150_000_000);
        assert_eq!(
            worker[2],
            (
                vec![
                    "[off-cpu]".into(),
                    "start_thread".into(),
                    "futex_wait".into(),
                    "schedule_[k]".into()
                ],
                250_000_000
            )
        );
        let main = stacks(&file, 0);
        assert_eq!(main[1].0[0], "[truncated]");
        let frames = file["shared"]["frames"].as_array().unwrap();
        let find = |name: &str| frames.iter().find(|f| f["name"] == name).unwrap();
        assert_eq!(find("hash_all")["file"], "work.c");
        assert_eq!(
            find("find_zip (find_zip.py)_[py]")["file"],
            "/work/app/find_zip.py"
        );
        assert!(find("[truncated]").get("file").is_none());
        let names: Vec<&Value> = frames.iter().map(|f| &f["name"]).collect();
        let unique: std::collections::HashSet<String> =
            names.iter().map(|n| n.to_string()).collect();
        assert_eq!(unique.len(), names.len(), "one frame per label");
    }

    #[test]
    fn without_per_thread_one_profile_holds_all() {
        let file = speedscope(false);
        let profiles = file["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0]["name"], "python3 (pid 1000)");
        assert_eq!(profiles[0]["endValue"], 850_000_000);
        assert_eq!(stacks(&file, 0).len(), 5);
    }
}
