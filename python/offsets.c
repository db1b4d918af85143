/*
 * Prints the layout of the CPython internals that probe's Python frame walker reads, as one
 * Rust `PyLayout` row (and, for 3.13+, the positions inside `_Py_DebugOffsets`).
 *
 * Built by python/generate.sh against each installed interpreter's own headers, with
 * -DPy_BUILD_CORE so the internal headers (pycore_*.h) are usable, and linked against that
 * version's libpython. Every number printed here comes from the compiler (offsetof/sizeof,
 * the headers' own inline accessors, or probing a bit field at run time) or, for the dict
 * internals that no header of 3.8-3.10 describes, from measuring real dicts of the linked
 * interpreter; so the table matches the real build and nothing is typed in by hand.
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
#include "internal/pycore_dict.h"
#include "internal/pycore_object.h"
#else
#include <frameobject.h>
#include "longintrepr.h"
#endif
#if PY_VERSION_HEX >= 0x030C0000
#include "internal/pycore_long.h"
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

/*
 * Objects probe reads to name threads: sys.modules (a dict) -> the threading module ->
 * its `_active` dict -> Thread instances -> their attribute dicts -> `_name` (str) and
 * `_native_id` (int).
 */
static void type_flags(void) {
    plain("type_flags", OFF(PyTypeObject, tp_flags));
    plain("type_dictoffset", OFF(PyTypeObject, tp_dictoffset));
    plain("heaptype_cached_keys", OFF(PyHeapTypeObject, ht_cached_keys));
    plain("tpflags_heaptype", Py_TPFLAGS_HEAPTYPE);
    plain("tpflags_long_subclass", Py_TPFLAGS_LONG_SUBCLASS);
    plain("tpflags_unicode_subclass", Py_TPFLAGS_UNICODE_SUBCLASS);
    plain("tpflags_dict_subclass", Py_TPFLAGS_DICT_SUBCLASS);
#if PY_VERSION_HEX >= 0x030B0000
    some("tpflags_managed_dict", Py_TPFLAGS_MANAGED_DICT);
#else
    none("tpflags_managed_dict");
#endif
}

#if PY_VERSION_HEX >= 0x030B0000
/* A fake object whose type has the managed-dict flags, so the header's own inline accessors
 * (whose asserts check those flags) can be called and their results measured. */
static PyTypeObject fake_type;
static PyObject *fake_words[16];

static PyObject *fake_object(unsigned long flags) {
    PyObject *obj = (PyObject *)&fake_words[8];
    fake_type.tp_flags = flags;
    fake_type.tp_basicsize = sizeof(PyObject);
    obj->ob_type = &fake_type;
    return obj;
}

/* Signed distance of `p` from `obj`. */
static long from(PyObject *obj, void *p) { return (long)((char *)p - (char *)obj); }
#endif

/* Where an instance keeps its attributes when its type manages them (3.11+). */
static void managed_dict(void) {
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *obj = fake_object(Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_INLINE_VALUES);
    printf("    managed_dict: Some(ManagedDict::Inline {\n        dict: %ld,\n"
           "        values: %ld,\n        inline_flag: %lu,\n    }),\n",
           from(obj, _PyObject_ManagedDictPointer(obj)), from(obj, _PyObject_InlineValues(obj)),
           (unsigned long)Py_TPFLAGS_INLINE_VALUES);
#elif PY_VERSION_HEX >= 0x030C0000
    PyObject *obj = fake_object(Py_TPFLAGS_MANAGED_DICT);
    PyDictOrValues tagged;
    unsigned long tag = 0;
    while (tag < 8) {
        tagged.values = (char *)(1UL << tag);
        if (_PyDictOrValues_IsValues(tagged)) {
            break;
        }
        tag++;
    }
    tagged.values = (char *)0x1000 + (1UL << tag);
    printf("    managed_dict: Some(ManagedDict::Tagged {\n        dict_or_values: %ld,\n"
           "        tag: %lu,\n        values_adjust: %ld,\n    }),\n",
           from(obj, _PyObject_DictOrValuesPointer(obj)), 1UL << tag,
           (long)((char *)_PyDictOrValues_GetValues(tagged) - tagged.values));
#elif PY_VERSION_HEX >= 0x030B0000
    PyObject *obj = fake_object(Py_TPFLAGS_MANAGED_DICT);
    printf("    managed_dict: Some(ManagedDict::Pointers {\n        dict: %ld,\n"
           "        values: %ld,\n    }),\n",
           from(obj, _PyObject_ManagedDictPointer(obj)), from(obj, _PyObject_ValuesPointer(obj)));
#else
    none("managed_dict");
#endif
}

#if PY_VERSION_HEX < 0x030B0000
/*
 * Before 3.11 the dict keys object is private to Objects/dictobject.c: no installed header
 * describes it. So look at a real one: start the interpreter this file is linked against,
 * build dicts with known keys and values, and find where the size, the entry count and the
 * entries sit (the same set-and-look trick as for the str bit fields).
 */
static PyObject *dict_with(int n, PyObject **keys, PyObject **values) {
    PyObject *d = PyDict_New();
    for (int i = 0; i < n; i++) {
        keys[i] = PyUnicode_FromFormat("key%d", i);
        values[i] = PyLong_FromLong(1000 + i);
        PyDict_SetItem(d, keys[i], values[i]);
    }
    return d;
}

static Py_ssize_t *keys_words(PyObject *d) { return (Py_ssize_t *)((PyDictObject *)d)->ma_keys; }

/* Index of the first of the leading `n` words of `a` and `b` equal to `va` and `vb`. */
static long word_where(Py_ssize_t *a, Py_ssize_t va, Py_ssize_t *b, Py_ssize_t vb, long n) {
    for (long i = 0; i < n; i++) {
        if (a[i] == va && b[i] == vb) {
            return i;
        }
    }
    fprintf(stderr, "offsets.c: dict keys field not found\n");
    exit(1);
}

/* Index of the word holding pointer `p` among the first `n` words of `w`. */
static long pointer_at(Py_ssize_t *w, void *p, long n) {
    return word_where(w, (Py_ssize_t)p, w, (Py_ssize_t)p, n);
}

static void dict_keys_probed(void) {
    PyObject *k4[4], *v4[4], *k5[5], *v5[5], *k6[6], *v6[6];
    Py_InitializeEx(0);
    /* 4 and 5 entries fit the minimum table (8 slots, 5 usable); 6 need 16 slots. */
    Py_ssize_t *w4 = keys_words(dict_with(4, k4, v4));
    Py_ssize_t *w5 = keys_words(dict_with(5, k5, v5));
    Py_ssize_t *w6 = keys_words(dict_with(6, k6, v6));
    long size = word_where(w5, 8, w6, 16, 8);
    long nentries = word_where(w4, 4, w5, 5, 8);
    long key0 = pointer_at(w5, k5[0], 64), key1 = pointer_at(w5, k5[1], 64);
    long value0 = pointer_at(w5, v5[0], 64);
    long hash0 = word_where(w5, PyObject_Hash(k5[0]), w5, PyObject_Hash(k5[0]), 64);
    long entry = hash0 < key0 ? hash0 : key0;
    entry = value0 < entry ? value0 : entry;
    long stride = (key1 - key0) * 8;
    /* Entries follow 8 one-byte indices; the 16-slot table must agree. */
    long indices = entry * 8 - 8;
    if (pointer_at(w6, k6[0], 64) * 8 - (key0 - entry) * 8 != indices + 16) {
        fprintf(stderr, "offsets.c: dict index table layout not understood\n");
        exit(1);
    }
    plain("keys_size", size * 8);
    none("keys_log2_index_bytes");
    none("keys_kind");
    plain("keys_nentries", nentries * 8);
    plain("keys_indices", indices);
    plain("entry_size", stride);
    plain("entry_key", (key0 - entry) * 8);
    plain("entry_value", (value0 - entry) * 8);
    none("unicode_entry");
    plain("values_values", 0);
    none("values_capacity");
    none("values_valid");
}
#endif

static void dicts(void) {
    plain("dict_keys", OFF(PyDictObject, ma_keys));
    plain("dict_values", OFF(PyDictObject, ma_values));
#if PY_VERSION_HEX >= 0x030B0000
    plain("keys_size", OFF(PyDictKeysObject, dk_log2_size));
    some("keys_log2_index_bytes", OFF(PyDictKeysObject, dk_log2_index_bytes));
    printf("    keys_kind: Some((%lu, %d)),\n", OFF(PyDictKeysObject, dk_kind),
           (int)DICT_KEYS_GENERAL);
    plain("keys_nentries", OFF(PyDictKeysObject, dk_nentries));
    plain("keys_indices", OFF(PyDictKeysObject, dk_indices));
    plain("entry_size", sizeof(PyDictKeyEntry));
    plain("entry_key", OFF(PyDictKeyEntry, me_key));
    plain("entry_value", OFF(PyDictKeyEntry, me_value));
    printf("    unicode_entry: Some((%lu, %lu, %lu)),\n", (unsigned long)sizeof(PyDictUnicodeEntry),
           OFF(PyDictUnicodeEntry, me_key), OFF(PyDictUnicodeEntry, me_value));
    plain("values_values", OFF(PyDictValues, values));
#if PY_VERSION_HEX >= 0x030D0000
    some("values_capacity", OFF(PyDictValues, capacity));
    some("values_valid", OFF(PyDictValues, valid));
#else
    none("values_capacity");
    none("values_valid");
#endif
#else
    dict_keys_probed();
#endif
}

static void modules_and_ints(void) {
#if PY_VERSION_HEX >= 0x030C0000
    plain("interp_modules", OFF(PyInterpreterState, imports.modules));
    plain("long_size", OFF(PyLongObject, long_value.lv_tag));
    plain("long_digits", OFF(PyLongObject, long_value.ob_digit));
    printf("    long_tag: Some(LongTag {\n        size_shift: %d,\n        sign_mask: %d,\n"
           "        negative: %d,\n    }),\n",
           _PyLong_NON_SIZE_BITS, SIGN_MASK, SIGN_NEGATIVE);
#else
    plain("interp_modules", OFF(PyInterpreterState, modules));
    plain("long_size", OFF(PyVarObject, ob_size));
    plain("long_digits", OFF(PyLongObject, ob_digit));
    none("long_tag");
#endif
    plain("long_shift", PyLong_SHIFT);
    plain("long_digit_size", sizeof(digit));
}

#if PY_VERSION_HEX >= 0x030D0000
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
    D("interp_imports_modules", interpreter_state.imports_modules);
    D("type_size", type_object.size);
    D("type_tp_flags", type_object.tp_flags);
    D("dict_size", dict_object.size);
    D("dict_ma_keys", dict_object.ma_keys);
    D("dict_ma_values", dict_object.ma_values);
    D("long_size", long_object.size);
    D("long_lv_tag", long_object.lv_tag);
    D("long_ob_digit", long_object.ob_digit);
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
    type_flags();
    managed_dict();
    dicts();
    modules_and_ints();
    printf("};\n");
#if PY_VERSION_HEX >= 0x030D0000
    debug_offsets();
#endif
    return 0;
}
