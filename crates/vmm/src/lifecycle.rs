//! Stopping the VM: the first exit request wins, every vCPU is kicked out
//! of `KVM_RUN`, and the waiting thread gets bhyve's exit status.
//!
//! Halt detection (exit status 2). With the in-kernel irqchip KVM handles
//! HLT itself, so userspace never sees it. While the VM runs, [`Lifecycle::wait`]
//! wakes every [`HALT_TICK`] and compares each vCPU's count of guest exits
//! with the previous tick. Only when no vCPU made any exit for a whole tick
//! does it kick all vCPUs; each kicked vCPU reports (from its own thread,
//! after `KVM_RUN` returns `EINTR`) whether `KVM_GET_MP_STATE` says HALTED
//! with RFLAGS.IF clear, or that it never started (waiting for INIT/SIPI,
//! which bhyve counts as inactive). If at the next tick still nobody made
//! an exit and every vCPU answered halted-with-interrupts-off or inactive
//! (at least one halted), the VM halted for good and stops with status 2.
//! So a busy guest costs nothing and an idle one a kick per vCPU per tick.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use bhyve_devices::{ExitRequest, VmControl};

use crate::control::{ControlHandler, Stats};
use crate::signals::kick_thread;
use crate::stats::{VcpuCounters, VcpuStats};

/// How often the halt detector looks at the vCPUs.
pub const HALT_TICK: Duration = Duration::from_millis(100);

/// A vCPU's answer to a halt probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum HaltProbe {
    Running = 0,
    /// HALTED with RFLAGS.IF = 0: only NMI, INIT or SMI can wake it.
    HaltedNoIrq = 1,
    /// Never started (an AP still waiting for INIT/SIPI).
    Inactive = 2,
}

/// State shared between one vCPU thread and the rest of bhyve.
#[derive(Default)]
pub struct VcpuShared {
    pub counters: VcpuCounters,
    thread: Mutex<Option<libc::pthread_t>>,
    nmi_pending: AtomicBool,
    probe_round: AtomicU64,
    /// `round << 2 | HaltProbe`.
    probe_reply: AtomicU64,
}

impl VcpuShared {
    /// Called by the vCPU thread before its first `KVM_RUN`.
    pub fn register_thread(&self) {
        // SAFETY: pthread_self has no preconditions.
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(unsafe { libc::pthread_self() });
    }

    /// Called by the vCPU thread when it leaves its loop; no kick reaches
    /// the thread afterwards.
    pub fn unregister_thread(&self) {
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn kick(&self) {
        if let Some(t) = *self.thread.lock().unwrap_or_else(|e| e.into_inner()) {
            kick_thread(t);
        }
    }

    /// Takes a pending NMI request (the vCPU thread injects it).
    pub fn take_nmi(&self) -> bool {
        self.nmi_pending.swap(false, Ordering::AcqRel)
    }

    /// The halt-probe round the vCPU should answer, if it has not yet.
    pub fn probe_wanted(&self, answered: u64) -> Option<u64> {
        let r = self.probe_round.load(Ordering::Acquire);
        (r != answered).then_some(r)
    }

    pub fn answer_probe(&self, round: u64, probe: HaltProbe) {
        self.probe_reply
            .store(round << 2 | probe as u64, Ordering::Release);
    }

    fn reply(&self) -> (u64, u64) {
        let v = self.probe_reply.load(Ordering::Acquire);
        (v >> 2, v & 3)
    }
}

type PowerButtonFn = Box<dyn Fn() -> bool + Send + Sync>;

/// The VM's run state, shared by vCPU threads, devices (as their
/// [`VmControl`]) and the control socket (as its [`ControlHandler`]).
pub struct Lifecycle {
    exit: Mutex<Option<ExitRequest>>,
    cond: Condvar,
    stopping: AtomicBool,
    vcpus: Vec<VcpuShared>,
    power_button: Mutex<Option<PowerButtonFn>>,
}

impl Lifecycle {
    pub fn new(vcpus: usize) -> Self {
        Self {
            exit: Mutex::new(None),
            cond: Condvar::new(),
            stopping: AtomicBool::new(false),
            vcpus: (0..vcpus).map(|_| VcpuShared::default()).collect(),
            power_button: Mutex::new(None),
        }
    }

    /// Installs the ACPI power button: `press` returns whether the guest
    /// was listening (had enabled ACPI).
    pub fn set_power_button(&self, press: impl Fn() -> bool + Send + Sync + 'static) {
        *self.power_button.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(press));
    }

    /// A host stop signal. SIGTERM presses the power button, as bhyve
    /// does once the guest enabled ACPI, and the guest decides; with no
    /// ACPI-aware guest listening it powers off, as do the other stop
    /// signals (bhyve would die of the signal there).
    pub fn stop_signal(&self, sig: libc::c_int) {
        if sig == libc::SIGTERM {
            let pressed = self
                .power_button
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|press| press());
            if pressed {
                log::info!("signal {sig}: pressing the ACPI power button");
                return;
            }
        }
        log::info!("signal {sig}: powering off");
        self.request_exit(ExitRequest::PowerOff);
    }

    /// Whether vCPU threads must leave their loops.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub fn vcpu(&self, i: usize) -> &VcpuShared {
        &self.vcpus[i]
    }

    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    pub fn kick_all(&self) {
        for v in &self.vcpus {
            v.kick();
        }
    }

    /// The request that stopped the VM, if any.
    pub fn exit_request(&self) -> Option<ExitRequest> {
        self.exit.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Blocks until an exit is requested, probing for a halted VM on the
    /// way (see the module comment); returns the winning request.
    pub fn wait(&self) -> ExitRequest {
        let mut last: Vec<u64> = Vec::new();
        let mut probing: Option<u64> = None;
        let mut round = 0u64;
        let mut guard = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(req) = guard.as_ref() {
                return req.clone();
            }
            let (g, timeout) = self
                .cond
                .wait_timeout(guard, HALT_TICK)
                .unwrap_or_else(|e| e.into_inner());
            guard = g;
            if guard.is_some() || !timeout.timed_out() {
                continue;
            }
            let now: Vec<u64> = self
                .vcpus
                .iter()
                .map(|v| v.counters.guest_exits())
                .collect();
            if now != last {
                last = now;
                probing = None;
                continue;
            }
            if let Some(r) = probing.take() {
                if self.all_halted(r) {
                    drop(guard);
                    log::info!("every vCPU halted with interrupts disabled");
                    self.request_exit(ExitRequest::Halt);
                    guard = self.exit.lock().unwrap_or_else(|e| e.into_inner());
                    continue;
                }
            }
            round += 1;
            for v in &self.vcpus {
                v.probe_round.store(round, Ordering::Release);
                v.kick();
            }
            probing = Some(round);
        }
    }

    fn all_halted(&self, round: u64) -> bool {
        let mut halted = false;
        for v in &self.vcpus {
            match v.reply() {
                (r, s) if r == round && s == HaltProbe::HaltedNoIrq as u64 => halted = true,
                (r, s) if r == round && s == HaltProbe::Inactive as u64 => {}
                _ => return false,
            }
        }
        halted
    }

    pub fn vcpu_stats(&self) -> Vec<VcpuStats> {
        self.vcpus.iter().map(|v| v.counters.snapshot()).collect()
    }

    /// Queues an NMI for vCPU `vcpu` (`KVM_NMI` runs on its own thread).
    pub fn queue_nmi(&self, vcpu: usize) -> Result<(), String> {
        let v = self
            .vcpus
            .get(vcpu)
            .ok_or_else(|| format!("vcpu {vcpu} does not exist"))?;
        if self.stopping() {
            return Err("the virtual machine is stopping".into());
        }
        v.nmi_pending.store(true, Ordering::Release);
        v.kick();
        Ok(())
    }
}

impl VmControl for Lifecycle {
    fn request_exit(&self, req: ExitRequest) {
        let mut g = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_some() {
            log::debug!("exit request {req:?} ignored: already stopping");
            return;
        }
        log::debug!("exit request {req:?}");
        *g = Some(req);
        self.stopping.store(true, Ordering::SeqCst);
        drop(g);
        self.kick_all();
        self.cond.notify_all();
    }
}

impl ControlHandler for Lifecycle {
    fn force_reset(&self) {
        self.request_exit(ExitRequest::Reboot);
    }

    fn force_poweroff(&self) {
        self.request_exit(ExitRequest::PowerOff);
    }

    fn inject_nmi(&self, vcpu: u32) -> Result<(), String> {
        self.queue_nmi(vcpu as usize)
    }

    fn stats(&self) -> Stats {
        self.vcpu_stats()
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    i as u32,
                    s.counters
                        .into_iter()
                        .map(|(n, v)| (n.to_string(), v))
                        .collect(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ExitKind;
    use std::sync::Arc;

    #[test]
    fn first_request_wins() {
        let l = Lifecycle::new(2);
        assert!(!l.stopping());
        l.request_exit(ExitRequest::Status(7));
        l.request_exit(ExitRequest::PowerOff);
        assert!(l.stopping());
        assert_eq!(l.wait(), ExitRequest::Status(7));
        assert!(l.queue_nmi(0).is_err());
    }

    #[test]
    fn sigterm_presses_the_power_button_when_the_guest_listens() {
        use std::sync::atomic::AtomicUsize;
        let l = Lifecycle::new(1);
        let presses = Arc::new(AtomicUsize::new(0));
        let listening = Arc::new(AtomicBool::new(true));
        let (p, on) = (presses.clone(), listening.clone());
        l.set_power_button(move || {
            p.fetch_add(1, Ordering::SeqCst);
            on.load(Ordering::SeqCst)
        });
        l.stop_signal(libc::SIGTERM);
        l.stop_signal(libc::SIGTERM);
        assert_eq!(presses.load(Ordering::SeqCst), 2);
        assert!(!l.stopping());
        listening.store(false, Ordering::SeqCst);
        l.stop_signal(libc::SIGTERM);
        assert_eq!(l.exit_request(), Some(ExitRequest::PowerOff));

        // SIGINT never presses; no button at all powers off too.
        let l = Lifecycle::new(1);
        let p = presses.clone();
        l.set_power_button(move || {
            p.fetch_add(1, Ordering::SeqCst);
            true
        });
        l.stop_signal(libc::SIGINT);
        assert_eq!(presses.load(Ordering::SeqCst), 3);
        assert_eq!(l.exit_request(), Some(ExitRequest::PowerOff));
        let l = Lifecycle::new(1);
        l.stop_signal(libc::SIGTERM);
        assert_eq!(l.exit_request(), Some(ExitRequest::PowerOff));
    }

    #[test]
    fn nmi_and_stats() {
        let l = Lifecycle::new(1);
        assert!(l.queue_nmi(3).is_err());
        l.queue_nmi(0).unwrap();
        assert!(l.vcpu(0).take_nmi());
        assert!(!l.vcpu(0).take_nmi());
        l.vcpu(0).counters.bump(ExitKind::IoOut);
        let s = ControlHandler::stats(&l);
        assert_eq!(s[0].0, 0);
        assert!(s[0]
            .1
            .contains(&("vm exits due to inout (out)".to_string(), 1)));
    }

    /// A fake vCPU thread answering probes shows the halt protocol: busy
    /// vCPUs are never declared halted, halted+inactive ones are.
    #[test]
    fn halt_detection() {
        let l = Arc::new(Lifecycle::new(2));
        let l2 = l.clone();
        let answerer = std::thread::spawn(move || {
            let mut answered = [0u64; 2];
            while !l2.stopping() {
                for (i, done) in answered.iter_mut().enumerate() {
                    if let Some(r) = l2.vcpu(i).probe_wanted(*done) {
                        let p = if i == 0 {
                            HaltProbe::HaltedNoIrq
                        } else {
                            HaltProbe::Inactive
                        };
                        l2.vcpu(i).answer_probe(r, p);
                        *done = r;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let t0 = std::time::Instant::now();
        assert_eq!(l.wait(), ExitRequest::Halt);
        assert!(t0.elapsed() < Duration::from_secs(2));
        answerer.join().unwrap();

        // A vCPU that reports Running keeps the VM alive.
        let l = Arc::new(Lifecycle::new(1));
        let l2 = l.clone();
        let t = std::thread::spawn(move || {
            let mut answered = 0;
            for _ in 0..100 {
                if let Some(r) = l2.vcpu(0).probe_wanted(answered) {
                    l2.vcpu(0).answer_probe(r, HaltProbe::Running);
                    answered = r;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            l2.request_exit(ExitRequest::PowerOff);
        });
        assert_eq!(l.wait(), ExitRequest::PowerOff);
        t.join().unwrap();
    }
}
