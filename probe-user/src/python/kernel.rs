//! The part of a [`PyLayout`] the kernel's frame walk needs, as the shared record
//! [`PyLayoutKernel`] (see `probe-ebpf/src/python.rs`).

use probe_common::{PyLayoutKernel, PY_ABSENT, PY_FRAME_READ_BYTES};

use super::offsets::{InstrKind, PyLayout};

/// Why a layout cannot be walked by the kernel.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelLayoutError {
    /// The frame fields span more than one kernel read allows.
    #[error("the frame fields span {0} bytes, more than the kernel reads per frame")]
    SpanTooWide(u64),
    /// A field does not fit the kernel's word-wise extraction.
    #[error("frame field `{0}` is misaligned or out of range")]
    Misaligned(&'static str),
}

impl PyLayout {
    /// The offsets for the kernel walker.
    pub fn kernel(&self) -> Result<PyLayoutKernel, KernelLayoutError> {
        let instr_size = match self.instr {
            InstrKind::LastiBytes | InstrKind::LastiCodeUnits => 4,
            InstrKind::PrevInstrPtr | InstrKind::InstrPtr => 8,
        };
        // (name, offset, size) of every frame field read.
        let mut fields = vec![
            ("previous", self.frame_previous, 8),
            ("code", self.frame_code, 8),
            ("instr", self.frame_instr, instr_size),
        ];
        let shim_check = self.frame_owner.zip(self.frame_owned_by_cstack);
        if let Some((owner, _)) = shim_check {
            fields.push(("owner", owner, 1));
        }
        if let Some(is_entry) = self.frame_is_entry {
            fields.push(("is_entry", is_entry, 1));
        }
        let start = fields.iter().map(|f| f.1).min().unwrap_or(0) & !7;
        let end = fields.iter().map(|f| f.1 + f.2).max().unwrap_or(0);
        if end - start > u64::from(PY_FRAME_READ_BYTES) {
            return Err(KernelLayoutError::SpanTooWide(end - start));
        }
        for &(name, offset, size) in &fields {
            // The kernel reads whole words and shifts: a field must not straddle two.
            if (offset - start) % 8 + size > 8 || offset % size != 0 {
                return Err(KernelLayoutError::Misaligned(name));
            }
        }
        let narrow = |v: u64| v as u32;
        Ok(PyLayoutKernel {
            tstate_frame: narrow(self.tstate_frame),
            cframe_current_frame: self.cframe_current_frame.map_or(PY_ABSENT, narrow),
            frame_read_start: narrow(start),
            frame_read_len: narrow(end - start),
            frame_previous: narrow(self.frame_previous),
            frame_code: narrow(self.frame_code),
            frame_instr: narrow(self.frame_instr),
            instr_kind: self.instr as u32,
            frame_owner: shim_check.map_or(PY_ABSENT, |(owner, _)| narrow(owner)),
            owned_by_cstack: shim_check.map_or(PY_ABSENT, |(_, value)| narrow(value)),
            code_code_adaptive: self.code_code_adaptive.map_or(0, narrow),
            frame_is_entry: self.frame_is_entry.map_or(PY_ABSENT, narrow),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_fits_the_kernel_walk() {
        for minor in 8..=13 {
            let layout = PyLayout::table_row(3, minor).unwrap();
            let k = layout.kernel().unwrap_or_else(|e| panic!("3.{minor}: {e}"));
            assert!(k.frame_read_len <= PY_FRAME_READ_BYTES, "3.{minor}");
            assert_eq!(k.frame_read_start % 8, 0);
            assert_eq!(
                k.cframe_current_frame != PY_ABSENT,
                (11..=12).contains(&minor)
            );
            assert_eq!(k.frame_owner != PY_ABSENT, minor >= 12, "3.{minor}");
        }
        let k = PyLayout::table_row(3, 8).unwrap().kernel().unwrap();
        assert_eq!((k.frame_read_start, k.frame_read_len), (24, 84));
        assert_eq!(k.instr_kind, probe_common::PyInstrKind::LastiBytes as u32);
    }

    #[test]
    fn wide_or_straddling_layouts_are_refused() {
        let mut layout = PyLayout::table_row(3, 12).unwrap();
        layout.frame_instr = 400;
        assert_eq!(layout.kernel(), Err(KernelLayoutError::SpanTooWide(408)));
        let mut layout = PyLayout::table_row(3, 12).unwrap();
        layout.frame_instr = 52;
        assert_eq!(layout.kernel(), Err(KernelLayoutError::Misaligned("instr")));
    }
}
