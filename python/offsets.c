/*
 * Prints the layout of the CPython internals that probe's Python frame walker reads, as one
 * Rust `PyLayout` row (and, for 3.13+, the positions inside `_Py_DebugOffsets`).
 *
 * Built by python/generate.sh against each installed interpreter's own headers, with
 * -DPy_BUILD_CORE so the internal headers (pycore_*.h) are usable. Every number printed here
 * comes from the compiler (offsetof/sizeof, or probing a bit field at run time), so the table
 * matches the real build; nothing is typed in by hand.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#if PY_VERSION_HEX >= 0x03090000
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"
#else
#include "internal/pycore_pystate.h"
#endif
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#include "internal/pycore_code.h"
#else
#include <frameobject.h>
#endif

#define OFF(type, field) ((unsigned long)offsetof(type, field))

/* Prints `name: Some(value),`. */
static void some(const char *name, unsigned long value) {
    printf("    %s: Some(%lu),\n", name, value);
}

static void none(const char *name) { printf("    %s: None,\n", name); }

static void plain(const char *name, unsigned long value) {
    printf("    %s: %lu,\n", name, value);
}

/* Bit position of the lowest set bit of the first 4 bytes at `p` (little endian). */
static unsigned long lowest_bit(const unsigned char *p) {
    unsigned int word;
    memcpy(&word, p, sizeof word);
    for (unsigned long bit = 0; bit < 32; bit++) {
        if (word & (1u << bit)) {
            return bit;
        }
    }
    return 99;
}

/* Bit fields have no offsetof: set one to a known value in a zeroed object and look. */
static void unicode_state_bits(void) {
    PyASCIIObject o;
    const unsigned char *state = (const unsigned char *)&o.state;
    memset(&o, 0, sizeof o);
    o.state.kind = 1;
    plain("unicode_kind_shift", lowest_bit(state));
    memset(&o, 0, sizeof o);
    o.state.compact = 1;
    plain("unicode_compact_bit", lowest_bit(state));
    memset(&o, 0, sizeof o);
    o.state.ascii = 1;
    plain("unicode_ascii_bit", lowest_bit(state));
}

static void runtime_and_threads(void) {
    plain("runtime_interpreters_head", OFF(_PyRuntimeState, interpreters.head));
    plain("interp_next", OFF(PyInterpreterState, next));
#if PY_VERSION_HEX >= 0x030B0000
    plain("interp_threads_head", OFF(PyInterpreterState, threads.head));
#else
    plain("interp_threads_head", OFF(PyInterpreterState, tstate_head));
#endif
    plain("tstate_next", OFF(PyThreadState, next));
    plain("tstate_thread_id", OFF(PyThreadState, thread_id));
#if PY_VERSION_HEX >= 0x030B0000
    some("tstate_native_thread_id", OFF(PyThreadState, native_thread_id));
#else
    none("tstate_native_thread_id");
#endif
#if PY_VERSION_HEX >= 0x030D0000
    plain("tstate_frame", OFF(PyThreadState, current_frame));
    none("cframe_current_frame");
#elif PY_VERSION_HEX >= 0x030B0000
    plain("tstate_frame", OFF(PyThreadState, cframe));
    some("cframe_current_frame", OFF(_PyCFrame, current_frame));
#else
    plain("tstate_frame", OFF(PyThreadState, frame));
    none("cframe_current_frame");
#endif
}

static void frames(void) {
#if PY_VERSION_HEX >= 0x030B0000
    plain("frame_size", sizeof(_PyInterpreterFrame));
    plain("frame_previous", OFF(_PyInterpreterFrame, previous));
#if PY_VERSION_HEX >= 0x030D0000
    plain("frame_code", OFF(_PyInterpreterFrame, f_executable));
    plain("frame_instr", OFF(_PyInterpreterFrame, instr_ptr));
    printf("    instr: InstrKind::InstrPtr,\n");
#else
    plain("frame_code", OFF(_PyInterpreterFrame, f_code));
    plain("frame_instr", OFF(_PyInterpreterFrame, prev_instr));
    printf("    instr: InstrKind::PrevInstrPtr,\n");
#endif
    some("frame_owner", OFF(_PyInterpreterFrame, owner));
#if PY_VERSION_HEX >= 0x030C0000
    none("frame_is_entry");
    some("frame_owned_by_cstack", FRAME_OWNED_BY_CSTACK);
#else
    some("frame_is_entry", OFF(_PyInterpreterFrame, is_entry));
    none("frame_owned_by_cstack");
#endif
#else
    plain("frame_size", sizeof(PyFrameObject));
    plain("frame_previous", OFF(PyFrameObject, f_back));
    plain("frame_code", OFF(PyFrameObject, f_code));
    plain("frame_instr", OFF(PyFrameObject, f_lasti));
#if PY_VERSION_HEX >= 0x030A0000
    printf("    instr: InstrKind::LastiCodeUnits,\n");
#else
    printf("    instr: InstrKind::LastiBytes,\n");
#endif
    none("frame_owner");
    none("frame_is_entry");
    none("frame_owned_by_cstack");
#endif
}

static void code_objects(void) {
    plain("object_type", OFF(PyObject, ob_type));
    plain("code_filename", OFF(PyCodeObject, co_filename));
    plain("code_name", OFF(PyCodeObject, co_name));
#if PY_VERSION_HEX >= 0x030B0000
    some("code_qualname", OFF(PyCodeObject, co_qualname));
#else
    none("code_qualname");
#endif
    plain("code_firstlineno", OFF(PyCodeObject, co_firstlineno));
#if PY_VERSION_HEX >= 0x030B0000
    plain("code_linetable", OFF(PyCodeObject, co_linetable));
    printf("    line_table: LineTableKind::Locations,\n");
    some("code_code_adaptive", OFF(PyCodeObject, co_code_adaptive));
#elif PY_VERSION_HEX >= 0x030A0000
    plain("code_linetable", OFF(PyCodeObject, co_linetable));
    printf("    line_table: LineTableKind::Linetable310,\n");
    none("code_code_adaptive");
#else
    plain("code_linetable", OFF(PyCodeObject, co_lnotab));
    printf("    line_table: LineTableKind::Lnotab,\n");
    none("code_code_adaptive");
#endif
}

static void strings(void) {
    plain("unicode_length", OFF(PyASCIIObject, length));
    plain("unicode_state", OFF(PyASCIIObject, state));
    plain("unicode_ascii_data", sizeof(PyASCIIObject));
    plain("unicode_compact_data", sizeof(PyCompactUnicodeObject));
    unicode_state_bits();
    plain("bytes_size", OFF(PyVarObject, ob_size));
    plain("bytes_data", OFF(PyBytesObject, ob_sval));
}

#if PY_VERSION_HEX >= 0x030D0000
#define DOFF(field) plain(#field, OFF(_Py_DebugOffsets, field))
/* Where each value probe reads sits inside `_Py_DebugOffsets` (3.13+). */
static void debug_offsets(void) {
    printf("pub(crate) const DEBUG_OFFSETS_%d_%d: DebugOffsetsLayout = DebugOffsetsLayout {\n",
           PY_MAJOR_VERSION, PY_MINOR_VERSION);
    plain("total_size", sizeof(_Py_DebugOffsets));
    plain("version", OFF(_Py_DebugOffsets, version));
    
#define D(name, field) plain(name, OFF(_Py_DebugOffsets, field))
    D("runtime_size", runtime_state.size);
    D("runtime_interpreters_head", runtime_state.interpreters_head);
    D("interp_size", interpreter_state.size);
    D("interp_next", interpreter_state.next);
    D("interp_threads_head", interpreter_state.threads_head);
    D("tstate_size", thread_state.size);
    D("tstate_next", thread_state.next);
    D("tstate_current_frame", thread_state.current_frame);
    D("tstate_thread_id", thread_state.thread_id);
    D("tstate_native_thread_id", thread_state.native_thread_id);
    D("frame_size", interpreter_frame.size);
    D("frame_previous", interpreter_frame.previous);
    D("frame_executable", interpreter_frame.executable);
    D("frame_instr_ptr", interpreter_frame.instr_ptr);
    D("frame_owner", interpreter_frame.owner);
    D("code_size", code_object.size);
    D("code_filename", code_object.filename);
    D("code_name", code_object.name);
    D("code_qualname", code_object.qualname);
    D("code_linetable", code_object.linetable);
    D("code_firstlineno", code_object.firstlineno);
    D("code_co_code_adaptive", code_object.co_code_adaptive);
    D("object_type", pyobject.ob_type);
    D("bytes_size", bytes_object.size);
    D("bytes_ob_size", bytes_object.ob_size);
    D("bytes_ob_sval", bytes_object.ob_sval);
    D("unicode_size", unicode_object.size);
    D("unicode_state", unicode_object.state);
    D("unicode_length", unicode_object.length);
    D("unicode_asciiobject_size", unicode_object.asciiobject_size);
#undef D
    printf("};\n");
}
#endif

int main(void) {
    printf("pub(crate) const LAYOUT_%d_%d: PyLayout = PyLayout {\n", PY_MAJOR_VERSION,
           PY_MINOR_VERSION);
    printf("    version: (%d, %d),\n", PY_MAJOR_VERSION, PY_MINOR_VERSION);
    runtime_and_threads();
    frames();
    code_objects();
    strings();
    printf("};\n");
#if PY_VERSION_HEX >= 0x030D0000
    debug_offsets();
#endif
    return 0;
}
