//! `dict` contents and instance attributes of a target.
//!
//! A dict is a keys object (`ma_keys`: a hash index table followed by the entries in
//! insertion order) plus, for a split table, a separate values array (`ma_values`) indexed
//! like the entries. probe never hashes: it walks the entries in order, which needs only
//! the entry count and where the entries start:
//! - 3.8–3.10: `dk_size` slots whose index width (1, 2, 4 or 8 bytes) follows from the
//!   size; every entry is (hash, key, value).
//! - 3.11+: `dk_log2_size` and `dk_log2_index_bytes`; `dk_kind` says whether entries are
//!   (hash, key, value) or, for str-only keys, (key, value).
//!
//! Instance attributes live in a dict found through `tp_dictoffset`, or, for classes that
//! manage them (3.11+), as a values array whose keys are the class's shared keys
//! (`ht_cached_keys`); see [`ManagedDict`].

use super::memory::{ProcessMemory, ReadExt};
use super::object::{expect_flag, field, str_equals, type_and_flags, ObjectError};
use super::offsets::{ManagedDict, PyLayout};

/// Most entries read from one dict (including deleted ones); more is an error.
pub const MAX_ENTRIES: u64 = 4096;

/// Largest hash table accepted (slots); a dict of [`MAX_ENTRIES`] needs far fewer.
const MAX_SLOTS: u64 = 1 << 20;

/// One live entry of a dict: addresses of its key and value objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DictItem {
    pub key: u64,
    pub value: u64,
}

/// The live entries of the `dict` at `dict`, in insertion order (for split tables, in
/// key order).
pub fn dict_items(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    dict: u64,
) -> Result<Vec<DictItem>, ObjectError> {
    expect_flag(layout, mem, dict, layout.tpflags_dict_subclass, "dict")?;
    let keys = field(mem, dict, layout.dict_keys)?;
    let values = field(mem, dict, layout.dict_values)?;
    table_items(layout, mem, keys, (values != 0).then_some(values))
}

/// The value stored under the str key `name` in the `dict` at `dict`.
pub fn dict_get_str(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    dict: u64,
    name: &str,
) -> Result<Option<u64>, ObjectError> {
    find_str_key(layout, mem, &dict_items(layout, mem, dict)?, name)
}

/// The value of the first item whose key is the str `name`; keys that are not strs are
/// passed over.
pub fn find_str_key(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    items: &[DictItem],
    name: &str,
) -> Result<Option<u64>, ObjectError> {
    for item in items {
        match str_equals(layout, mem, item.key, name) {
            Ok(true) => return Ok(Some(item.value)),
            Ok(false) | Err(ObjectError::WrongType { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The attributes (`__dict__` items) of the object at `obj`; empty if it has none yet.
pub fn instance_attrs(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    obj: u64,
) -> Result<Vec<DictItem>, ObjectError> {
    let (ty, flags) = type_and_flags(layout, mem, obj)?;
    let managed = layout
        .tpflags_managed_dict
        .is_some_and(|flag| flags & flag != 0);
    match layout.managed_dict {
        Some(how) if managed => managed_attrs(layout, mem, obj, ty, flags, how),
        _ => {
            let offset = field(mem, ty, layout.type_dictoffset)? as i64;
            if offset <= 0 {
                // 0: no __dict__; negative: relative to the end of a variable-size object,
                // which no object probe reads uses.
                return Err(ObjectError::Invalid {
                    addr: obj,
                    what: "object has no __dict__ at a fixed offset",
                });
            }
            optional_dict(layout, mem, field(mem, obj, offset as u64)?)
        }
    }
}

/// Attributes of a managed-dict instance (3.11+).
fn managed_attrs(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    obj: u64,
    ty: u64,
    flags: u64,
    how: ManagedDict,
) -> Result<Vec<DictItem>, ObjectError> {
    let at = |off: i64| obj.wrapping_add_signed(off);
    let values = match how {
        ManagedDict::Pointers { dict, values } => {
            let d = field(mem, at(dict), 0)?;
            if d != 0 {
                return dict_items(layout, mem, d);
            }
            field(mem, at(values), 0)?
        }
        ManagedDict::Tagged {
            dict_or_values,
            tag,
            values_adjust,
        } => {
            let word = field(mem, at(dict_or_values), 0)?;
            if word & tag == 0 {
                return optional_dict(layout, mem, word);
            }
            word.wrapping_add_signed(values_adjust)
        }
        ManagedDict::Inline {
            dict,
            values,
            inline_flag,
        } => {
            let d = field(mem, at(dict), 0)?;
            if d != 0 || flags & inline_flag == 0 {
                return optional_dict(layout, mem, d);
            }
            let inline = at(values);
            let valid = layout.values_valid.map(|v| mem.read_u8(inline + v));
            if let Some(valid) = valid {
                if valid.map_err(ObjectError::memory(obj))? == 0 {
                    return Ok(Vec::new());
                }
            }
            inline
        }
    };
    if values == 0 {
        return Ok(Vec::new());
    }
    if flags & layout.tpflags_heaptype == 0 {
        return Err(ObjectError::Invalid {
            addr: obj,
            what: "managed dict in a static type",
        });
    }
    let keys = field(mem, ty, layout.heaptype_cached_keys)?;
    if keys == 0 {
        return Err(ObjectError::Invalid {
            addr: obj,
            what: "class has no shared keys",
        });
    }
    table_items(layout, mem, keys, Some(values))
}

/// The items of the dict at `dict`, or none if the pointer is null.
fn optional_dict(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    dict: u64,
) -> Result<Vec<DictItem>, ObjectError> {
    if dict == 0 {
        return Ok(Vec::new());
    }
    dict_items(layout, mem, dict)
}

/// How a keys object stores its entries.
struct Shape {
    count: u64,
    entries: u64,
    size: u64,
    key: u64,
    value: u64,
}

/// The live entries of keys object `keys`, with values from the `PyDictValues` at `values`
/// for a split table.
pub fn table_items(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    keys: u64,
    values: Option<u64>,
) -> Result<Vec<DictItem>, ObjectError> {
    let shape = shape(layout, mem, keys)?;
    let raw = mem
        .read_vec(shape.entries, (shape.count * shape.size) as usize)
        .map_err(ObjectError::memory(keys))?;
    let split = match values {
        Some(v) => Some(split_values(layout, mem, v, shape.count)?),
        None => None,
    };
    let word = |i: u64, off: u64| {
        let at = (i * shape.size + off) as usize;
        raw.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    };
    let items = (0..shape.count)
        .map(|i| DictItem {
            key: word(i, shape.key),
            value: match &split {
                Some(vals) => vals.get(i as usize).copied().unwrap_or(0),
                None => word(i, shape.value),
            },
        })
        .filter(|item| item.key != 0 && item.value != 0)
        .collect();
    Ok(items)
}

/// Reads the keys header and checks every size against the limits.
fn shape(layout: &PyLayout, mem: &dyn ProcessMemory, keys: u64) -> Result<Shape, ObjectError> {
    let header = mem
        .read_vec(keys, layout.keys_indices as usize)
        .map_err(ObjectError::memory(keys))?;
    let byte = |off: u64| header.get(off as usize).copied().unwrap_or(u8::MAX);
    let word = |off: u64| {
        header
            .get(off as usize..off as usize + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(u64::MAX, u64::from_ne_bytes)
    };
    let invalid = |what| ObjectError::Invalid { addr: keys, what };
    let (slots, index_bytes) = match layout.keys_log2_index_bytes {
        Some(at) => {
            let (log2_size, log2_bytes) = (byte(layout.keys_size), byte(at));
            if log2_size > 20 || log2_bytes < log2_size || log2_bytes > log2_size + 3 {
                return Err(invalid("bad dict table size"));
            }
            (1u64 << log2_size, 1u64 << log2_bytes)
        }
        None => {
            let slots = word(layout.keys_size);
            if !slots.is_power_of_two() || slots > MAX_SLOTS {
                return Err(invalid("bad dict table size"));
            }
            (slots, slots * index_width(slots))
        }
    };
    let count = word(layout.keys_nentries);
    if count > MAX_ENTRIES {
        return Err(ObjectError::TooLarge {
            addr: keys,
            what: "dict entry count",
            value: count,
            limit: MAX_ENTRIES,
        });
    }
    if count > slots {
        return Err(invalid("more dict entries than slots"));
    }
    let general = layout
        .keys_kind
        .is_none_or(|(at, general)| byte(at) == general);
    let (size, key, value) = match layout.unicode_entry {
        Some(unicode) if !general => unicode,
        _ => (layout.entry_size, layout.entry_key, layout.entry_value),
    };
    Ok(Shape {
        count,
        entries: keys
            .wrapping_add(layout.keys_indices)
            .wrapping_add(index_bytes),
        size,
        key,
        value,
    })
}

/// Bytes per index slot of a 3.8–3.10 table of `slots` slots.
fn index_width(slots: u64) -> u64 {
    match slots {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

/// The first `count` value pointers of the `PyDictValues` at `values` (fewer if its
/// capacity, on 3.13, is smaller; missing ones read as null).
fn split_values(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    values: u64,
    count: u64,
) -> Result<Vec<u64>, ObjectError> {
    let count = match layout.values_capacity {
        Some(at) => {
            let capacity = mem
                .read_u8(values.wrapping_add(at))
                .map_err(ObjectError::memory(values))?;
            count.min(u64::from(capacity))
        }
        None => count,
    };
    let raw = mem
        .read_vec(
            values.wrapping_add(layout.values_values),
            count as usize * 8,
        )
        .map_err(ObjectError::memory(values))?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::memory::FakeMemory;
    use crate::python::testutil::{
        dict_obj, keys_obj, noise, put_u64, str_obj, type_obj, values_obj,
    };

    const STR_TYPE: u64 = 0x1_0000;
    const DICT_TYPE: u64 = 0x2_0000;
    const CLASS: u64 = 0x3_0000;
    const KEYS: u64 = 0x4_0000;
    const VALUES: u64 = 0x5_0000;
    const DICT: u64 = 0x6_0000;
    const OBJ: u64 = 0x7_0000;
    /// `key{i}` strs at `STRS + i * 0x100`.
    const STRS: u64 = 0x10_0000;

    fn base(l: &PyLayout, n: u64) -> FakeMemory {
        let mut mem = FakeMemory::new()
            .with(STR_TYPE, type_obj(l, l.tpflags_unicode_subclass, 0, 0))
            .with(DICT_TYPE, type_obj(l, l.tpflags_dict_subclass, 0, 0));
        for i in 0..n {
            let mut s = str_obj(l, &format!("key{i}"), 1);
            put_u64(&mut s, l.object_type, STR_TYPE);
            mem.insert(STRS + i * 0x100, s);
        }
        mem
    }

    fn items(n: u64) -> Vec<(u64, u64)> {
        (0..n).map(|i| (STRS + i * 0x100, 0xa000 + i)).collect()
    }

    #[test]
    fn combined_dicts_are_read_on_every_version() {
        for minor in 8..=13 {
            let l = PyLayout::table_row(3, minor).unwrap();
            // 300 entries: a 512-slot table with 2-byte indices.
            for (n, unicode) in [(3, false), (3, true), (300, true), (300, false)] {
                let mut entries = items(n);
                entries[1].1 = 0; // a deleted entry
                let mem = base(&l, n)
                    .with(KEYS, keys_obj(&l, &entries, unicode))
                    .with(DICT, dict_obj(&l, DICT_TYPE, KEYS, 0));
                let got = dict_items(&l, &mem, DICT).unwrap();
                assert_eq!(got.len() as u64, n - 1, "3.{minor}");
                assert_eq!(got[1].value, 0xa002, "3.{minor}");
                let found = dict_get_str(&l, &mem, DICT, "key2").unwrap();
                assert_eq!(found, Some(0xa002), "3.{minor}");
                assert_eq!(dict_get_str(&l, &mem, DICT, "nope").unwrap(), None);
            }
        }
    }

    #[test]
    fn split_dicts_take_values_from_the_values_array() {
        for minor in 8..=13 {
            let l = PyLayout::table_row(3, minor).unwrap();
            let keys: Vec<_> = items(3).into_iter().map(|(k, _)| (k, 0)).collect();
            let mem = base(&l, 3)
                .with(KEYS, keys_obj(&l, &keys, true))
                .with(VALUES, values_obj(&l, &[0xb0, 0, 0xb2]))
                .with(DICT, dict_obj(&l, DICT_TYPE, KEYS, VALUES));
            let got = dict_items(&l, &mem, DICT).unwrap();
            let values: Vec<_> = got.iter().map(|i| i.value).collect();
            assert_eq!(values, [0xb0, 0xb2], "3.{minor}");
        }
    }

    /// An instance of a class whose attributes are (key0 → 0xc0, key1 → 0xc1), stored the
    /// way `minor` stores them without a materialized `__dict__`.
    fn instance(l: &PyLayout, materialized: bool) -> FakeMemory {
        let shared: Vec<_> = items(2).into_iter().map(|(k, _)| (k, 0)).collect();
        let mut mem = base(l, 2).with(KEYS, keys_obj(l, &shared, true));
        mem.insert(VALUES, values_obj(l, &[0xc0, 0xc1]));
        mem.insert(DICT, dict_obj(l, DICT_TYPE, KEYS, VALUES));
        let mut obj = vec![0u8; 64];
        let header = 32u64; // room for the pre-header
        put_u64(&mut obj, header + l.object_type, CLASS);
        let mut flags = l.tpflags_heaptype;
        match l.managed_dict {
            None => put_u64(&mut obj, header + 16, DICT),
            Some(ManagedDict::Pointers { dict, values }) => {
                let (d, v) = if materialized { (DICT, 0) } else { (0, VALUES) };
                put_u64(&mut obj, header.wrapping_add_signed(dict), d);
                put_u64(&mut obj, header.wrapping_add_signed(values), v);
            }
            Some(ManagedDict::Tagged {
                dict_or_values,
                tag,
                values_adjust,
            }) => {
                let word = if materialized {
                    DICT
                } else {
                    VALUES.wrapping_add_signed(-values_adjust) | tag
                };
                put_u64(&mut obj, header.wrapping_add_signed(dict_or_values), word);
            }
            Some(ManagedDict::Inline {
                dict,
                values,
                inline_flag,
            }) => {
                flags |= inline_flag;
                let inline = values_obj(l, &[0xc0, 0xc1]);
                let at = header.wrapping_add_signed(values) as usize;
                obj.resize(at + inline.len(), 0);
                obj[at..].copy_from_slice(&inline);
                put_u64(
                    &mut obj,
                    header.wrapping_add_signed(dict),
                    materialized as u64 * DICT,
                );
            }
        }
        flags |= l.tpflags_managed_dict.unwrap_or(0);
        mem.insert(OBJ - header, obj);
        mem.insert(CLASS, type_obj(l, flags, 16, KEYS));
        mem
    }

    #[test]
    fn instance_attributes_are_found_on_every_version() {
        for minor in 8..=13 {
            let l = PyLayout::table_row(3, minor).unwrap();
            for materialized in [false, true] {
                let mem = instance(&l, materialized);
                let attrs = instance_attrs(&l, &mem, OBJ).unwrap();
                let got = find_str_key(&l, &mem, &attrs, "key1").unwrap();
                assert_eq!(got, Some(0xc1), "3.{minor} materialized={materialized}");
            }
        }
    }

    #[test]
    fn malformed_tables_are_errors() {
        let l = PyLayout::table_row(3, 12).unwrap();
        let mem = base(&l, 3)
            .with(KEYS, keys_obj(&l, &items(3), true))
            .with(DICT, dict_obj(&l, DICT_TYPE, KEYS, 0));
        let mut bad = mem.clone();
        put_u64(bad.region_mut(KEYS).unwrap(), l.keys_nentries, 1 << 40);
        let err = dict_items(&l, &bad, DICT).unwrap_err();
        assert!(matches!(err, ObjectError::TooLarge { .. }), "{err}");
        let mut bad = mem.clone();
        bad.region_mut(KEYS).unwrap()[l.keys_size as usize] = 60;
        let err = dict_items(&l, &bad, DICT).unwrap_err();
        assert!(matches!(err, ObjectError::Invalid { .. }), "{err}");
        // Not a dict.
        let mut bad = mem.clone();
        put_u64(bad.region_mut(DICT).unwrap(), l.object_type, STR_TYPE);
        let err = dict_items(&l, &bad, DICT).unwrap_err();
        assert!(matches!(err, ObjectError::WrongType { .. }), "{err}");
        // 3.8: a table size that is not a power of two.
        let l = PyLayout::table_row(3, 8).unwrap();
        let mut bad = base(&l, 3)
            .with(KEYS, keys_obj(&l, &items(3), false))
            .with(DICT, dict_obj(&l, DICT_TYPE, KEYS, 0));
        put_u64(bad.region_mut(KEYS).unwrap(), l.keys_size, 12);
        assert!(dict_items(&l, &bad, DICT).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        for minor in 8..=13 {
            let l = PyLayout::table_row(3, minor).unwrap();
            for seed in 0..100 {
                let mut mem = FakeMemory::new().with(0, noise(seed, 1 << 16));
                mem.insert(OBJ, noise(seed + 7, 4096));
                let _ = dict_items(&l, &mem, OBJ);
                let _ = instance_attrs(&l, &mem, OBJ);
                let _ = table_items(&l, &mem, OBJ, Some(OBJ + 64));
            }
        }
    }
}
