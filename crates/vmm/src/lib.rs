//! The KVM side of bhyve: the VM, guest RAM, vCPU threads and their
//! exits, CPUID/MSRs, lifecycle, the named-VM store and control socket.

pub mod ahci;
pub mod boot;
pub mod bootorder;
pub mod bootrom;
pub mod control;
pub mod cpuid;
pub mod e1000;
pub mod exits;
pub mod fwtables;
pub mod gsi;
pub mod kvm_vm;
pub mod lifecycle;
pub mod machine;
pub mod memory;
pub mod msr;
pub mod nvme;
pub mod pci;
pub mod platform;
pub mod signals;
pub mod stats;
pub mod store;
#[cfg(test)]
mod testutil;
pub mod uart_pci;
pub mod vcpu;
pub mod virtio;

pub use lifecycle::Lifecycle;
pub use stats::VcpuStats;

/// Errors setting up or running the VM. All map to bhyve's exit status 4.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("{0}: {1}")]
    Kvm(&'static str, #[source] std::io::Error),
    #[error("{0}: {1}")]
    Host(&'static str, #[source] std::io::Error),
    #[error("KVM lacks {0}")]
    MissingCap(&'static str),
    #[error("guest memory: {0}")]
    Memory(String),
    #[error("{0}")]
    Config(String),
    #[error("GSI routing: {0}")]
    Gsi(#[from] gsi::GsiError),
}

/// A reason bhyve cannot run the VM: one line and bhyve's exit status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct MachineError {
    msg: String,
    code: i32,
}

impl MachineError {
    /// An error with bhyve's generic status 4.
    pub fn new(msg: String) -> Self {
        Self {
            msg,
            code: bhyve_config::EXIT_ERROR,
        }
    }

    pub fn with_code(msg: String, code: i32) -> Self {
        Self { msg, code }
    }

    pub fn exit_code(&self) -> i32 {
        self.code
    }
}
