//! MSRs the guest touches that KVM does not know (`-w`).
//!
//! bhyve's default (`x86.strictmsr=true`) injects #GP for unknown MSRs,
//! which is also KVM's behaviour. With `-w` bhyve reads them as 0 and
//! ignores writes; here KVM forwards such accesses to userspace
//! (`KVM_CAP_X86_USER_SPACE_MSR` with the "unknown" reason) and we answer.

use kvm_bindings::{kvm_enable_cap, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_UNKNOWN};
use kvm_ioctls::{ReadMsrExit, VmFd, WriteMsrExit};

/// Asks KVM to exit to userspace for unknown MSRs.
pub fn enable_unknown_msr_exits(fd: &VmFd) -> Result<(), std::io::Error> {
    if fd.check_extension_raw(KVM_CAP_X86_USER_SPACE_MSR.into()) <= 0 {
        return Err(std::io::Error::from_raw_os_error(libc::ENOTSUP));
    }
    let cap = kvm_enable_cap {
        cap: KVM_CAP_X86_USER_SPACE_MSR,
        args: [KVM_MSR_EXIT_REASON_UNKNOWN.into(), 0, 0, 0],
        ..Default::default()
    };
    fd.enable_cap(&cap)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// An unknown MSR read: 0, no fault.
pub fn answer_read(exit: ReadMsrExit<'_>) {
    log::debug!("rdmsr {:#x} (unknown) -> 0", exit.index);
    *exit.data = 0;
    *exit.error = 0;
}

/// An unknown MSR write: dropped, no fault.
pub fn answer_write(exit: WriteMsrExit<'_>) {
    log::debug!(
        "wrmsr {:#x} <- {:#x} (unknown) ignored",
        exit.index,
        exit.data
    );
    *exit.error = 0;
}
