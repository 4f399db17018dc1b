//! PCI emulation (bhyve's `pci_emul.c`): one bus (bus 0) of 32 slots ×
//! 8 functions behind configuration mechanism #1 (0xcf8/0xcfc) and ECAM,
//! BARs placed in bhyve's I/O and memory windows, expansion ROMs, INTx
//! through the LPC bridge's PIRQ registers, MSI and MSI-X.
//!
//! A device implements [`PciDevice`]: it owns a [`PciConfig`] (header,
//! BARs, capabilities: the generic part every function shares) and
//! answers its BAR accesses. Everything generic — BAR sizing and moves,
//! the command register's decode bits, the MSI/MSI-X registers and
//! tables, masking and pending bits — is done here, so a device never
//! touches the bus: it calls [`PciConfig::raise_interrupt`] (or
//! `set_intx`) and the configuration decides how the interrupt leaves.
//!
//! Interrupts leave through a [`PciInterrupts`] the vmm supplies (KVM
//! GSI routes and irqfds); unit tests supply recording ones.
//!
//! Lock order: the root (configuration accesses) before a function's
//! mutex; a function never calls into the root. BAR accesses lock only
//! the function.

pub mod config;
pub mod hostbridge;
pub mod intx;
pub mod lpc;
pub mod msi;
pub mod piix4_pm;
pub mod root;
#[cfg(test)]
mod tests;

pub use config::{BarKind, PciConfig, PciId};
pub use hostbridge::HostBridge;
pub use intx::{IntxRoute, PirqRouter, PirqTable};
pub use lpc::LpcBridge;
pub use root::{PciAddress, PciRoot, PciWindows};

/// Slots on a bus and functions in a slot.
pub const PCI_SLOTS: u8 = 32;
pub const PCI_FUNCS: u8 = 8;
/// Configuration space of one function through ECAM (PCIe size); the
/// first 256 bytes are also reachable through mechanism #1.
pub const CFG_SPACE_SIZE: usize = 4096;
pub const LEGACY_CFG_SIZE: usize = 256;

/// Configuration mechanism #1: address register and data window.
pub const CONF1_ADDR_PORT: u64 = 0xcf8;
pub const CONF1_DATA_PORT: u64 = 0xcfc;

/// bhyve's PCI windows (`pci_emul.c`): ECAM at 3.5 GiB (256 buses × 1
/// MiB), 32-bit BARs between the top of low memory (3 GiB) and ECAM, I/O
/// BARs from 0x2000, 64-bit BARs in a 32 GiB window above high memory.
pub const ECAM_BASE: u64 = 0xe000_0000;
pub const ECAM_SIZE: u64 = 256 << 20;
pub const MEM32_BASE: u64 = 0xc000_0000;
pub const MEM32_LIMIT: u64 = ECAM_BASE;
pub const IO_BASE: u64 = 0x2000;
pub const IO_LIMIT: u64 = 0x1_0000;
pub const MEM64_SIZE: u64 = 32 << 30;
/// bhyve puts 64-bit BARs up to this size in the 32-bit window: some
/// drivers misbehave with BARs above 4 GiB.
pub const MEM64_LOW_THRESHOLD: u64 = 128 << 20;

/// The 64-bit window for a VM with `highmem` bytes of RAM above 4 GiB:
/// the next 32 GiB boundary after it (bhyve's rule).
pub fn mem64_window(highmem: u64) -> (u64, u64) {
    let base = ((4u64 << 30) + highmem).div_ceil(MEM64_SIZE) * MEM64_SIZE;
    (base, base + MEM64_SIZE)
}

/// A message-signalled interrupt: the write a device makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// How one function's interrupts leave it, supplied by the vmm.
///
/// MSI and MSI-X vectors are routed ahead of time (`route_msi`, called
/// whenever the guest changes a vector's address, data, mask or enable)
/// so that firing one (`fire_msi`) is cheap and can come from any thread
/// (KVM: a GSI route plus an irqfd per vector).
pub trait PciInterrupts: Send + Sync {
    /// The function's INTx pin: asserted (true) or deasserted.
    fn set_intx(&self, asserted: bool);
    /// Vector `vector` now delivers `msg`; `None`: it is disabled or
    /// masked and will not be fired.
    fn route_msi(&self, vector: u16, msg: Option<MsiMessage>);
    /// Delivers vector `vector` as last routed.
    fn fire_msi(&self, vector: u16);
}

/// A PCI function.
pub trait PciDevice: Send {
    fn config(&self) -> &PciConfig;
    fn config_mut(&mut self) -> &mut PciConfig;

    /// A read of BAR `bar` at `offset` (inside the BAR's size). MSI-X
    /// table and PBA accesses never reach the device.
    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        let _ = (bar, offset);
        data.fill(0xff);
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        let _ = (bar, offset, data);
    }

    /// Device-specific configuration registers: return true when the
    /// device answered the read itself.
    fn cfg_read(&mut self, offset: u16, data: &mut [u8]) -> bool {
        let _ = (offset, data);
        false
    }

    /// Device-specific configuration registers (bhyve's `pe_cfgwrite`),
    /// asked first: return true when the device consumed the write and
    /// the generic handling must not apply it.
    fn cfg_write(&mut self, offset: u16, data: &[u8]) -> bool {
        let _ = (offset, data);
        false
    }

    /// Device reset (the configuration header is reset by the root).
    fn reset(&mut self) {}

    /// BAR `bar` is now decoded at `base` (`None`: no longer decoded),
    /// after the guest moved it or toggled decoding. Devices with
    /// doorbells re-register them here ([`Doorbells`]).
    fn bar_mapped(&mut self, bar: u8, base: Option<u64>) {
        let _ = (bar, base);
    }
}

/// Where a doorbell lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorbellSpace {
    Pio,
    Mmio,
}

/// A doorbell: a guest write to `addr` of `len` bytes (0: any length),
/// optionally only of the value `datamatch`, signals `evt` instead of
/// reaching the device through a VM exit and the bus (KVM ioeventfd).
/// Devices must still handle the same write through `bar_write`: the
/// fast path is optional (registration may fail, or not be offered).
pub trait Doorbells: Send + Sync {
    fn register(
        &self,
        space: DoorbellSpace,
        addr: u64,
        len: u8,
        datamatch: Option<u64>,
        evt: &vmm_sys_util::eventfd::EventFd,
    ) -> std::io::Result<()>;
    fn unregister(
        &self,
        space: DoorbellSpace,
        addr: u64,
        len: u8,
        datamatch: Option<u64>,
        evt: &vmm_sys_util::eventfd::EventFd,
    ) -> std::io::Result<()>;
}

/// Little-endian value of an access of 1–8 bytes.
pub(crate) fn le_value(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

/// Fills an access of 1–8 bytes with the low bytes of `v`.
pub(crate) fn put_le(data: &mut [u8], v: u64) {
    let b = v.to_le_bytes();
    let n = data.len().min(8);
    data[..n].copy_from_slice(&b[..n]);
    data[n..].fill(0);
}
