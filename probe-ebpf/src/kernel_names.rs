//! Names kernel addresses for the report with the kernel's own symbol lookup (`%ps`), so
//! userspace need not read all of /proc/kallsyms (5 MB the kernel formats line by line) to
//! name the few hundred addresses a report shows.

use aya_ebpf::{
    helpers::generated::bpf_snprintf,
    macros::{map, raw_tracepoint},
    maps::Array,
    programs::RawTracePointContext,
    EbpfContext,
};
use probe_common::{KernelName, KERNEL_NAME_BATCH, KERNEL_NAME_TEXT_BYTES};

/// The names of the latest run's addresses, slot by slot.
#[map]
static KERNEL_NAMES: Array<KernelName> = Array::with_max_entries(KERNEL_NAME_BATCH, 0);

/// The kernel's symbol for an address, without the offset: `name`, `name [module]`, or the
/// address in hex when no symbol covers it. In `.rodata`, as `bpf_snprintf` requires.
static SYMBOL_FORMAT: [u8; 4] = *b"%ps\0";

/// Never attached: userspace runs it with `BPF_PROG_TEST_RUN`, passing up to
/// `KERNEL_NAME_BATCH` addresses as the tracepoint arguments (0: none), and reads
/// their names from `KERNEL_NAMES`.
#[raw_tracepoint(tracepoint = "name_kernel_addresses")]
pub fn name_kernel_addresses(ctx: RawTracePointContext) -> i32 {
    // SAFETY: a raw tracepoint's context is its argument array; userspace's test run passes
    // all `KERNEL_NAME_BATCH` of them. Copied to the stack, where a loop may index it.
    let addrs = unsafe { *(ctx.as_ptr() as *const [u64; KERNEL_NAME_BATCH as usize]) };
    for (slot, addr) in addrs.into_iter().enumerate() {
        if addr == 0 {
            continue;
        }
        let Some(name) = KERNEL_NAMES.get_ptr_mut(slot as u32) else {
            break;
        };
        let mut args = [addr];
        // SAFETY: `name` points to a map value, valid and writable for the run; `text` is
        // `KERNEL_NAME_TEXT_BYTES` long; the format is a NUL-terminated constant in `.rodata`
        // and `args` holds the one u64 it consumes.
        unsafe {
            (*name).needed = bpf_snprintf(
                (*name).text.as_mut_ptr().cast(),
                KERNEL_NAME_TEXT_BYTES as u32,
                SYMBOL_FORMAT.as_ptr().cast(),
                args.as_mut_ptr(),
                size_of_val(&args) as u32,
            );
        }
    }
    0
}
