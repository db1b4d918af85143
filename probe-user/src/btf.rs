//! Finds the byte offset of a field of a kernel struct in the kernel's BTF
//! (/sys/kernel/btf/vmlinux), for the few kernel programs that must read a struct field:
//! the offset is passed in as a load-time global, so nothing compiled in depends on one
//! kernel's layout (aya-ebpf has no CO-RE field relocations).
//!
//! Only what that needs is parsed: the header, each type's fixed part and its trailing
//! data (to step over it), struct members, and the string section.

use std::path::Path;

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// The byte offset of `field` in `struct name` of the running kernel, from its BTF.
pub fn kernel_field_offset(name: &str, field: &str) -> Result<u32, String> {
    let path = Path::new("/sys/kernel/btf/vmlinux");
    let data = std::fs::read(path).map_err(|err| format!("read {}: {err}", path.display()))?;
    field_offset(&data, name, field)
        .ok_or_else(|| format!("struct {name} has no field {field} in the kernel's BTF"))
}

/// The byte offset of `field` in the first struct called `name` in the BTF `data`; `None`
/// when the data is not BTF, has no such struct or field, or the field is a bit field.
pub fn field_offset(data: &[u8], name: &str, field: &str) -> Option<u32> {
    let word = |at: usize| -> Option<u32> {
        let bytes = data.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?))
    };
    if data.get(..2)? != MAGIC.to_le_bytes() {
        return None;
    }
    let header_len = word(4)? as usize;
    let (type_off, type_len) = (word(8)? as usize, word(12)? as usize);
    let (str_off, str_len) = (word(16)? as usize, word(20)? as usize);
    let strings = data.get(header_len + str_off..header_len + str_off + str_len)?;
    let string = |offset: u32| -> Option<&[u8]> {
        let rest = strings.get(offset as usize..)?;
        Some(&rest[..rest.iter().position(|&b| b == 0)?])
    };
    let mut at = header_len + type_off;
    let end = at + type_len;
    while at + 12 <= end {
        let (name_off, info) = (word(at)?, word(at + 4)?);
        let (kind, vlen, kind_flag) = ((info >> 24) & 0x1f, info & 0xffff, info >> 31);
        let members = at + 12;
        if kind == KIND_STRUCT && string(name_off)? == name.as_bytes() {
            return (0..vlen as usize).find_map(|i| {
                let member = members + i * 12;
                if string(word(member)?)? != field.as_bytes() {
                    return None;
                }
                // With kind_flag, the low 24 bits are the bit offset (the rest a bit-field
                // size); a field we read whole must start on a byte.
                let bits = word(member + 8)?;
                let bits = if kind_flag == 1 {
                    bits & 0xff_ffff
                } else {
                    bits
                };
                (bits % 8 == 0).then_some(bits / 8)
            });
        }
        at = members + trailing_bytes(kind, vlen)?;
    }
    None
}

/// Bytes of kind-specific data after a type's 12-byte fixed part.
fn trailing_bytes(kind: u32, vlen: u32) -> Option<usize> {
    let vlen = vlen as usize;
    Some(match kind {
        // int, var, decl_tag: one u32.
        1 | 14 | 17 => 4,
        // ptr, fwd, typedef, volatile, const, restrict, func, float, type_tag.
        2 | 7..=12 | 16 | 18 => 0,
        // array: type, index type, element count.
        3 => 12,
        // struct, union, datasec, enum64: 12 bytes per member.
        4 | 5 | 15 | 19 => 12 * vlen,
        // enum, func_proto: 8 bytes per entry.
        6 | 13 => 8 * vlen,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BTF with an int, a struct `task_struct { int pid; int tgid; }` (at bit offsets 0
    /// and 32, or `tgid_bits`), and a string table.
    fn btf(tgid_bits: u32, kind_flag: bool) -> Vec<u8> {
        let strings = b"\0int\0task_struct\0pid\0tgid\0";
        let mut types = Vec::new();
        let mut put = |words: &[u32]| words.iter().for_each(|w| types.extend(w.to_le_bytes()));
        put(&[1, 1 << 24, 4, 32]); // int, 4 bytes, 32 bits
        let flag = if kind_flag { 1 << 31 } else { 0 };
        put(&[5, flag | (KIND_STRUCT << 24) | 2, 8]);
        put(&[17, 1, 0]);
        put(&[21, 1, tgid_bits]);
        let mut data = Vec::new();
        for word in [0x0001_eb9f_u32, 24, 0, types.len() as u32] {
            data.extend(word.to_le_bytes());
        }
        for word in [types.len() as u32, strings.len() as u32] {
            data.extend(word.to_le_bytes());
        }
        data.extend(&types);
        data.extend(strings);
        data
    }

    #[test]
    fn finds_a_member_offset() {
        assert_eq!(
            field_offset(&btf(32, false), "task_struct", "tgid"),
            Some(4)
        );
        assert_eq!(field_offset(&btf(32, false), "task_struct", "pid"), Some(0));
        assert_eq!(
            field_offset(&btf(32 | (3 << 24), true), "task_struct", "tgid"),
            Some(4)
        );
    }

    #[test]
    fn missing_or_odd_fields_and_garbage_give_none() {
        assert_eq!(field_offset(&btf(32, false), "task_struct", "comm"), None);
        assert_eq!(field_offset(&btf(32, false), "mm_struct", "tgid"), None);
        assert_eq!(field_offset(&btf(33, false), "task_struct", "tgid"), None);
        let data = btf(32, false);
        for len in 0..data.len() {
            // Never a panic on a cut file.
            let _ = field_offset(&data[..len], "task_struct", "tgid");
        }
        assert_eq!(field_offset(b"not btf at all, not at all", "a", "b"), None);
    }

    #[test]
    fn this_kernel_has_task_struct_tgid() {
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return;
        }
        let offset = kernel_field_offset("task_struct", "tgid").expect("tgid offset");
        let pid = kernel_field_offset("task_struct", "pid").expect("pid offset");
        // pid_t pid; pid_t tgid; are adjacent in every kernel since 2.6.
        assert_eq!(offset, pid + 4);
    }
}
