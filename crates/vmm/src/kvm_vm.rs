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
//!
//! Interrupt routing: the GSI table is bhyve's PC wiring (`gsi.rs`), so the
//! in-kernel PIT reaches I/O APIC pin 2 as the MP table says.

use std::sync::{Arc, Mutex};

use bhyve_devices::IrqLine;
use kvm_bindings::{
    kvm_enable_cap, kvm_pit_config, kvm_userspace_memory_region, CpuId, KVM_CAP_HALT_POLL,
    KVM_CAP_X86_DISABLE_EXITS, KVM_MAX_CPUID_ENTRIES, KVM_MEM_READONLY, KVM_PIT_SPEAKER_DUMMY,
    KVM_X86_DISABLE_EXITS_PAUSE,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::gsi::{GsiError, GsiRouting};
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
    /// What KVM was last given with `KVM_SET_GSI_ROUTING`.
    routing: GsiRouter,
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
            (Cap::IrqRouting, "KVM_CAP_IRQ_ROUTING"),
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
        let routing = GsiRouting::pc();
        fd.set_gsi_routing(&routing.to_kvm())
            .map_err(kvm_err("KVM_SET_GSI_ROUTING"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        let supported_cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        let fd = Arc::new(fd);
        Ok(Self {
            kvm,
            fd: fd.clone(),
            supported_cpuid,
            user_space_msr,
            routing: GsiRouter {
                fd: fd.clone(),
                table: Arc::new(Mutex::new(routing)),
            },
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

    /// Maps `host` read-only at `gpa` as KVM memory slot `slot` (a boot
    /// ROM): guest reads and fetches come straight from `host`, guest
    /// writes become MMIO exits. Slots 0.. belong to [`KvmVm::map_memory`]
    /// (one per RAM region), so callers pick one after those. `host` must
    /// stay mapped for the VM's lifetime, as for `map_memory`.
    pub fn map_readonly(&self, slot: u32, gpa: u64, host: &[u8]) -> Result<(), VmmError> {
        if !self.kvm.check_extension(Cap::ReadonlyMem) {
            return Err(VmmError::MissingCap("KVM_CAP_READONLY_MEM"));
        }
        let r = kvm_userspace_memory_region {
            slot,
            flags: KVM_MEM_READONLY,
            guest_phys_addr: gpa,
            memory_size: host.len() as u64,
            userspace_addr: host.as_ptr() as u64,
        };
        // SAFETY: KVM only reads through a read-only slot, and the caller
        // keeps `host` mapped for the VM's lifetime.
        unsafe { self.fd.set_user_memory_region(r) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION (read-only)"))
    }

    pub fn create_vcpu(&self, id: u64) -> Result<VcpuFd, VmmError> {
        self.fd.create_vcpu(id).map_err(kvm_err("KVM_CREATE_VCPU"))
    }

    /// A copy of the GSI routing table KVM has now.
    pub fn gsi_routing(&self) -> GsiRouting {
        self.routing.table()
    }

    /// Changes the GSI routing table with `change` and installs the result
    /// in KVM. If either step fails, KVM and this copy keep the old table.
    pub fn update_gsi_routing<R>(
        &self,
        change: impl FnOnce(&mut GsiRouting) -> Result<R, GsiError>,
    ) -> Result<R, VmmError> {
        self.routing.update(change)
    }

    /// A handle on the routing table for devices that re-route at run
    /// time (PIRQ links, MSI vectors).
    pub fn gsi_router(&self) -> GsiRouter {
        self.routing.clone()
    }

    /// The interrupt line of GSI `irq`: with the PC routing, ISA IRQ n
    /// (n < 16; PIC pin n and I/O APIC pin n, except IRQ 0 → I/O APIC pin
    /// 2) or I/O APIC pin n (16–23).
    pub fn irq_line(&self, irq: u32) -> Arc<dyn IrqLine> {
        Arc::new(KvmIrqLine {
            vm: self.fd.clone(),
            irq,
        })
    }
}

/// The VM's GSI routing table, shared: KVM only takes the table whole,
/// so every change goes through this one copy.
#[derive(Clone)]
pub struct GsiRouter {
    fd: Arc<VmFd>,
    table: Arc<Mutex<GsiRouting>>,
}

impl GsiRouter {
    pub fn table(&self) -> GsiRouting {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes the table with `change` and installs the result in KVM;
    /// if either step fails, KVM and this copy keep the old table.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut GsiRouting) -> Result<R, GsiError>,
    ) -> Result<R, VmmError> {
        let mut current = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = current.clone();
        let out = change(&mut next)?;
        self.fd
            .set_gsi_routing(&next.to_kvm())
            .map_err(kvm_err("KVM_SET_GSI_ROUTING"))?;
        *current = next;
        Ok(out)
    }

    pub fn vm_fd(&self) -> &Arc<VmFd> {
        &self.fd
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

#[cfg(test)]
mod tests {
    use kvm_bindings::{
        kvm_irqchip, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
    };

    use super::*;
    use crate::gsi::{IrqChip, Route};

    fn chip(vm: &KvmVm, chip_id: u32) -> kvm_irqchip {
        let mut c = kvm_irqchip {
            chip_id,
            ..Default::default()
        };
        vm.fd().get_irqchip(&mut c).unwrap();
        c
    }

    /// The pending inputs (IRR) of the master PIC, slave PIC and I/O APIC
    /// as one number each: PIC bits 0–15 (slave in 8–15), I/O APIC pins.
    fn irrs(vm: &KvmVm) -> (u16, u32) {
        let (m, s, io) = (
            chip(vm, KVM_IRQCHIP_PIC_MASTER),
            chip(vm, KVM_IRQCHIP_PIC_SLAVE),
            chip(vm, KVM_IRQCHIP_IOAPIC),
        );
        // SAFETY: KVM filled the member named by chip_id.
        unsafe {
            (
                u16::from(m.chip.pic.irr) | (u16::from(s.chip.pic.irr) << 8),
                io.chip.ioapic.irr,
            )
        }
    }

    /// Raises and lowers `line`; returns the IRRs seen while it was high.
    /// The PIC latches an edge until acknowledged, so each probe uses a
    /// fresh VM.
    fn probe(line: u32) -> (u16, u32) {
        let vm = KvmVm::create(&VmOptions::default()).unwrap();
        vm.irq_line(line).set_level(true);
        let seen = irrs(&vm);
        vm.irq_line(line).set_level(false);
        seen
    }

    #[test]
    fn pit_line_reaches_ioapic_pin_2() {
        // I/O APIC pins start masked, so raised pins stay pending in IRR.
        assert_eq!(probe(0), (1 << 0, 1 << 2), "GSI 0: PIC 0 + IOAPIC 2");
        assert_eq!(probe(2), (1 << 2, 1 << 2), "GSI 2 keeps pin 2");
        assert_eq!(probe(4), (1 << 4, 1 << 4));
        // The slave's output shows as the master's cascade input 2.
        assert_eq!(probe(9), ((1 << 9) | (1 << 2), 1 << 9));
        assert_eq!(probe(17), (0, 1 << 17));
    }

    #[test]
    fn routing_updates_commit_or_roll_back() {
        let vm = KvmVm::create(&VmOptions::default()).unwrap();
        assert_eq!(vm.gsi_routing(), GsiRouting::pc());
        let gsi = vm
            .update_gsi_routing(|r| r.add_msi(0xfee0_0000, 0x30))
            .unwrap();
        assert_eq!(gsi, 24);
        assert_eq!(vm.gsi_routing().len(), GsiRouting::pc().len() + 1);
        // Rejected here: nothing changes.
        let e = vm
            .update_gsi_routing(|r| {
                r.add(
                    3,
                    Route::Irqchip {
                        chip: IrqChip::Ioapic,
                        pin: 7,
                    },
                )
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "GSI routing: GSI 3 already has a route that conflicts"
        );
        assert_eq!(vm.gsi_routing().routes(24).count(), 1);
        // Routing the new GSI to a pin really reaches that pin.
        vm.update_gsi_routing(|r| {
            r.remove(24);
            r.add(
                24,
                Route::Irqchip {
                    chip: IrqChip::Ioapic,
                    pin: 20,
                },
            )
        })
        .unwrap();
        vm.irq_line(24).set_level(true);
        assert_eq!(irrs(&vm).1, 1 << 20);
    }
}
