//! The KVM VM: creation, in-kernel interrupt controllers and timer, guest
//! RAM slots, and VM-wide capabilities chosen from bhyve's options.
//!
//! Option meanings on KVM (bhyve drives VT-x/AMD-V itself; KVM decides most
//! of this in the kernel, so these are the closest faithful knobs):
//! - `-H` (`x86.vmexit_on_hlt`): bhyve yields the host CPU on HLT instead of
//!   spinning. KVM always blocks a halted vCPU, but first polls for up to
//!   its `halt_poll_ns`; with `-H` we set `KVM_CAP_HALT_POLL` to 0 so the
//!   thread yields at once. Without `-H` KVM's default polling stays.
//! - `-P` (`x86.vmexit_on_pause`): bhyve exits on PAUSE only when asked.
//!   With `-P` KVM's pause-loop exiting stays on; without it PAUSE exits are
//!   disabled through `KVM_CAP_X86_DISABLE_EXITS` when the kernel offers it.
//! - `-w` (`x86.strictmsr=false`): unknown MSRs read 0 and ignore writes
//!   instead of raising #GP; done with `KVM_CAP_X86_USER_SPACE_MSR` (see
//!   `msr.rs`).

use std::sync::Arc;

use bhyve_devices::IrqLine;
use kvm_bindings::{
    kvm_enable_cap, kvm_pit_config, kvm_userspace_memory_region, CpuId, KVM_CAP_HALT_POLL,
    KVM_CAP_X86_DISABLE_EXITS, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
    KVM_X86_DISABLE_EXITS_PAUSE,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::VmmError;

/// KVM needs one page for the real-mode identity page table and three for
/// the TSS of VT-x real-mode emulation; both go at the top of the 3–4 GiB
/// hole, below the LAPIC/IOAPIC/BIOS area, where no RAM or device lives.
pub const IDENTITY_MAP_ADDR: u64 = 0xfeff_c000;
pub const TSS_ADDR: u64 = 0xfeff_d000;

/// VM-wide choices made from bhyve's options.
#[derive(Debug, Clone, Copy, Default)]
pub struct VmOptions {
    /// `-H`: yield the host CPU at once on HLT (no halt polling).
    pub yield_on_hlt: bool,
    /// `-P`: keep PAUSE exits.
    pub exit_on_pause: bool,
    /// `-w`: unknown MSRs are ignored instead of raising #GP.
    pub ignore_unknown_msrs: bool,
}

pub struct KvmVm {
    kvm: Kvm,
    fd: Arc<VmFd>,
    supported_cpuid: CpuId,
    user_space_msr: bool,
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |e| VmmError::Kvm(what, std::io::Error::from_raw_os_error(e.errno()))
}

impl KvmVm {
    /// Opens /dev/kvm and creates a VM with the in-kernel irqchip and PIT.
    pub fn create(opts: &VmOptions) -> Result<Self, VmmError> {
        let kvm = Kvm::new().map_err(kvm_err("open /dev/kvm"))?;
        for (cap, name) in [
            (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
            (Cap::SetIdentityMapAddr, "KVM_CAP_SET_IDENTITY_MAP_ADDR"),
            (Cap::Pit2, "KVM_CAP_PIT2"),
            (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(VmmError::MissingCap(name));
            }
        }
        let fd = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        fd.set_identity_map_address(IDENTITY_MAP_ADDR)
            .map_err(kvm_err("KVM_SET_IDENTITY_MAP_ADDR"))?;
        fd.set_tss_address(TSS_ADDR as usize)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        if opts.yield_on_hlt {
            Self::enable_vm_cap(&fd, KVM_CAP_HALT_POLL, 0).map_err(kvm_err("KVM_CAP_HALT_POLL"))?;
        }
        if !opts.exit_on_pause {
            let offered = fd.check_extension_raw(KVM_CAP_X86_DISABLE_EXITS.into());
            if offered > 0 && (offered as u32) & KVM_X86_DISABLE_EXITS_PAUSE != 0 {
                // Must precede vCPU creation.
                Self::enable_vm_cap(
                    &fd,
                    KVM_CAP_X86_DISABLE_EXITS,
                    KVM_X86_DISABLE_EXITS_PAUSE.into(),
                )
                .map_err(kvm_err("KVM_CAP_X86_DISABLE_EXITS"))?;
            }
        }
        let user_space_msr = if opts.ignore_unknown_msrs {
            match crate::msr::enable_unknown_msr_exits(&fd) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!("-w: cannot ignore unknown MSRs on this host ({e}); they raise #GP");
                    false
                }
            }
        } else {
            false
        };
        fd.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        let supported_cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        Ok(Self {
            kvm,
            fd: Arc::new(fd),
            supported_cpuid,
            user_space_msr,
        })
    }

    fn enable_vm_cap(fd: &VmFd, cap: u32, arg0: u64) -> Result<(), kvm_ioctls::Error> {
        let c = kvm_enable_cap {
            cap,
            args: [arg0, 0, 0, 0],
            ..Default::default()
        };
        fd.enable_cap(&c)
    }

    pub fn fd(&self) -> &Arc<VmFd> {
        &self.fd
    }

    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    pub fn supported_cpuid(&self) -> &CpuId {
        &self.supported_cpuid
    }

    /// Whether unknown-MSR exits reach userspace (`-w` took effect).
    pub fn user_space_msr(&self) -> bool {
        self.user_space_msr
    }

    pub fn max_vcpus(&self) -> usize {
        self.kvm.get_max_vcpus()
    }

    /// Registers every region of `mem` as a KVM memory slot. `mem` must
    /// outlive the VM (the caller keeps both in its `Machine`).
    pub fn map_memory(&self, mem: &GuestMemoryMmap) -> Result<(), VmmError> {
        for (slot, region) in mem.iter().enumerate() {
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(|e| VmmError::Memory(e.to_string()))?;
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region stays mapped for the VM's lifetime.
            unsafe { self.fd.set_user_memory_region(r) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(())
    }

    pub fn create_vcpu(&self, id: u64) -> Result<VcpuFd, VmmError> {
        self.fd.create_vcpu(id).map_err(kvm_err("KVM_CREATE_VCPU"))
    }

    /// An interrupt line for ISA IRQ `irq` (routed to the PIC and IOAPIC).
    pub fn irq_line(&self, irq: u32) -> Arc<dyn IrqLine> {
        Arc::new(KvmIrqLine {
            vm: self.fd.clone(),
            irq,
        })
    }
}

/// An ISA interrupt line driven through `KVM_IRQ_LINE`.
pub struct KvmIrqLine {
    vm: Arc<VmFd>,
    irq: u32,
}

impl IrqLine for KvmIrqLine {
    fn set_level(&self, high: bool) {
        if let Err(e) = self.vm.set_irq_line(self.irq, high) {
            log::warn!("KVM_IRQ_LINE {} {}: {e}", self.irq, high);
        }
    }
}
