//! Firmware and boot: memory layout, e820, and the loaders that put a
//! kernel into guest memory (the job of bhyveload(8) on FreeBSD).

pub mod acpi;
pub mod entry;
pub mod layout;
pub mod loader;
pub mod mptable;
pub mod smbios;

pub use acpi::{AcpiError, AcpiSpec, FwCfgAcpi, PciRootSpec, PrtEntry};
pub use entry::{EntryMode, EntryState};
pub use layout::{E820Entry, E820Type, MemLayout, MemRegion};
pub use loader::{load_linux, LoadError};
pub use mptable::{MpTableError, MpTableSpec};
