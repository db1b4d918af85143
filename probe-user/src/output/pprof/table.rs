//! The interned tables of a pprof profile (strings, functions, locations, mappings),
//! filled as samples are encoded. Ids are 1-based: 0 means "none" in pprof.

use std::collections::HashMap;

use super::proto::{Function, Label, Line, Location, Mapping, ValueType};
use crate::model::{Frame, FrameId, FrameKind, Profile, StackId};
use crate::output::{frame_label, TRUNCATED_FRAME};

/// The tables and their lookup indices.
pub struct Tables<'a> {
    profile: &'a Profile,
    labels: Vec<String>,
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: Vec<Function>,
    function_ids: HashMap<(i64, i64), u64>,
    locations: Vec<Location>,
    location_ids: HashMap<Vec<FrameId>, u64>,
    mappings: Vec<Mapping>,
    mapping_ids: HashMap<&'a str, u64>,
    stacks: HashMap<StackId, Vec<u64>>,
    truncated: Option<u64>,
}

impl<'a> Tables<'a> {
    /// Empty tables for the samples of `profile`.
    pub fn new(profile: &'a Profile) -> Self {
        Tables {
            profile,
            labels: profile.frames.iter().map(frame_label).collect(),
            // pprof requires string 0 to be "".
            strings: vec![String::new()],
            string_ids: HashMap::from([(String::new(), 0)]),
            functions: Vec::new(),
            function_ids: HashMap::new(),
            locations: Vec::new(),
            location_ids: HashMap::new(),
            mappings: Vec::new(),
            mapping_ids: HashMap::new(),
            stacks: HashMap::new(),
            truncated: None,
        }
    }

    /// The tables, for the profile message.
    pub fn finish(self) -> (Vec<Mapping>, Vec<Location>, Vec<Function>, Vec<String>) {
        (self.mappings, self.locations, self.functions, self.strings)
    }

    /// The index of `text` in the string table.
    pub fn string(&mut self, text: &str) -> i64 {
        if let Some(&id) = self.string_ids.get(text) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(text.to_owned());
        self.string_ids.insert(text.to_owned(), id);
        id
    }

    /// A sample type such as `cpu/nanoseconds`.
    pub fn value_type(&mut self, kind: &str, unit: &str) -> ValueType {
        ValueType {
            r#type: self.string(kind),
            unit: self.string(unit),
        }
    }

    /// A numeric sample label such as `pid=1234`.
    pub fn num_label(&mut self, key: &str, num: u32) -> Label {
        Label {
            key: self.string(key),
            num: i64::from(num),
            ..Label::default()
        }
    }

    /// The location ids of `stack`, leaf first, with a `[truncated]` location outermost
    /// when the stack is truncated.
    pub fn stack_locations(&mut self, stack: StackId) -> Vec<u64> {
        if let Some(ids) = self.stacks.get(&stack) {
            return ids.clone();
        }
        let profile = self.profile;
        let frames = profile
            .stacks
            .get(stack as usize)
            .map(|s| s.frames.as_slice());
        let mut ids: Vec<u64> = inline_groups(profile, frames.unwrap_or_default())
            .into_iter()
            .map(|group| self.location(&group))
            .collect();
        if profile.stack_truncated(stack) {
            ids.push(self.truncated_location());
        }
        self.stacks.insert(stack, ids.clone());
        ids
    }

    /// The location of one address: `group` holds its frames, innermost first.
    fn location(&mut self, group: &[FrameId]) -> u64 {
        if let Some(&id) = self.location_ids.get(group) {
            return id;
        }
        let profile = self.profile;
        let frames: Vec<&Frame> = group
            .iter()
            .filter_map(|&id| profile.frames.get(id as usize))
            .collect();
        let line = group
            .iter()
            .zip(&frames)
            .map(|(&id, frame)| self.line(id, frame))
            .collect();
        let outer = frames.last().copied();
        let (mapping_id, address) = match outer {
            // Python frames are code objects, not addresses in a mapped file.
            Some(frame) if frame.kind != FrameKind::Python => {
                (self.mapping(&frame.module), frame.address)
            }
            _ => (0, 0),
        };
        self.push_location(group.to_vec(), mapping_id, address, line)
    }

    fn push_location(
        &mut self,
        key: Vec<FrameId>,
        mapping_id: u64,
        address: u64,
        line: Vec<Line>,
    ) -> u64 {
        let id = self.locations.len() as u64 + 1;
        self.locations.push(Location {
            id,
            mapping_id,
            address,
            line,
            is_folded: false,
        });
        self.location_ids.insert(key, id);
        id
    }

    fn truncated_location(&mut self) -> u64 {
        if let Some(id) = self.truncated {
            return id;
        }
        let function_id = self.function(TRUNCATED_FRAME, TRUNCATED_FRAME, None);
        let line = vec![Line {
            function_id,
            line: 0,
        }];
        // No frame has this key: frame groups are never empty.
        let id = self.push_location(Vec::new(), 0, 0, line);
        self.truncated = Some(id);
        id
    }

    fn line(&mut self, id: FrameId, frame: &Frame) -> Line {
        let label = self.labels.get(id as usize).cloned().unwrap_or_default();
        let system_name = frame.function.as_deref().unwrap_or(&label).to_owned();
        Line {
            function_id: self.function(&label, &system_name, frame.file.as_deref()),
            line: frame.line.map_or(0, i64::from),
        }
    }

    /// The function named `label` in `file`.
    fn function(&mut self, label: &str, system_name: &str, file: Option<&str>) -> u64 {
        let name = self.string(label);
        let filename = self.string(file.unwrap_or_default());
        if let Some(&id) = self.function_ids.get(&(name, filename)) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        let system_name = self.string(system_name);
        self.functions.push(Function {
            id,
            name,
            system_name,
            filename,
            start_line: 0,
        });
        self.function_ids.insert((name, filename), id);
        id
    }

    /// The mapping of the module named `module`, with its path and build id when known.
    fn mapping(&mut self, module: &'a str) -> u64 {
        if let Some(&id) = self.mapping_ids.get(module) {
            return id;
        }
        let info = self.profile.modules.get(module);
        let path = info.and_then(|m| m.path.as_deref()).unwrap_or(module);
        let build_id = info.and_then(|m| m.build_id.as_deref()).unwrap_or_default();
        let id = self.mappings.len() as u64 + 1;
        let mapping = Mapping {
            id,
            filename: self.string(path),
            build_id: self.string(build_id),
            // Symbolized already: tells pprof not to look for the binaries.
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
            ..Mapping::default()
        };
        self.mappings.push(mapping);
        self.mapping_ids.insert(module, id);
        id
    }
}

/// `frames` (innermost first) cut into one group per address: an inlined frame shares its
/// address with the next one, so each group is a run of inlined frames and the frame they
/// were inlined into.
fn inline_groups(profile: &Profile, frames: &[FrameId]) -> Vec<Vec<FrameId>> {
    let mut groups = Vec::new();
    let mut group = Vec::new();
    for &id in frames {
        group.push(id);
        let inlined = profile.frames.get(id as usize).is_some_and(|f| f.inlined);
        if !inlined {
            groups.push(std::mem::take(&mut group));
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}
