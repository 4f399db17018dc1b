//! The PC's legacy devices on the port and MMIO buses: COM ports behind
//! the LPC bridge, pc-testdev, the 0xcf9 reset register, the i8042
//! (whose 0xfe command resets the machine), and what bhyve's kernel and
//! `pm.c`/`rtc.c` always provide: the HPET, the ACPI PM timer and PM1
//! registers, SMI_CMD and the RTC/CMOS.

use std::sync::{Arc, Mutex, Weak};

use bhyve_devices::acpi_pm::SCI_IRQ;
use bhyve_devices::atkbdc::{AUX_IRQ, KBD_DATA_PORT, KBD_IRQ, KBD_STS_CTL_PORT};
use bhyve_devices::calendar::RtcTime;
use bhyve_devices::debugcon::Debugcon;
use bhyve_devices::fwctl::{Fwctl, FWCTL_PORT, FWCTL_PORT_LEN};
use bhyve_devices::hpet::{HPET_BASE, HPET_LEN};
use bhyve_devices::pci::PciWindows;
use bhyve_devices::post::{Post, POST_PORT, POST_PORT_LEN};
use bhyve_devices::rtc::{CmosMemory, RTC_IRQ, RTC_PORT, RTC_PORT_LEN};
use bhyve_devices::timer::{Clock, MonotonicClock, TimerThread, TimerWake};
use bhyve_devices::uart::{COM_PORTS, UART_REG_COUNT};
use bhyve_devices::{
    AcpiPm, Atkbdc, Bus, BusError, Hpet, IrqLine, MsiSink, PcTestDev, ResetControl, Rtc, Uart,
    VmControl,
};
use kvm_bindings::kvm_msi;
use kvm_ioctls::VmFd;

use crate::bootorder::BootOrder;
use crate::gsi::IOAPIC_PINS;
use crate::kvm_vm::KvmVm;
use crate::pci::{PciFunctionSpec, PciPlatform};
use crate::MachineError;
use bhyve_backends::{open_char_backend, BackendHandle, CharBackend};

/// MSIs through `KVM_SIGNAL_MSI` (the HPET's FSB interrupts). The guest
/// chooses address and data and how often they are sent, so a failure is
/// reported once, not per message.
struct KvmMsi(Arc<VmFd>, std::sync::atomic::AtomicBool);

impl MsiSink for KvmMsi {
    fn send_msi(&self, address: u64, data: u32) {
        let msi = kvm_msi {
            address_lo: address as u32,
            address_hi: (address >> 32) as u32,
            data,
            ..Default::default()
        };
        if let Err(e) = self.0.signal_msi(msi) {
            if !self.1.swap(true, std::sync::atomic::Ordering::Relaxed) {
                log::warn!(
                    "KVM_SIGNAL_MSI {address:#x} {data:#x}: {e} (further failures not shown)"
                );
            } else {
                log::debug!("KVM_SIGNAL_MSI {address:#x} {data:#x}: {e}");
            }
        }
    }
}

/// The ACPI power button, as SIGTERM presses it. Weak: the lifecycle
/// keeps the button and the PM device keeps the lifecycle.
#[derive(Clone)]
pub struct PowerButton(Weak<Mutex<AcpiPm>>);

impl PowerButton {
    /// Presses the button; false when the guest has not enabled ACPI
    /// (then nothing listens and the caller powers off instead) or the
    /// platform is gone.
    pub fn press(&self) -> bool {
        self.0.upgrade().is_some_and(|pm| {
            pm.lock()
                .unwrap_or_else(|e| e.into_inner())
                .press_power_button()
        })
    }
}

/// What the LPC bridge and the fixed platform carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacySpec {
    /// `(index 0..4, backend)` for each configured `lpc.comN.path`.
    pub com: Vec<(usize, String)>,
    pub pc_testdev: bool,
    /// `-u` (`rtc.use_localtime=false`): the RTC keeps UTC, not the
    /// host's local time.
    pub rtc_utc: bool,
    /// What the CMOS NVRAM tells firmware: RAM below/above 4 GiB, vCPUs.
    pub cmos: CmosMemory,
    /// The `-s` functions on bus 0.
    pub pci: Vec<PciFunctionSpec>,
    /// `-l debugcon,PATH[,port=N]`: QEMU's debug console port, where
    /// SeaBIOS and OVMF write their logs (`stderr` or a file appended to).
    pub debugcon: Option<(String, u16)>,
    /// `lpc.fwcfg=qemu`: QEMU's fw_cfg (installed with the firmware
    /// tables; the DSDT then describes it).
    pub fw_cfg_qemu: bool,
    /// bhyve's fwctl on 0x510 (`lpc.fwcfg=bhyve` with a boot ROM).
    pub fwctl: bool,
    /// `pm.base`: where the PM1/PM-timer block lives instead of bhyve's
    /// 0x400 (0x600 for firmware that needs QEMU's debug port 0x402).
    pub pm_base: Option<u64>,
}

/// Opens the COM ports' host backends (terminal, TTY, socket) before
/// anything else happens, so a bad `-l` fails early; bhyve's wording.
pub fn open_serial_backends(spec: &LegacySpec) -> Result<Vec<(usize, CharBackend)>, MachineError> {
    spec.com
        .iter()
        .map(|(index, path)| {
            open_char_backend(path).map(|b| (*index, b)).map_err(|e| {
                MachineError::new(format!(
                    "Unable to initialize backend '{path}' for LPC device com{}: {e}",
                    index + 1
                ))
            })
        })
        .collect()
}

/// The buses and the host-side helpers that must live as long as the VM.
pub struct Platform {
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub pci: PciPlatform,
    /// Boot devices (`bootindex`), registered as they are built; the
    /// fw_cfg `bootorder` file.
    pub bootorder: BootOrder,
    serial: Vec<BackendHandle>,
    power_button: PowerButton,
    atkbdc: Arc<Mutex<Atkbdc>>,
    hpet_timer: Option<TimerThread>,
    rtc_timer: Option<TimerThread>,
}

impl Platform {
    /// Builds the devices; `vm` supplies interrupt lines, `control` is how
    /// devices stop the VM.
    pub fn build(
        vm: &KvmVm,
        control: Arc<dyn VmControl>,
        spec: &LegacySpec,
        serial_backends: Vec<(usize, CharBackend)>,
        mem: &vm_memory::GuestMemoryMmap,
    ) -> Result<Self, MachineError> {
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let bus_err = |what: &str, e: BusError| MachineError::new(format!("{what}: {e}"));
        let kbd = Arc::new(Mutex::new(Atkbdc::new(
            control.clone(),
            vm.irq_line(KBD_IRQ),
            vm.irq_line(AUX_IRQ),
        )));
        pio.insert(KBD_DATA_PORT, 1, kbd.clone())
            .map_err(|e| bus_err("i8042", e))?;
        pio.insert(KBD_STS_CTL_PORT, 1, kbd.clone())
            .map_err(|e| bus_err("i8042", e))?;
        // bhyve registers its POST port unconditionally (post.c).
        pio.insert(POST_PORT, POST_PORT_LEN, Arc::new(Mutex::new(Post::new())))
            .map_err(|e| bus_err("post", e))?;
        let mut serial = Vec::new();
        for (index, backend) in serial_backends {
            let Some(&(base, irq)) = COM_PORTS.get(index) else {
                continue;
            };
            let uart = Arc::new(Mutex::new(Uart::new(vm.irq_line(irq))));
            let name = format!("com{}", index + 1);
            pio.insert(base, UART_REG_COUNT, uart.clone())
                .map_err(|e| bus_err(&name, e))?;
            let handle = backend
                .attach(uart)
                .map_err(|e| MachineError::new(format!("{name}: {e}")))?;
            serial.push(handle);
        }
        let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
        let pm = Arc::new(Mutex::new(AcpiPm::new(
            control.clone(),
            vm.irq_line(SCI_IRQ),
            clock.clone(),
        )));
        if let Some(b) = spec.pm_base {
            pm.lock().unwrap_or_else(|e| e.into_inner()).set_base(b);
        }
        let ranges = pm.lock().unwrap_or_else(|e| e.into_inner()).ranges();
        for (base, len) in ranges {
            pio.insert(base, len, pm.clone())
                .map_err(|e| bus_err("acpi", e))?;
        }
        // bhyve's timers may use the I/O APIC's top pins, which are GSIs
        // of the same number in the PC routing.
        let pins: Vec<Arc<dyn IrqLine>> = (0..IOAPIC_PINS).map(|i| vm.irq_line(i)).collect();
        let mut hpet = Hpet::new(
            clock.clone(),
            pins.clone(),
            Some(Arc::new(KvmMsi(vm.fd().clone(), Default::default()))),
        );
        let wake = TimerWake::new();
        hpet.set_wake(wake.clone());
        let hpet = Arc::new(Mutex::new(hpet));
        mmio.insert(HPET_BASE, HPET_LEN, hpet.clone())
            .map_err(|e| bus_err("hpet", e))?;
        let hpet_timer = TimerThread::spawn("hpet", hpet, clock.clone(), wake)
            .map_err(|e| MachineError::new(format!("hpet timer thread: {e}")))?;
        let mut rtc = Rtc::new(
            clock.clone(),
            vm.irq_line(RTC_IRQ),
            RtcTime::host(!spec.rtc_utc),
            &spec.cmos,
        );
        let wake = TimerWake::new();
        rtc.set_wake(wake.clone());
        let rtc = Arc::new(Mutex::new(rtc));
        pio.insert(RTC_PORT, RTC_PORT_LEN, rtc.clone())
            .map_err(|e| bus_err("rtc", e))?;
        let rtc_timer = TimerThread::spawn("rtc", rtc, clock, wake)
            .map_err(|e| MachineError::new(format!("rtc timer thread: {e}")))?;
        if spec.pc_testdev {
            let dev = PcTestDev::new(control.clone(), pins)
                .map_err(|e| MachineError::new(e.to_string()))?;
            let ranges = dev.pio_ranges();
            let (mbase, mlen) = dev.mmio_range();
            let dev = Arc::new(Mutex::new(dev));
            for (base, len) in ranges {
                pio.insert(base, len, dev.clone())
                    .map_err(|e| bus_err("pc-testdev", e))?;
            }
            mmio.insert(mbase, mlen, dev)
                .map_err(|e| bus_err("pc-testdev", e))?;
        }
        if let Some((path, port)) = &spec.debugcon {
            let sink: Box<dyn std::io::Write + Send> = if path == bhyve_config::lpc::DEBUGCON_STDERR
            {
                Box::new(std::io::stderr())
            } else {
                Box::new(
                    std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(path)
                        .map_err(|e| MachineError::new(format!("debugcon {path}: {e}")))?,
                )
            };
            pio.insert(
                u64::from(*port),
                1,
                Arc::new(Mutex::new(Debugcon::new(sink))),
            )
            .map_err(|e| bus_err("debugcon", e))?;
        }
        if spec.fwctl {
            let dev = Fwctl::new(control.clone(), spec.cmos.cpus);
            pio.insert(FWCTL_PORT, FWCTL_PORT_LEN, Arc::new(Mutex::new(dev)))
                .map_err(|e| bus_err("fwctl", e))?;
        }
        // PIRQ links are not given the ISA IRQs of the LPC devices.
        let mut reserved = (1u16 << SCI_IRQ) | (1 << KBD_IRQ) | (1 << AUX_IRQ);
        for (index, _) in &spec.com {
            if let Some(&(_, irq)) = COM_PORTS.get(*index) {
                reserved |= 1 << irq;
            }
        }
        let pci = PciPlatform::build(
            vm,
            &pio,
            &mmio,
            PciWindows::bhyve(spec.cmos.highmem),
            &spec.pci,
            ResetControl::new(control.clone()),
            reserved,
            &pm,
            mem,
        )?;
        let mut bootorder = BootOrder::new();
        for f in &spec.pci {
            if let Some(index) = f.bootindex {
                bootorder.add_pci(index, &f.name, f.addr.slot, f.addr.func)?;
            }
        }
        Ok(Self {
            pio,
            mmio,
            pci,
            bootorder,
            serial,
            power_button: PowerButton(Arc::downgrade(&pm)),
            atkbdc: kbd,
            hpet_timer: Some(hpet_timer),
            rtc_timer: Some(rtc_timer),
        })
    }

    /// The ACPI power button (for SIGTERM).
    pub fn power_button(&self) -> PowerButton {
        self.power_button.clone()
    }

    /// The i8042, for input sources (key and pointer events).
    pub fn atkbdc(&self) -> Arc<Mutex<Atkbdc>> {
        self.atkbdc.clone()
    }

    /// Stops the serial backends (flushing what the guest wrote) and gives
    /// the terminal back.
    pub fn shutdown(&mut self) {
        // Dropping a handle flushes the guest's output and restores the
        // terminal.
        self.serial.clear();
        self.hpet_timer = None;
        self.rtc_timer = None;
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.shutdown();
    }
}
