//! The one description of a CPython build that every reader uses: [`PyLayout`].
//!
//! CPython 3.8–3.12 take their row from the generated table in `layouts.rs` (see
//! `python/generate.sh`). From 3.13 on the interpreter publishes its own offsets in
//! `_Py_DebugOffsets` at the start of `_PyRuntime`, so [`PyLayout::from_debug_offsets`] reads
//! them from the target process; the generated 3.13 row only supplies what that structure
//! does not carry (enum values, bit positions, the non-ASCII string header size, dict keys
//! and values internals, `tp_dictoffset`, `ht_cached_keys`, the managed-dict positions, the
//! int encoding) and serves as a cross-check in the tests.

use super::layouts;
use super::memory::{MemoryError, ProcessMemory};

/// What a frame's instruction field holds, and so how it becomes a bytecode byte offset:
/// one definition, shared with the kernel walker.
pub use probe_common::PyInstrKind as InstrKind;

/// How a code object's line information is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LineTableKind {
    /// `co_lnotab` (3.8–3.9): (byte delta, signed line delta) pairs.
    Lnotab,
    /// `co_linetable` of 3.10: (byte delta, signed line delta or -128) pairs.
    Linetable310,
    /// `co_linetable` of 3.11+: the location table (varint-coded entries per code unit run).
    Locations,
}

/// Offsets (in bytes) and encodings of every CPython field the thread and frame walkers and
/// the code-object reader use. Fields that a version lacks are `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PyLayout {
    /// (major, minor) this layout describes.
    pub version: (u8, u8),
    /// `_PyRuntimeState.interpreters.head`.
    pub runtime_interpreters_head: u64,
    /// `PyInterpreterState.next`.
    pub interp_next: u64,
    /// `PyInterpreterState.threads.head` (`tstate_head` before 3.11).
    pub interp_threads_head: u64,
    /// `PyThreadState.next`.
    pub tstate_next: u64,
    /// `PyThreadState.thread_id` (the `pthread_t`).
    pub tstate_thread_id: u64,
    /// `PyThreadState.native_thread_id` (3.11+): the kernel thread id.
    pub tstate_native_thread_id: Option<u64>,
    /// The frame pointer in `PyThreadState`: `frame` (3.8–3.10), `cframe` (3.11–3.12),
    /// `current_frame` (3.13).
    pub tstate_frame: u64,
    /// `_PyCFrame.current_frame` (3.11–3.12): the second hop from `cframe`.
    pub cframe_current_frame: Option<u64>,
    /// `sizeof` the frame struct (`PyFrameObject` or `_PyInterpreterFrame`, without locals).
    pub frame_size: u64,
    /// `f_back` (3.8–3.10) / `previous` (3.11+).
    pub frame_previous: u64,
    /// `f_code` (3.8–3.12) / `f_executable` (3.13).
    pub frame_code: u64,
    /// `f_lasti` / `prev_instr` / `instr_ptr`; see [`PyLayout::instr`].
    pub frame_instr: u64,
    /// What [`PyLayout::frame_instr`] holds.
    pub instr: InstrKind,
    /// `_PyInterpreterFrame.owner` (3.11+), one byte.
    pub frame_owner: Option<u64>,
    /// `_PyInterpreterFrame.is_entry` (3.11 only), one byte.
    pub frame_is_entry: Option<u64>,
    /// `FRAME_OWNED_BY_CSTACK` (3.12+): the owner value of the shim frame that
    /// `_PyEval_EvalFrameDefault` pushes on entry. Such frames have no Python code.
    pub frame_owned_by_cstack: Option<u64>,
    /// `PyObject.ob_type`.
    pub object_type: u64,
    /// `PyCodeObject.co_filename` (str).
    pub code_filename: u64,
    /// `PyCodeObject.co_name` (str).
    pub code_name: u64,
    /// `PyCodeObject.co_qualname` (str, 3.11+).
    pub code_qualname: Option<u64>,
    /// `PyCodeObject.co_firstlineno` (int).
    pub code_firstlineno: u64,
    /// `co_lnotab` (3.8–3.9) or `co_linetable` (3.10+), a bytes object.
    pub code_linetable: u64,
    /// How [`PyLayout::code_linetable`] is encoded.
    pub line_table: LineTableKind,
    /// `PyCodeObject.co_code_adaptive` (3.11+): the bytecode, inline in the code object.
    pub code_code_adaptive: Option<u64>,
    /// `PyASCIIObject.length` (in code points).
    pub unicode_length: u64,
    /// `PyASCIIObject.state` (a 32-bit bit field).
    pub unicode_state: u64,
    /// `sizeof(PyASCIIObject)`: where a compact ASCII string's characters start.
    pub unicode_ascii_data: u64,
    /// `sizeof(PyCompactUnicodeObject)`: where a compact non-ASCII string's characters start.
    pub unicode_compact_data: u64,
    /// Bit position of `state.kind` (3 bits: 1, 2 or 4 bytes per character).
    pub unicode_kind_shift: u64,
    /// Bit position of `state.compact`.
    pub unicode_compact_bit: u64,
    /// Bit position of `state.ascii`.
    pub unicode_ascii_bit: u64,
    /// `PyVarObject.ob_size` of a bytes object.
    pub bytes_size: u64,
    /// `PyBytesObject.ob_sval`: the first byte.
    pub bytes_data: u64,
    /// `PyTypeObject.tp_flags` (an `unsigned long`).
    pub type_flags: u64,
    /// `PyTypeObject.tp_dictoffset`: where an instance's `__dict__` pointer sits (when > 0
    /// and the type does not manage the dict itself).
    pub type_dictoffset: u64,
    /// `PyHeapTypeObject.ht_cached_keys`: the keys shared by instances of a class.
    pub heaptype_cached_keys: u64,
    /// `Py_TPFLAGS_HEAPTYPE`: the type is a `PyHeapTypeObject` (a class).
    pub tpflags_heaptype: u64,
    /// `Py_TPFLAGS_LONG_SUBCLASS`: the object is an `int`.
    pub tpflags_long_subclass: u64,
    /// `Py_TPFLAGS_UNICODE_SUBCLASS`: the object is a `str`.
    pub tpflags_unicode_subclass: u64,
    /// `Py_TPFLAGS_DICT_SUBCLASS`: the object is a `dict`.
    pub tpflags_dict_subclass: u64,
    /// `Py_TPFLAGS_MANAGED_DICT` (3.11+): instances keep `__dict__` where
    /// [`PyLayout::managed_dict`] says, not at `tp_dictoffset`.
    pub tpflags_managed_dict: Option<u64>,
    /// Where a managed-dict instance keeps its attributes (3.11+).
    pub managed_dict: Option<ManagedDict>,
    /// `PyDictObject.ma_keys`.
    pub dict_keys: u64,
    /// `PyDictObject.ma_values`: non-null for a split table.
    pub dict_values: u64,
    /// `dk_size` (a `Py_ssize_t`, 3.8–3.10) or `dk_log2_size` (one byte, 3.11+).
    pub keys_size: u64,
    /// `dk_log2_index_bytes` (one byte, 3.11+); before 3.11 the index width follows from
    /// the size (1, 2, 4 or 8 bytes).
    pub keys_log2_index_bytes: Option<u64>,
    /// (`dk_kind` offset, `DICT_KEYS_GENERAL`) (3.11+): any other kind holds
    /// [`PyLayout::unicode_entry`]s.
    pub keys_kind: Option<(u64, u8)>,
    /// `dk_nentries`: entries used so far (including deleted ones).
    pub keys_nentries: u64,
    /// `dk_indices`: the index table; the entries follow it.
    pub keys_indices: u64,
    /// `sizeof(PyDictKeyEntry)` (hash, key, value).
    pub entry_size: u64,
    /// `PyDictKeyEntry.me_key`.
    pub entry_key: u64,
    /// `PyDictKeyEntry.me_value`.
    pub entry_value: u64,
    /// (`sizeof`, `me_key`, `me_value`) of `PyDictUnicodeEntry` (3.11+: str-only keys).
    pub unicode_entry: Option<(u64, u64, u64)>,
    /// `PyDictValues.values` (3.11+; 0 before, where `ma_values` is the array itself).
    pub values_values: u64,
    /// `PyDictValues.capacity` (one byte, 3.13).
    pub values_capacity: Option<u64>,
    /// `PyDictValues.valid` (one byte, 3.13): inline values still hold the attributes.
    pub values_valid: Option<u64>,
    /// `PyInterpreterState.modules` (3.8–3.11) / `imports.modules` (3.12+): `sys.modules`.
    pub interp_modules: u64,
    /// `ob_size` (3.8–3.11, signed digit count) or `long_value.lv_tag` (3.12+) of an int.
    pub long_size: u64,
    /// The first digit of an int (`ob_digit` / `long_value.ob_digit`).
    pub long_digits: u64,
    /// How `lv_tag` encodes sign and digit count (3.12+).
    pub long_tag: Option<LongTag>,
    /// `PyLong_SHIFT`: value bits per digit.
    pub long_shift: u64,
    /// `sizeof(digit)`.
    pub long_digit_size: u64,
}

/// Where an instance of a managed-dict class (3.11+) keeps its attributes. Offsets are
/// relative to the object's address; negative ones lie in the pre-header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManagedDict {
    /// 3.11: a `__dict__` pointer and, while it is null, a `PyDictValues` pointer whose
    /// keys are the class's `ht_cached_keys`.
    Pointers { dict: i64, values: i64 },
    /// 3.12: one word holding either a dict or, when `word & tag`, values at
    /// `word + values_adjust`.
    Tagged {
        dict_or_values: i64,
        tag: u64,
        values_adjust: i64,
    },
    /// 3.13: a `__dict__` pointer and, for classes with `inline_flag` in `tp_flags`,
    /// `PyDictValues` stored inline at `values`.
    Inline {
        dict: i64,
        values: i64,
        inline_flag: u64,
    },
}

/// The 3.12+ int header `lv_tag`: `sign = tag & sign_mask` (`negative`: below zero),
/// `digits = tag >> size_shift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongTag {
    pub size_shift: u64,
    pub sign_mask: u64,
    pub negative: u64,
}

/// Where each value probe reads sits inside `_Py_DebugOffsets` (generated for 3.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugOffsetsLayout {
    pub total_size: u64,
    pub version: u64,
    pub runtime_size: u64,
    pub runtime_interpreters_head: u64,
    pub interp_size: u64,
    pub interp_next: u64,
    pub interp_threads_head: u64,
    pub tstate_size: u64,
    pub tstate_next: u64,
    pub tstate_current_frame: u64,
    pub tstate_thread_id: u64,
    pub tstate_native_thread_id: u64,
    pub frame_size: u64,
    pub frame_previous: u64,
    pub frame_executable: u64,
    pub frame_instr_ptr: u64,
    pub frame_owner: u64,
    pub code_size: u64,
    pub code_filename: u64,
    pub code_name: u64,
    pub code_qualname: u64,
    pub code_linetable: u64,
    pub code_firstlineno: u64,
    pub code_co_code_adaptive: u64,
    pub object_type: u64,
    pub bytes_size: u64,
    pub bytes_ob_size: u64,
    pub bytes_ob_sval: u64,
    pub unicode_size: u64,
    pub unicode_state: u64,
    pub unicode_length: u64,
    pub unicode_asciiobject_size: u64,
    pub interp_imports_modules: u64,
    pub type_size: u64,
    pub type_tp_flags: u64,
    pub dict_size: u64,
    pub dict_ma_keys: u64,
    pub dict_ma_values: u64,
    pub long_size: u64,
    pub long_lv_tag: u64,
    pub long_ob_digit: u64,
}

/// The magic first 8 bytes of `_Py_DebugOffsets`.
pub const DEBUG_COOKIE: &[u8; 8] = b"xdebugpy";

/// Upper bound on any struct size reported by `_Py_DebugOffsets`; larger means garbage.
const MAX_STRUCT_SIZE: u64 = 1 << 24;

/// Why the runtime offsets of a 3.13+ process could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// No table row and no runtime-offsets reader exists for this version.
    #[error("no layout for CPython {}.{}", .0.0, .0.1)]
    Unsupported((u8, u8)),
    /// Reading `_Py_DebugOffsets` failed.
    #[error("failed to read _Py_DebugOffsets")]
    Memory(#[from] MemoryError),
    /// The first 8 bytes of `_PyRuntime` are not `xdebugpy`.
    #[error("_Py_DebugOffsets cookie is {0:02x?}, expected \"xdebugpy\"")]
    BadCookie([u8; 8]),
    /// The version inside `_Py_DebugOffsets` is not the one discovered from the image.
    #[error("_Py_DebugOffsets says version {found:#x}, image is CPython {}.{}", .expected.0, .expected.1)]
    VersionMismatch { found: u64, expected: (u8, u8) },
    /// An offset or size is implausible (beyond its struct, or huge).
    #[error("_Py_DebugOffsets field {field} = {value} is implausible")]
    Implausible { field: &'static str, value: u64 },
}

impl PyLayout {
    /// The generated row for `major.minor`, if the table has one (3.8–3.13). For 3.13+
    /// prefer [`PyLayout::from_debug_offsets`], which reads the target's own offsets.
    pub fn table_row(major: u8, minor: u8) -> Option<PyLayout> {
        let row = match (major, minor) {
            (3, 8) => layouts::LAYOUT_3_8,
            (3, 9) => layouts::LAYOUT_3_9,
            (3, 10) => layouts::LAYOUT_3_10,
            (3, 11) => layouts::LAYOUT_3_11,
            (3, 12) => layouts::LAYOUT_3_12,
            (3, 13) => layouts::LAYOUT_3_13,
            _ => return None,
        };
        Some(row)
    }

    /// Whether this version publishes `_Py_DebugOffsets` (3.13+).
    pub fn uses_debug_offsets(version: (u8, u8)) -> bool {
        version >= (3, 13)
    }

    /// Reads `_Py_DebugOffsets` at `runtime_addr` (the start of `_PyRuntime`) of a CPython
    /// `version` process, validates it, and maps it onto a [`PyLayout`].
    pub fn from_debug_offsets(
        mem: &dyn ProcessMemory,
        runtime_addr: u64,
        version: (u8, u8),
    ) -> Result<PyLayout, LayoutError> {
        let (base, positions) = match version {
            (3, 13) => (layouts::LAYOUT_3_13, layouts::DEBUG_OFFSETS_3_13),
            _ => return Err(LayoutError::Unsupported(version)),
        };
        let mut raw = vec![0u8; positions.total_size as usize];
        mem.read(runtime_addr, &mut raw)?;
        let d = DebugValues { raw: &raw };
        check_header(&d, &positions, version)?;
        let layout = apply_debug_offsets(base, &d, &positions);
        check_plausible(&layout, &d, &positions)?;
        Ok(layout)
    }
}

/// The raw `_Py_DebugOffsets` bytes, read as native `u64`s.
struct DebugValues<'a> {
    raw: &'a [u8],
}

impl DebugValues<'_> {
    /// The `u64` at byte `pos`; 0 when out of range (then plausibility checks reject it).
    fn at(&self, pos: u64) -> u64 {
        let start = pos as usize;
        self.raw
            .get(start..start + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes)
            .unwrap_or(0)
    }
}

fn check_header(
    d: &DebugValues<'_>,
    p: &DebugOffsetsLayout,
    version: (u8, u8),
) -> Result<(), LayoutError> {
    let mut cookie = [0u8; 8];
    cookie.copy_from_slice(&d.raw[..8]);
    if &cookie != DEBUG_COOKIE {
        return Err(LayoutError::BadCookie(cookie));
    }
    let found = d.at(p.version);
    let (major, minor) = ((found >> 24) & 0xff, (found >> 16) & 0xff);
    if (major, minor) != (u64::from(version.0), u64::from(version.1)) {
        return Err(LayoutError::VersionMismatch {
            found,
            expected: version,
        });
    }
    Ok(())
}

/// Overwrites every offset of the generated `base` row with the process's own value.
fn apply_debug_offsets(base: PyLayout, d: &DebugValues<'_>, p: &DebugOffsetsLayout) -> PyLayout {
    PyLayout {
        runtime_interpreters_head: d.at(p.runtime_interpreters_head),
        interp_next: d.at(p.interp_next),
        interp_threads_head: d.at(p.interp_threads_head),
        tstate_next: d.at(p.tstate_next),
        tstate_thread_id: d.at(p.tstate_thread_id),
        tstate_native_thread_id: Some(d.at(p.tstate_native_thread_id)),
        tstate_frame: d.at(p.tstate_current_frame),
        frame_size: d.at(p.frame_size),
        frame_previous: d.at(p.frame_previous),
        frame_code: d.at(p.frame_executable),
        frame_instr: d.at(p.frame_instr_ptr),
        frame_owner: Some(d.at(p.frame_owner)),
        object_type: d.at(p.object_type),
        code_filename: d.at(p.code_filename),
        code_name: d.at(p.code_name),
        code_qualname: Some(d.at(p.code_qualname)),
        code_firstlineno: d.at(p.code_firstlineno),
        code_linetable: d.at(p.code_linetable),
        code_code_adaptive: Some(d.at(p.code_co_code_adaptive)),
        unicode_length: d.at(p.unicode_length),
        unicode_state: d.at(p.unicode_state),
        unicode_ascii_data: d.at(p.unicode_asciiobject_size),
        bytes_size: d.at(p.bytes_ob_size),
        bytes_data: d.at(p.bytes_ob_sval),
        interp_modules: d.at(p.interp_imports_modules),
        type_flags: d.at(p.type_tp_flags),
        dict_keys: d.at(p.dict_ma_keys),
        dict_values: d.at(p.dict_ma_values),
        long_size: d.at(p.long_lv_tag),
        long_digits: d.at(p.long_ob_digit),
        ..base
    }
}

/// Every offset must lie inside its struct, and every struct size must be sane.
fn check_plausible(
    l: &PyLayout,
    d: &DebugValues<'_>,
    p: &DebugOffsetsLayout,
) -> Result<(), LayoutError> {
    let sizes = [
        ("runtime_state.size", d.at(p.runtime_size)),
        ("interpreter_state.size", d.at(p.interp_size)),
        ("thread_state.size", d.at(p.tstate_size)),
        ("interpreter_frame.size", d.at(p.frame_size)),
        ("code_object.size", d.at(p.code_size)),
        ("bytes_object.size", d.at(p.bytes_size)),
        ("unicode_object.size", d.at(p.unicode_size)),
        ("type_object.size", d.at(p.type_size)),
        ("dict_object.size", d.at(p.dict_size)),
        ("long_object.size", d.at(p.long_size)),
    ];
    for (field, value) in sizes {
        if value == 0 || value > MAX_STRUCT_SIZE {
            return Err(LayoutError::Implausible { field, value });
        }
    }
    let within = |field: &'static str, value: u64, size: u64| {
        if value >= size {
            Err(LayoutError::Implausible { field, value })
        } else {
            Ok(())
        }
    };
    let [runtime, interp, tstate, frame, code, bytes, unicode, typ, dict, long] =
        sizes.map(|(_, v)| v);
    within("interpreters_head", l.runtime_interpreters_head, runtime)?;
    within("interp.next", l.interp_next, interp)?;
    within("interp.threads_head", l.interp_threads_head, interp)?;
    within("tstate.next", l.tstate_next, tstate)?;
    within("tstate.current_frame", l.tstate_frame, tstate)?;
    within("tstate.thread_id", l.tstate_thread_id, tstate)?;
    within(
        "tstate.native_thread_id",
        l.tstate_native_thread_id.unwrap_or(0),
        tstate,
    )?;
    within("frame.previous", l.frame_previous, frame)?;
    within("frame.executable", l.frame_code, frame)?;
    within("frame.instr_ptr", l.frame_instr, frame)?;
    within("frame.owner", l.frame_owner.unwrap_or(0), frame)?;
    within("code.filename", l.code_filename, code)?;
    within("code.name", l.code_name, code)?;
    within("code.qualname", l.code_qualname.unwrap_or(0), code)?;
    within("code.linetable", l.code_linetable, code)?;
    within("code.firstlineno", l.code_firstlineno, code)?;
    within(
        "code.co_code_adaptive",
        l.code_code_adaptive.unwrap_or(0),
        code + 1,
    )?;
    within("bytes.ob_sval", l.bytes_data, bytes + 1)?;
    within("unicode.state", l.unicode_state, unicode)?;
    within("interp.imports_modules", l.interp_modules, interp)?;
    within("type.tp_flags", l.type_flags, typ)?;
    within("dict.ma_keys", l.dict_keys, dict)?;
    within("dict.ma_values", l.dict_values, dict)?;
    within("long.lv_tag", l.long_size, long)?;
    within("long.ob_digit", l.long_digits, long)?;
    within(
        "unicode.asciiobject_size",
        l.unicode_ascii_data,
        unicode + 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::memory::FakeMemory;

    /// Builds a `_Py_DebugOffsets` image holding the generated 3.13 values.
    fn debug_image(layout: &PyLayout) -> Vec<u8> {
        let p = layouts::DEBUG_OFFSETS_3_13;
        let mut raw = vec![0u8; p.total_size as usize];
        raw[..8].copy_from_slice(DEBUG_COOKIE);
        let mut put = |pos: u64, v: u64| {
            raw[pos as usize..pos as usize + 8].copy_from_slice(&v.to_ne_bytes())
        };
        put(p.version, 0x030d_00f0);
        for pos in [p.runtime_size, p.interp_size, p.tstate_size, p.frame_size] {
            put(pos, 1 << 20);
        }
        for pos in [p.code_size, p.bytes_size, p.unicode_size, p.type_size] {
            put(pos, 1 << 20);
        }
        for pos in [p.dict_size, p.long_size] {
            put(pos, 1 << 20);
        }
        put(
            p.runtime_interpreters_head,
            layout.runtime_interpreters_head,
        );
        put(p.interp_threads_head, layout.interp_threads_head);
        put(p.tstate_current_frame, layout.tstate_frame);
        put(p.frame_instr_ptr, layout.frame_instr);
        put(p.unicode_asciiobject_size, layout.unicode_ascii_data);
        put(p.interp_imports_modules, layout.interp_modules);
        put(p.dict_ma_keys, layout.dict_keys);
        put(p.long_lv_tag, layout.long_size);
        raw
    }

    #[test]
    fn debug_offsets_are_mapped() {
        let row = PyLayout::table_row(3, 13).unwrap();
        let mem = FakeMemory::new().with(0x1000, debug_image(&row));
        let got = PyLayout::from_debug_offsets(&mem, 0x1000, (3, 13)).unwrap();
        assert_eq!(got.tstate_frame, row.tstate_frame);
        assert_eq!(got.frame_instr, row.frame_instr);
        assert_eq!(got.unicode_ascii_data, row.unicode_ascii_data);
        assert_eq!(got.unicode_kind_shift, row.unicode_kind_shift);
        assert_eq!(got.interp_modules, row.interp_modules);
        assert_eq!(got.dict_keys, row.dict_keys);
        assert_eq!(got.long_size, row.long_size);
        assert_eq!(got.managed_dict, row.managed_dict);
    }

    #[test]
    fn bad_cookie_and_version_are_rejected() {
        let row = PyLayout::table_row(3, 13).unwrap();
        let mut image = debug_image(&row);
        image[0] = b'y';
        let mem = FakeMemory::new().with(0x1000, image);
        let err = PyLayout::from_debug_offsets(&mem, 0x1000, (3, 13)).unwrap_err();
        assert!(matches!(err, LayoutError::BadCookie(_)), "{err}");
        let mem = FakeMemory::new().with(0x1000, debug_image(&row));
        let err = PyLayout::from_debug_offsets(&mem, 0x1000, (3, 14)).unwrap_err();
        assert!(matches!(err, LayoutError::Unsupported(_)), "{err}");
    }

    #[test]
    fn garbage_sizes_are_rejected() {
        let row = PyLayout::table_row(3, 13).unwrap();
        let mut image = debug_image(&row);
        let pos = layouts::DEBUG_OFFSETS_3_13.tstate_size as usize;
        image[pos..pos + 8].copy_from_slice(&u64::MAX.to_ne_bytes());
        let mem = FakeMemory::new().with(0x1000, image);
        let err = PyLayout::from_debug_offsets(&mem, 0x1000, (3, 13)).unwrap_err();
        assert!(matches!(err, LayoutError::Implausible { .. }), "{err}");
    }

    #[test]
    fn table_has_rows_for_supported_versions_only() {
        for minor in 8..=13 {
            assert_eq!(PyLayout::table_row(3, minor).unwrap().version, (3, minor));
        }
        assert!(PyLayout::table_row(3, 7).is_none());
        assert!(PyLayout::table_row(2, 7).is_none());
    }
}
