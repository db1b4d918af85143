//! The modules a profile's frames name, described for outputs that list them (pprof's
//! mappings): path and GNU build-id of each file, read from the file held open since the
//! sample, so a binary replaced on disk is described as it was.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::elf::ElfFile;
use crate::model::{Frame, FrameKind, ModuleInfo};
use crate::procmaps::{Backing, Module, ProcessMaps};

/// One [`ModuleInfo`] per module name that `frames` use. Where two files share a name
/// (two `libc.so.6` in two containers), the first one found describes it.
pub(super) fn describe(
    frames: &[Frame],
    process_maps: &BTreeMap<u32, ProcessMaps>,
) -> BTreeMap<String, ModuleInfo> {
    let mut files: HashMap<&str, &Arc<Module>> = HashMap::new();
    for module in process_maps.values().flat_map(ProcessMaps::modules) {
        files.entry(module.name()).or_insert(module);
    }
    let mut modules = BTreeMap::new();
    for frame in frames {
        if modules.contains_key(&frame.module) {
            continue;
        }
        let found = match frame.kind {
            FrameKind::User => files.get(frame.module.as_str()).copied(),
            FrameKind::Kernel | FrameKind::Python => None,
        };
        let info = ModuleInfo {
            name: frame.module.clone(),
            path: found.and_then(|m| m.path()).map(|path| path.to_string()),
            build_id: found.and_then(build_id),
        };
        modules.insert(frame.module.clone(), info);
    }
    modules
}

/// The build-id of a file-backed module, lowercase hex.
fn build_id(module: &Arc<Module>) -> Option<String> {
    let Backing::File(Ok(file)) = module.backing() else {
        return None;
    };
    let opened = std::fs::File::open(file.proc_path()).ok()?;
    let id = ElfFile::new(&opened).ok()?.build_id().ok()??;
    Some(id.iter().map(|byte| format!("{byte:02x}")).collect())
}
