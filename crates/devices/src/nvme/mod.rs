//! NVMe controller (bhyve's `pci_nvme.c`): an NVMe 1.4 PCIe function
//! with one namespace over a [`BlockIo`](crate::blockif::BlockIo)
//! backend.
//!
//! - PCI: bhyve's IDs (0xfb5d:0x0a0a), class 01/08/02; BAR 0 (64-bit
//!   memory) holds the registers and doorbells, BAR 4 the MSI-X table
//!   (one vector per queue pair: `maxq` + 1), INTx when MSI-X is off; a
//!   PCI Express capability (root complex integrated endpoint).
//! - Queues: the admin pair from AQA/ASQ/ACQ, up to `maxq` I/O pairs of
//!   up to `qsz` entries, physically contiguous (CAP.CQR).
//! - A worker thread (never a vCPU) fetches commands after a doorbell;
//!   reads, writes, flushes, deallocations and write-zeroes go to the
//!   backend's threads, whose completions post the completion entry and
//!   raise the queue's vector. At most `ioslots` I/O commands are in
//!   flight; a command is fetched only when its completion queue has a
//!   slot for it, so a full CQ stalls its SQs until the host consumes.
//! - Commands in the backend may still move data to guest memory, so
//!   what lets the host reclaim that memory waits for them: a Delete I/O
//!   SQ completes after its queue's commands, a reset (CC.EN = 0) keeps
//!   CSTS.RDY until all finished, and the shutdown flush (CC.SHN)
//!   follows them.
//! - Asynchronous events: invalid doorbell writes are logged in the
//!   Error Information log and reported as Error status events (`aen`).
//!
//! Not implemented (bhyve has none of them either): SGLs (SGLS = 0),
//! fused commands, namespace management, firmware download, interrupt
//! coalescing (the feature is stored, not applied), the Doorbell Buffer
//! Config command.

mod admin;
mod aen;
mod ctrl;
pub mod identify;
mod io;
pub mod prp;
mod queues;
pub mod regs;
pub mod spec;
#[cfg(test)]
mod tests;

pub use ctrl::NvmePci;
pub use identify::{default_eui64, DEVICE, VENDOR};

/// bhyve's limits and defaults.
pub const MAX_QUEUES: u16 = 16;
pub const DEFAULT_QUEUE_ENTRIES: u32 = 2048;
pub const DEFAULT_IOSLOTS: u32 = 8;
/// The MSI-X BAR (bhyve's NVME_MSIX_BAR).
pub const MSIX_BAR: u8 = 4;
pub const REG_BAR: u8 = 0;

/// `dsm=`: whether Dataset Management is offered (ONCS.DSM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dsm {
    /// When the backend can deallocate.
    #[default]
    Auto,
    Enable,
    Disable,
}

/// The controller's configuration (bhyve's `-s N,nvme,…` options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeParams {
    /// I/O queue pairs offered (`maxq`, 1–16).
    pub max_queues: u16,
    /// Entries per queue (`qsz`, CAP.MQES + 1, 2–65536).
    pub queue_entries: u32,
    /// I/O commands in flight at once (`ioslots`).
    pub ioslots: u32,
    /// Logical block size (`sectsz`: 512, 4096 or 8192; else the
    /// backend's).
    pub sector_size: u32,
    /// `ser`, up to 20 characters.
    pub serial: String,
    pub eui64: u64,
    pub dsm: Dsm,
}

impl NvmeParams {
    /// bhyve's defaults for the function at `slot`.`func`.
    pub fn bhyve_defaults(slot: u8, func: u8) -> Self {
        NvmeParams {
            max_queues: MAX_QUEUES,
            queue_entries: DEFAULT_QUEUE_ENTRIES,
            ioslots: DEFAULT_IOSLOTS,
            sector_size: 512,
            serial: format!("NVME-{slot}-{func}"),
            eui64: 0,
            dsm: Dsm::Auto,
        }
    }
}
