//! Device models as plain state machines.
//!
//! Nothing in this crate talks to KVM: a device sees register accesses
//! through [`bus::BusDevice`], raises interrupts through an [`IrqLine`] and
//! asks for VM-level actions (reset, power-off, test exit) through a
//! [`VmControl`]. The vmm crate supplies KVM-backed implementations; unit
//! tests supply recording ones.

pub mod acpi_pm;
pub mod ahci;
pub mod atkbdc;
pub mod blockif;
pub mod bus;
pub mod calendar;
pub mod chardev;
pub mod debugcon;
pub mod e1000;
pub mod fuzzing;
pub mod fw_cfg;
pub mod fwctl;
pub mod hpet;
#[cfg(test)]
mod net_test_util;
pub mod nvme;
pub mod pci;
pub mod pctestdev;
pub mod post;
pub mod ps2kbd;
pub mod ps2mouse;
pub mod ramdisk;
pub mod reset;
pub mod rtc;
#[cfg(test)]
mod testutil;
pub mod timer;
pub mod uart;
pub mod uart_pci;
pub mod virtio;

pub use acpi_pm::AcpiPm;
pub use atkbdc::Atkbdc;
pub use bus::{Bus, BusDevice, BusError};
pub use chardev::{CharFrontend, Notifier};
pub use debugcon::Debugcon;
pub use fw_cfg::{FwCfg, FwCfgBuilder, FwCfgError};
pub use hpet::Hpet;
pub use pctestdev::PcTestDev;
pub use post::Post;
pub use reset::ResetControl;
pub use rtc::Rtc;
pub use uart::Uart;

/// One interrupt input of the platform (an ISA IRQ / IOAPIC pin).
pub trait IrqLine: Send + Sync {
    /// Drives the line. Level-triggered users hold it high while their
    /// condition lasts; edge users call [`IrqLine::pulse`].
    fn set_level(&self, high: bool);

    /// One edge: high, then low again.
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// Delivers message-signalled interrupts (a write of `data` to the
/// local APIC address `address`), e.g. the HPET's FSB interrupts.
pub trait MsiSink: Send + Sync {
    fn send_msi(&self, address: u64, data: u32);
}

/// Why a device wants the VM to stop, mapped to bhyve(8)'s exit status by
/// the vmm (0 reboot, 1 power-off, 2 halt, 3 triple fault, 4 error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitRequest {
    Reboot,
    PowerOff,
    Halt,
    TripleFault,
    Error(String),
    /// A raw exit status, used by pc-testdev's isa-debug-exit port.
    Status(i32),
}

impl ExitRequest {
    /// bhyve(8)'s exit status for this request.
    pub fn exit_status(&self) -> i32 {
        match self {
            ExitRequest::Reboot => 0,
            ExitRequest::PowerOff => 1,
            ExitRequest::Halt => 2,
            ExitRequest::TripleFault => 3,
            ExitRequest::Error(_) => 4,
            ExitRequest::Status(s) => *s,
        }
    }
}

/// The VM as seen from a device.
pub trait VmControl: Send + Sync {
    /// Asks the VM to stop. The first request wins; later ones are ignored.
    fn request_exit(&self, req: ExitRequest);
}
