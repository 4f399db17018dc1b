//! Per-vCPU exit counters, read by `bhyvectl --get-stats` through the
//! control socket while the vCPUs run.
//!
//! Counters are relaxed atomics written only by their vCPU thread; readers
//! get a consistent-enough snapshot without stopping anything.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a vCPU came back from `KVM_RUN`, as counted in [`VcpuStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum ExitKind {
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    MsrRead,
    MsrWrite,
    /// `KVM_RUN` interrupted by a signal (our kicks included).
    Interrupted,
    Hlt,
    Shutdown,
    SystemEvent,
    Other,
}

impl ExitKind {
    pub const ALL: [ExitKind; 11] = [
        ExitKind::IoIn,
        ExitKind::IoOut,
        ExitKind::MmioRead,
        ExitKind::MmioWrite,
        ExitKind::MsrRead,
        ExitKind::MsrWrite,
        ExitKind::Interrupted,
        ExitKind::Hlt,
        ExitKind::Shutdown,
        ExitKind::SystemEvent,
        ExitKind::Other,
    ];

    /// The counter's name in `--get-stats` output.
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::IoIn => "vm exits due to inout (in)",
            ExitKind::IoOut => "vm exits due to inout (out)",
            ExitKind::MmioRead => "vm exits due to mmio (read)",
            ExitKind::MmioWrite => "vm exits due to mmio (write)",
            ExitKind::MsrRead => "vm exits due to rdmsr",
            ExitKind::MsrWrite => "vm exits due to wrmsr",
            ExitKind::Interrupted => "vm exits due to signals",
            ExitKind::Hlt => "vm exits due to hlt",
            ExitKind::Shutdown => "vm exits due to shutdown",
            ExitKind::SystemEvent => "vm exits due to system events",
            ExitKind::Other => "vm exits for other reasons",
        }
    }
}

/// Live counters of one vCPU.
#[derive(Debug, Default)]
pub struct VcpuCounters {
    counts: [AtomicU64; ExitKind::ALL.len()],
}

impl VcpuCounters {
    pub fn bump(&self, kind: ExitKind) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, kind: ExitKind) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// Exits the guest caused itself (everything except signals): the halt
    /// detector treats a vCPU whose count moved as busy.
    pub fn guest_exits(&self) -> u64 {
        ExitKind::ALL
            .iter()
            .filter(|k| **k != ExitKind::Interrupted)
            .map(|k| self.get(*k))
            .sum()
    }

    pub fn snapshot(&self) -> VcpuStats {
        let mut counters: Vec<(&'static str, u64)> = ExitKind::ALL
            .iter()
            .map(|k| (k.name(), self.get(*k)))
            .collect();
        let total = counters.iter().map(|c| c.1).sum();
        counters.insert(0, ("total number of vm exits", total));
        VcpuStats { counters }
    }
}

/// A snapshot of one vCPU's counters, in display order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuStats {
    pub counters: Vec<(&'static str, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_snapshot() {
        let c = VcpuCounters::default();
        c.bump(ExitKind::IoOut);
        c.bump(ExitKind::IoOut);
        c.bump(ExitKind::Interrupted);
        assert_eq!(c.get(ExitKind::IoOut), 2);
        assert_eq!(c.guest_exits(), 2);
        let s = c.snapshot();
        assert_eq!(s.counters[0], ("total number of vm exits", 3));
        assert!(s.counters.contains(&("vm exits due to inout (out)", 2)));
        assert_eq!(s.counters.len(), ExitKind::ALL.len() + 1);
    }
}
