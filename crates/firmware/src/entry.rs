//! How a loaded guest is entered: the state of vCPU 0 after a loader ran.
//!
//! Loaders (bzImage, PVH) write everything the entry needs — boot_params or
//! hvm_start_info, command line, initrd, GDT, page tables — into guest
//! memory and describe the registers here. The vmm applies the state to
//! vCPU 0; the named-VM store persists it between `bhyveload` and `bhyve`
//! as `key=value` lines.

use std::fmt::Write as _;

/// The CPU mode at entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// 32-bit protected mode, paging off, flat 4 GiB code/data segments
    /// (the PVH boot ABI: `rbx` = hvm_start_info address).
    Protected32,
    /// 64-bit long mode with identity page tables at `cr3` (Linux's 64-bit
    /// boot protocol: `rsi` = boot_params address).
    Long64,
    /// The x86 power-on state: real mode at the reset vector
    /// (CS 0xf000 with base 0xffff_0000, IP 0xfff0), as a boot ROM expects.
    /// The other fields are unused; [`EntryState::reset`] sets them to 0.
    Reset,
}

/// Registers of vCPU 0 at entry. Segment selectors and descriptors follow
/// from `mode` and the GDT the loader wrote at `gdt_base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryState {
    pub mode: EntryMode,
    pub rip: u64,
    pub rsp: u64,
    pub rbx: u64,
    pub rsi: u64,
    /// Page-table root; 0 in `Protected32`.
    pub cr3: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
}

/// CS selector at the reset vector (with base [`RESET_CS_BASE`]).
pub const RESET_CS_SELECTOR: u16 = 0xf000;
/// CS base at power-on: the top 64 KiB below 4 GiB, so the first
/// instruction is fetched from 0xffff_fff0, inside the boot ROM.
pub const RESET_CS_BASE: u64 = 0xffff_0000;
/// IP at power-on.
pub const RESET_IP: u64 = 0xfff0;

/// Selector of the flat 32-bit code segment in the boot GDT.
pub const SEL_CODE32: u16 = 0x08;
/// Selector of the flat 64-bit code segment (Linux's `__BOOT_CS`).
pub const SEL_CODE64: u16 = 0x10;
/// Selector of the flat read/write data segment (Linux's `__BOOT_DS`).
pub const SEL_DATA: u16 = 0x18;

/// The GDT every loader writes at `gdt_base` (`gdt_limit` =
/// `8 * BOOT_GDT.len() - 1`), indexed by selector / 8: null, code32,
/// code64, data. All segments are flat (base 0, 4 GiB limit, DPL 0,
/// accessed). Linux's 64-bit boot protocol requires code at 0x10 and data
/// at 0x18; PVH only needs some flat 32-bit code and data.
pub const BOOT_GDT: [u64; 4] = [
    0,
    0x00cf_9b00_0000_ffff,
    0x00af_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
];

impl EntryState {
    /// The power-on state: a boot ROM runs from the reset vector.
    pub fn reset() -> Self {
        EntryState {
            mode: EntryMode::Reset,
            rip: RESET_IP,
            rsp: 0,
            rbx: 0,
            rsi: 0,
            cr3: 0,
            gdt_base: 0,
            gdt_limit: 0xffff,
        }
    }

    /// CS at entry: 32-bit code for `Protected32`, 64-bit code for
    /// `Long64`, the reset selector for `Reset`.
    pub fn code_selector(&self) -> u16 {
        match self.mode {
            EntryMode::Protected32 => SEL_CODE32,
            EntryMode::Long64 => SEL_CODE64,
            EntryMode::Reset => RESET_CS_SELECTOR,
        }
    }

    /// DS, ES, FS, GS and SS at entry.
    pub fn data_selector(&self) -> u16 {
        match self.mode {
            EntryMode::Reset => 0,
            _ => SEL_DATA,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid saved entry state: {0}")]
pub struct EntryParseError(pub String);

impl EntryState {
    /// `key=value` lines, one per field.
    pub fn to_kv(&self) -> String {
        let mode = match self.mode {
            EntryMode::Protected32 => "protected32",
            EntryMode::Long64 => "long64",
            EntryMode::Reset => "reset",
        };
        let mut s = format!("mode={mode}\n");
        for (k, v) in [
            ("rip", self.rip),
            ("rsp", self.rsp),
            ("rbx", self.rbx),
            ("rsi", self.rsi),
            ("cr3", self.cr3),
            ("gdt_base", self.gdt_base),
            ("gdt_limit", self.gdt_limit as u64),
        ] {
            let _ = writeln!(s, "{k}={v:#x}");
        }
        s
    }

    /// Parses [`EntryState::to_kv`] output; unknown keys are ignored.
    pub fn from_kv(text: &str) -> Result<Self, EntryParseError> {
        let mut mode = None;
        let mut vals = [None::<u64>; 7];
        const KEYS: [&str; 7] = ["rip", "rsp", "rbx", "rsi", "cr3", "gdt_base", "gdt_limit"];
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| EntryParseError(format!("line '{line}'")))?;
            if k == "mode" {
                mode = Some(match v {
                    "protected32" => EntryMode::Protected32,
                    "long64" => EntryMode::Long64,
                    "reset" => EntryMode::Reset,
                    _ => return Err(EntryParseError(format!("mode '{v}'"))),
                });
            } else if let Some(i) = KEYS.iter().position(|x| *x == k) {
                let n = v
                    .strip_prefix("0x")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .ok_or_else(|| EntryParseError(format!("{k}='{v}'")))?;
                vals[i] = Some(n);
            }
        }
        let get = |i: usize| vals[i].ok_or_else(|| EntryParseError(format!("missing {}", KEYS[i])));
        let gdt_limit = u16::try_from(get(6)?).map_err(|_| EntryParseError("gdt_limit".into()))?;
        Ok(EntryState {
            mode: mode.ok_or_else(|| EntryParseError("missing mode".into()))?,
            rip: get(0)?,
            rsp: get(1)?,
            rbx: get(2)?,
            rsi: get(3)?,
            cr3: get(4)?,
            gdt_base: get(5)?,
            gdt_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_round_trip() {
        let e = EntryState {
            mode: EntryMode::Long64,
            rip: 0x100200,
            rsp: 0x8ff0,
            rbx: 0,
            rsi: 0x7000,
            cr3: 0x9000,
            gdt_base: 0x500,
            gdt_limit: 0x1f,
        };
        assert_eq!(EntryState::from_kv(&e.to_kv()).unwrap(), e);
        assert!(EntryState::from_kv("mode=long64\n").is_err());
        assert!(EntryState::from_kv(&e.to_kv().replace("long64", "real16")).is_err());
        let r = EntryState::reset();
        assert_eq!(EntryState::from_kv(&r.to_kv()).unwrap(), r);
        assert_eq!((r.code_selector(), r.rip), (0xf000, 0xfff0));
        // CS base + IP is the architectural reset vector.
        assert_eq!(RESET_CS_BASE + RESET_IP, 0xffff_fff0);
    }
}
