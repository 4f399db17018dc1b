//! Firmware and boot: memory layout, e820, and the loaders that put a
//! kernel into guest memory (the job of bhyveload(8) on FreeBSD).

pub mod entry;

pub use entry::{EntryMode, EntryState};
