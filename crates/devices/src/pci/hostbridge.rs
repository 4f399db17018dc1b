//! bhyve's host bridge (`pci_hostbridge.c`): a class 06/00 function
//! with a PCI Express root-port capability and nothing else. Its IDs are
//! NetApp's by default, AMD's for `amd_hostbridge`, and anything through
//! `pcireg.*` (e.g. QEMU's i440FX 8086:1237 for firmware built for QEMU).

use super::config::{PciConfig, PciId, CLASS_BRIDGE};
use super::PciDevice;

/// bhyve's default IDs (NetApp).
pub const HOSTBRIDGE_VENDOR: u16 = 0x1275;
pub const HOSTBRIDGE_DEVICE: u16 = 0x1275;
/// `amd_hostbridge`'s (the device ID is made up by bhyve).
pub const AMD_VENDOR: u16 = 0x1022;
pub const AMD_DEVICE: u16 = 0x7432;

pub const SUBCLASS_HOST: u8 = 0x00;

/// The PCI Express capability (version 2) bhyve gives the host bridge.
const CAP_ID_PCIE: u8 = 0x10;
const PCIE_TYPE_ROOT_PORT: u16 = 0x4;

pub struct HostBridge {
    config: PciConfig,
}

impl HostBridge {
    /// `id`'s class fields are forced to a host bridge.
    pub fn new(id: PciId) -> Self {
        let mut config = PciConfig::new(PciId {
            class: CLASS_BRIDGE,
            subclass: SUBCLASS_HOST,
            prog_if: 0,
            ..id
        });
        // Capabilities register: version 2, root port. Link capabilities
        // and status: x1 at 2.5 GT/s, link up, like bhyve's.
        let mut body = vec![0u8; 0x3c - 2];
        body[..2].copy_from_slice(&(2 | (PCIE_TYPE_ROOT_PORT << 4)).to_le_bytes());
        body[0x0c - 2..0x10 - 2].copy_from_slice(&0x0000_0011u32.to_le_bytes());
        body[0x12 - 2..0x14 - 2].copy_from_slice(&0x0011u16.to_le_bytes());
        config
            .add_capability(CAP_ID_PCIE, &body, &[])
            .expect("an empty configuration space has room");
        HostBridge { config }
    }

    /// bhyve's default identity.
    pub fn bhyve_id() -> PciId {
        PciId {
            vendor: HOSTBRIDGE_VENDOR,
            device: HOSTBRIDGE_DEVICE,
            ..PciId::default()
        }
    }
}

impl PciDevice for HostBridge {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
}
