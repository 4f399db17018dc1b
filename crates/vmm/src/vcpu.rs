//! One vCPU: its initial state, its thread and its `KVM_RUN` loop.
//!
//! vCPU 0 starts from the loader's [`EntryState`]; the others stay in
//! KVM's wait-for-SIPI state until the guest starts them through its local
//! APIC (INIT/SIPI are handled in the kernel). Each vCPU runs on its own
//! thread named "vcpu N"; see `signals.rs` for how threads are kicked and
//! `lifecycle.rs` for how they stop.

use std::sync::Arc;
use std::thread::JoinHandle;

use bhyve_devices::{Bus, ExitRequest, VmControl};
use bhyve_firmware::entry::{RESET_CS_BASE, RESET_CS_SELECTOR, RESET_IP};
use bhyve_firmware::{EntryMode, EntryState};
use kvm_bindings::{
    kvm_dtable, kvm_msr_entry, kvm_segment, CpuId, Msrs, KVM_MP_STATE_HALTED,
    KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_UNINITIALIZED, KVM_SYSTEM_EVENT_CRASH,
    KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::exits::{self, IoDir};
use crate::lifecycle::{HaltProbe, Lifecycle, VcpuShared};
use crate::signals;
use crate::stats::ExitKind;
use crate::VmmError;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
/// CR0 at power-on: ET, with caches disabled (CD, NW).
const CR0_RESET: u64 = 0x6000_0010;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const RFLAGS_RESERVED: u64 = 1 << 1;
const RFLAGS_IF: u64 = 1 << 9;
const MSR_IA32_APICBASE: u32 = 0x1b;
const APICBASE_DEFAULT: u64 = 0xfee0_0000;
const APICBASE_BSP: u64 = 1 << 8;
const APICBASE_EXTD: u64 = 1 << 10;
const APICBASE_EN: u64 = 1 << 11;

/// What a vCPU thread needs besides its fd.
#[derive(Clone)]
pub struct VcpuContext {
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub lifecycle: Arc<Lifecycle>,
    /// `-e`: unclaimed ports stop the VM.
    pub strict_io: bool,
    /// `-p`: host CPUs this vCPU may run on (empty: any).
    pub cpuset: Vec<usize>,
}

pub struct Vcpu {
    index: usize,
    fd: VcpuFd,
    run_size: usize,
}

fn vcpu_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |e| VmmError::Kvm(what, std::io::Error::from_raw_os_error(e.errno()))
}

/// Flat segment covering 4 GiB.
fn flat_segment(selector: u16, code: bool, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl: 0,
        db: u8::from(!(code && long)),
        s: 1,
        l: u8::from(code && long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

impl Vcpu {
    pub fn new(index: usize, fd: VcpuFd, run_size: usize) -> Self {
        Self {
            index,
            fd,
            run_size,
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// CPUID table and, with `-x`, the local APIC in x2APIC mode.
    pub fn configure(&self, cpuid: &CpuId, x2apic: bool) -> Result<(), VmmError> {
        self.fd
            .set_cpuid2(cpuid)
            .map_err(vcpu_err("KVM_SET_CPUID2"))?;
        if x2apic {
            let mut base = APICBASE_DEFAULT | APICBASE_EN | APICBASE_EXTD;
            if self.index == 0 {
                base |= APICBASE_BSP;
            }
            let msrs = Msrs::from_entries(&[kvm_msr_entry {
                index: MSR_IA32_APICBASE,
                data: base,
                ..Default::default()
            }])
            .map_err(|_| VmmError::Memory("msr list".into()))?;
            let n = self.fd.set_msrs(&msrs).map_err(vcpu_err("KVM_SET_MSRS"))?;
            if n != 1 {
                return Err(VmmError::Kvm(
                    "KVM_SET_MSRS (x2APIC)",
                    std::io::Error::from_raw_os_error(libc::EINVAL),
                ));
            }
        }
        Ok(())
    }

    /// Puts the vCPU in the state a loader described.
    pub fn set_entry_state(&self, e: &EntryState) -> Result<(), VmmError> {
        if e.mode == EntryMode::Reset {
            return self.set_reset_state();
        }
        let long = e.mode == EntryMode::Long64;
        let mut sregs = self.fd.get_sregs().map_err(vcpu_err("KVM_GET_SREGS"))?;
        sregs.cs = flat_segment(e.code_selector(), true, long);
        let data = flat_segment(e.data_selector(), false, false);
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        sregs.gdt = kvm_dtable {
            base: e.gdt_base,
            limit: e.gdt_limit,
            ..Default::default()
        };
        if long {
            sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
            sregs.cr4 = CR4_PAE;
            sregs.cr3 = e.cr3;
            sregs.efer = EFER_LME | EFER_LMA;
        } else {
            sregs.cr0 = CR0_PE | CR0_ET;
            sregs.cr4 = 0;
            sregs.cr3 = 0;
            sregs.efer = 0;
        }
        self.fd
            .set_sregs(&sregs)
            .map_err(vcpu_err("KVM_SET_SREGS"))?;
        let mut regs = self.fd.get_regs().map_err(vcpu_err("KVM_GET_REGS"))?;
        regs.rflags = RFLAGS_RESERVED;
        regs.rip = e.rip;
        regs.rsp = e.rsp;
        regs.rbx = e.rbx;
        regs.rsi = e.rsi;
        regs.rbp = 0;
        regs.rdi = 0;
        self.fd.set_regs(&regs).map_err(vcpu_err("KVM_SET_REGS"))?;
        let mut fpu = self.fd.get_fpu().map_err(vcpu_err("KVM_GET_FPU"))?;
        fpu.fcw = 0x37f;
        fpu.mxcsr = 0x1f80;
        self.fd.set_fpu(&fpu).map_err(vcpu_err("KVM_SET_FPU"))
    }

    /// The power-on state of the SDM ("Processor State After Reset"): a
    /// fresh KVM vCPU already starts there, but stating it keeps a boot ROM
    /// independent of what else touched the vCPU. General registers keep
    /// KVM's reset values (EDX = the CPU signature).
    fn set_reset_state(&self) -> Result<(), VmmError> {
        let mut sregs = self.fd.get_sregs().map_err(vcpu_err("KVM_GET_SREGS"))?;
        let real = |selector: u16, base: u64, code: bool| kvm_segment {
            base,
            limit: 0xffff,
            selector,
            type_: if code { 0xb } else { 0x3 },
            present: 1,
            s: 1,
            ..Default::default()
        };
        sregs.cs = real(RESET_CS_SELECTOR, RESET_CS_BASE, true);
        let data = real(0, 0, false);
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        let table = kvm_dtable {
            base: 0,
            limit: 0xffff,
            ..Default::default()
        };
        sregs.gdt = table;
        sregs.idt = table;
        sregs.cr0 = CR0_RESET;
        sregs.cr2 = 0;
        sregs.cr3 = 0;
        sregs.cr4 = 0;
        sregs.efer = 0;
        self.fd
            .set_sregs(&sregs)
            .map_err(vcpu_err("KVM_SET_SREGS"))?;
        let mut regs = self.fd.get_regs().map_err(vcpu_err("KVM_GET_REGS"))?;
        regs.rflags = RFLAGS_RESERVED;
        regs.rip = RESET_IP;
        self.fd.set_regs(&regs).map_err(vcpu_err("KVM_SET_REGS"))
    }

    /// Access to the fd for tests and special setups (real-mode guests).
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// Starts the vCPU thread.
    pub fn spawn(self, ctx: VcpuContext) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("vcpu {}", self.index))
            .spawn(move || self.thread_main(ctx))
    }

    fn thread_main(mut self, ctx: VcpuContext) {
        let life = ctx.lifecycle.clone();
        let shared = life.vcpu(self.index);
        shared.register_thread();
        signals::set_thread_kvm_run(self.fd.get_kvm_run());
        let index = self.index;
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Err(e) = pin_to(&ctx.cpuset) {
                return Err(format!(
                    "vcpu {index}: cannot pin to host CPUs {:?}: {e}",
                    ctx.cpuset
                ));
            }
            self.run_loop(&ctx, shared)
        }));
        signals::set_thread_kvm_run(std::ptr::null_mut());
        shared.unregister_thread();
        match res {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => life.request_exit(ExitRequest::Error(msg)),
            Err(_) => life.request_exit(ExitRequest::Error(format!(
                "vcpu {index}: internal error (panic)"
            ))),
        }
    }

    /// Runs until the VM stops; `Err` carries a one-line error for exit 4.
    fn run_loop(&mut self, ctx: &VcpuContext, shared: &VcpuShared) -> Result<(), String> {
        let life = &ctx.lifecycle;
        let counters = &shared.counters;
        let i = self.index;
        let mut answered = 0u64;
        loop {
            if life.stopping() {
                return Ok(());
            }
            if shared.take_nmi() {
                self.fd
                    .nmi()
                    .map_err(|e| format!("vcpu {i}: KVM_NMI: {e}"))?;
            }
            let exit = match self.fd.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR => {
                    self.fd.set_kvm_immediate_exit(0);
                    counters.bump(ExitKind::Interrupted);
                    if let Some(r) = shared.probe_wanted(answered) {
                        shared.answer_probe(r, self.halt_probe());
                        answered = r;
                    }
                    continue;
                }
                // An AP blocked waiting for SIPI may see EAGAIN on INIT.
                Err(e) if e.errno() == libc::EAGAIN => continue,
                Err(e) => return Err(format!("vcpu {i}: KVM_RUN failed: {e}")),
            };
            match exit {
                VcpuExit::IoIn(..) | VcpuExit::IoOut(..) => {
                    let out = matches!(exit, VcpuExit::IoOut(..));
                    counters.bump(if out { ExitKind::IoOut } else { ExitKind::IoIn });
                    self.handle_pio(ctx)?;
                }
                VcpuExit::MmioRead(addr, data) => {
                    counters.bump(ExitKind::MmioRead);
                    exits::mmio_read(&ctx.mmio, addr, data);
                }
                VcpuExit::MmioWrite(addr, data) => {
                    counters.bump(ExitKind::MmioWrite);
                    exits::mmio_write(&ctx.mmio, addr, data);
                }
                VcpuExit::X86Rdmsr(m) => {
                    counters.bump(ExitKind::MsrRead);
                    crate::msr::answer_read(m);
                }
                VcpuExit::X86Wrmsr(m) => {
                    counters.bump(ExitKind::MsrWrite);
                    crate::msr::answer_write(m);
                }
                VcpuExit::Shutdown => {
                    counters.bump(ExitKind::Shutdown);
                    log::info!("vcpu {i}: triple fault: {}", self.state_summary());
                    life.request_exit(ExitRequest::TripleFault);
                    return Ok(());
                }
                VcpuExit::SystemEvent(kind, _) => {
                    counters.bump(ExitKind::SystemEvent);
                    let req = match kind {
                        KVM_SYSTEM_EVENT_SHUTDOWN => ExitRequest::PowerOff,
                        KVM_SYSTEM_EVENT_RESET => ExitRequest::Reboot,
                        KVM_SYSTEM_EVENT_CRASH => {
                            ExitRequest::Error(format!("vcpu {i}: guest crashed"))
                        }
                        k => ExitRequest::Error(format!("vcpu {i}: unexpected system event {k}")),
                    };
                    life.request_exit(req);
                    return Ok(());
                }
                // Only without an in-kernel LAPIC; ours has one.
                VcpuExit::Hlt => counters.bump(ExitKind::Hlt),
                VcpuExit::Intr | VcpuExit::IrqWindowOpen => counters.bump(ExitKind::Other),
                VcpuExit::InternalError => {
                    counters.bump(ExitKind::Other);
                    // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so the
                    // `internal` member of the union is the valid one.
                    let sub = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
                    return Err(format!(
                        "vcpu {i}: KVM internal error (suberror {sub}): {}",
                        self.state_summary()
                    ));
                }
                VcpuExit::FailEntry(reason, cpu) => {
                    counters.bump(ExitKind::Other);
                    return Err(format!(
                        "vcpu {i}: VM entry failed (hardware reason {reason:#x}, host cpu {cpu}): {}",
                        self.state_summary()
                    ));
                }
                other => {
                    counters.bump(ExitKind::Other);
                    let what = format!("{other:?}");
                    return Err(format!(
                        "vcpu {i}: unexpected exit {what} at rip {}",
                        self.rip()
                    ));
                }
            }
        }
    }

    /// The registers that explain a triple fault or an internal error.
    fn state_summary(&self) -> String {
        let regs = self.fd.get_regs();
        let sregs = self.fd.get_sregs();
        let events = self.fd.get_vcpu_events();
        match (regs, sregs) {
            (Ok(r), Ok(s)) => {
                let ev = events
                    .map(|e| {
                        format!(
                            " exception(injected={} nr={} has_error={} error={:#x}) nmi(injected={} pending={}) interrupt(injected={} nr={})",
                            e.exception.injected, e.exception.nr, e.exception.has_error_code,
                            e.exception.error_code, e.nmi.injected, e.nmi.pending,
                            e.interrupt.injected, e.interrupt.nr
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "rip {:#x} rsp {:#x} rflags {:#x} cs {:#x} cr0 {:#x} cr2 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} idt {:#x}/{:#x} gdt {:#x}/{:#x}{ev}",
                    r.rip, r.rsp, r.rflags, s.cs.selector, s.cr0, s.cr2, s.cr3, s.cr4, s.efer,
                    s.idt.base, s.idt.limit, s.gdt.base, s.gdt.limit
                )
            }
            _ => "registers unavailable".into(),
        }
    }

    fn rip(&self) -> String {
        match self.fd.get_regs() {
            Ok(r) => format!("{:#x}", r.rip),
            Err(_) => "?".into(),
        }
    }

    /// Dispatches the pending PIO exit described in `kvm_run`.
    fn handle_pio(&mut self, ctx: &VcpuContext) -> Result<(), String> {
        let run_size = self.run_size;
        let run = self.fd.get_kvm_run();
        // SAFETY: the caller saw KVM_EXIT_IO, so `io` is the valid member.
        let io = unsafe { run.__bindgen_anon_1.io };
        let size = usize::from(io.size);
        let len = size * io.count as usize;
        let off = io.data_offset as usize;
        if off.checked_add(len).is_none_or(|end| end > run_size) {
            return Err(format!("vcpu {}: malformed I/O exit", self.index));
        }
        // SAFETY: bounds checked against the kvm_run mapping just above.
        let data =
            unsafe { std::slice::from_raw_parts_mut((run as *mut _ as *mut u8).add(off), len) };
        let dir = if u32::from(io.direction) == kvm_bindings::KVM_EXIT_IO_OUT {
            IoDir::Out
        } else {
            IoDir::In
        };
        match exits::pio(&ctx.pio, dir, io.port, size, data, ctx.strict_io) {
            Ok(()) => Ok(()),
            Err(u) => {
                let rip = self.fd.get_regs().map(|r| r.rip).unwrap_or(0);
                Err(u.message(rip))
            }
        }
    }

    /// Answers a halt probe from this vCPU's thread.
    fn halt_probe(&self) -> HaltProbe {
        match self.fd.get_mp_state().map(|s| s.mp_state) {
            Ok(KVM_MP_STATE_HALTED) => match self.fd.get_regs() {
                Ok(r) if r.rflags & RFLAGS_IF == 0 => HaltProbe::HaltedNoIrq,
                _ => HaltProbe::Running,
            },
            Ok(KVM_MP_STATE_UNINITIALIZED) | Ok(KVM_MP_STATE_INIT_RECEIVED) => HaltProbe::Inactive,
            _ => HaltProbe::Running,
        }
    }
}

/// Restricts the calling thread to `cpus` (no-op when empty).
fn pin_to(cpus: &[usize]) -> std::io::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: cpu_set_t is plain data, CPU_SET bounds-checks against its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if c >= libc::CPU_SETSIZE as usize {
                return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
            }
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "vcpu_tests.rs"]
mod tests;
