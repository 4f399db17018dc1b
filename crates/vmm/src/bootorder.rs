//! QEMU fw_cfg's `bootorder` file from the `bootindex=N` of bootable PCI
//! devices, as bhyve's `pci_emul_add_boot_device` / `init_bootorder`.
//!
//! Each bootable device registers itself while the PCI bus is built
//! (`bootindex` in its configuration node); the file lists their
//! OpenFirmware paths, lowest index first, one per line, and is served
//! only when at least one device asked for it (with `lpc.fwcfg=qemu`).
//! SeaBIOS and OVMF then try those devices first, in that order.
//!
//! Errors are bhyve's, fatal at start (exit 4): a negative index, or an
//! index another device holds already.
//!
//! Differs from bhyve: the unit address is hexadecimal, as OpenFirmware
//! paths are and as edk2's and SeaBIOS's parsers read it (bhyve prints
//! the slot in decimal, which names another slot from 10 on).

use crate::MachineError;

/// The fw_cfg file name.
pub const BOOTORDER_FILE: &str = "bootorder";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootOrderError {
    #[error("Invalid bootindex {index} for {name}")]
    Invalid { index: i64, name: String },
    #[error("Could not set bootindex {index} for {name}. Bootindex already occupied by {other}")]
    Occupied {
        index: i64,
        name: String,
        other: String,
    },
}

impl From<BootOrderError> for MachineError {
    fn from(e: BootOrderError) -> Self {
        MachineError::new(e.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BootDevice {
    index: i64,
    name: String,
    path: String,
}

/// The boot devices, sorted by index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootOrder {
    devices: Vec<BootDevice>,
}

/// The OpenFirmware path of PCI function `slot.func` on bus 0 (behind
/// the conf1 host bridge, `i0cf8`). Function 0 has no `,0`, as QEMU
/// writes it: SeaBIOS's matcher requires the unit address to end there.
pub fn pci_path(slot: u8, func: u8) -> String {
    if func == 0 {
        format!("/pci@i0cf8/pci@{slot:x}")
    } else {
        format!("/pci@i0cf8/pci@{slot:x},{func:x}")
    }
}

impl BootOrder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `name` (bhyve's `emulation@pci.B.S.F`) at `path` with
    /// its `bootindex`.
    pub fn add(&mut self, index: i64, name: &str, path: String) -> Result<(), BootOrderError> {
        if index < 0 {
            return Err(BootOrderError::Invalid {
                index,
                name: name.to_string(),
            });
        }
        if let Some(d) = self.devices.iter().find(|d| d.index == index) {
            return Err(BootOrderError::Occupied {
                index,
                name: name.to_string(),
                other: d.name.clone(),
            });
        }
        let at = self.devices.partition_point(|d| d.index < index);
        self.devices.insert(
            at,
            BootDevice {
                index,
                name: name.to_string(),
                path,
            },
        );
        Ok(())
    }

    /// Registers PCI function `slot.func` of bus 0.
    pub fn add_pci(
        &mut self,
        index: i64,
        name: &str,
        slot: u8,
        func: u8,
    ) -> Result<(), BootOrderError> {
        self.add(index, name, pci_path(slot, func))
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The file's contents; None when no device has a boot index (bhyve
    /// then adds no file).
    pub fn file(&self) -> Option<Vec<u8>> {
        if self.devices.is_empty() {
            return None;
        }
        let mut s = String::new();
        for d in &self.devices {
            s.push_str(&d.path);
            s.push('\n');
        }
        Some(s.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_by_index_one_path_per_line() {
        let mut b = BootOrder::new();
        assert_eq!(b.file(), None);
        b.add_pci(2, "virtio-blk@pci.0.4.0", 4, 0).unwrap();
        b.add_pci(0, "nvme@pci.0.12.0", 12, 0).unwrap();
        b.add_pci(1, "ahci@pci.0.3.1", 3, 1).unwrap();
        assert_eq!(
            String::from_utf8(b.file().unwrap()).unwrap(),
            "/pci@i0cf8/pci@c\n/pci@i0cf8/pci@3,1\n/pci@i0cf8/pci@4\n"
        );
    }

    #[test]
    fn bhyve_errors() {
        let mut b = BootOrder::new();
        b.add_pci(1, "virtio-blk@pci.0.4.0", 4, 0).unwrap();
        let e = b.add_pci(1, "nvme@pci.0.5.0", 5, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Could not set bootindex 1 for nvme@pci.0.5.0. Bootindex already occupied by virtio-blk@pci.0.4.0"
        );
        let e = b.add_pci(-1, "nvme@pci.0.5.0", 5, 0).unwrap_err();
        assert_eq!(e.to_string(), "Invalid bootindex -1 for nvme@pci.0.5.0");
        let m: MachineError = e.into();
        assert_eq!(m.exit_code(), 4);
        assert_eq!(b.file().unwrap(), b"/pci@i0cf8/pci@4\n");
    }
}
