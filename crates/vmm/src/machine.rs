//! Building a VM from bhyve's configuration tree and running it to its
//! exit status.
//!
//! Order follows bhyverun.c: topology, vCPU pinning and memory size are
//! checked first, then options that are accepted but not effective yet are
//! reported, then the VM is booted, devices created, vCPUs started.

use std::sync::Arc;
use std::thread::JoinHandle;

use bhyve_config::{run_params, Config, FwCfgUserFile};
use bhyve_devices::pci::PciWindows;
use bhyve_devices::rtc::CmosMemory;
use bhyve_devices::{ExitRequest, VmControl};
use bhyve_firmware::layout::MIN_MEMORY;
use bhyve_firmware::mptable::CpuIdentity;
use bhyve_firmware::smbios::SmbiosSpec;
use bhyve_firmware::MemLayout;
use kvm_bindings::{kvm_cpuid_entry2, CpuId};

use crate::boot::{boot, BootSource, Booted};
use crate::bootrom::BootRomSpec;
use crate::control::ControlServer;
use crate::cpuid::{self, CpuTopology, CpuidParams};
use crate::fwtables::{
    acpi_spec, install_fw_cfg, pci_root_spec, write_acpi_tables, write_mptable, write_smbios,
    FwCfgContents, FwCfgKernel,
};
use crate::kvm_vm::{KvmVm, VmOptions};
use crate::lifecycle::Lifecycle;
pub use crate::platform::LegacySpec;
use crate::platform::{open_serial_backends, Platform};
use crate::signals::{self, StopSignalWatcher};
use crate::store::VmStore;
use crate::vcpu::{Vcpu, VcpuContext};
use crate::{memory, MachineError};

/// Everything [`run`] needs, checked.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    pub name: String,
    pub mem_size: u64,
    pub topology: CpuTopology,
    /// Host CPUs per vCPU (`-p`); empty: unpinned.
    pub cpusets: Vec<Vec<usize>>,
    pub vm: VmOptions,
    pub strict_io: bool,
    pub x2apic: bool,
    pub wired: bool,
    pub guest_in_core: bool,
    pub destroy_on_poweroff: bool,
    /// `x86.mptable` (off with `-Y`): write the MP table at start.
    pub mptable: bool,
    /// `acpi_tables` (`-A`): write bhyve's ACPI tables at start.
    pub acpi: bool,
    /// `acpi_tables_in_memory`: also write them into the BIOS area (with
    /// fw_cfg they are served there too).
    pub acpi_in_memory: bool,
    pub smbios: SmbiosSpec,
    /// `lpc.fwcfg=qemu`: QEMU's fw_cfg on 0x510 (firmware built for
    /// QEMU); otherwise bhyve's fwctl, which is not implemented.
    pub fw_cfg_qemu: bool,
    /// `-f name,string=…|file=…`.
    pub fw_cfg_files: Vec<FwCfgUserFile>,
    /// `boot.kernel` with a boot ROM and QEMU's fw_cfg: served to the
    /// firmware instead of loaded by us.
    pub fw_cfg_kernel: Option<FwCfgKernel>,
    pub legacy: LegacySpec,
    pub boot: BootSource,
    /// One-line warnings for options accepted but not effective yet.
    pub warnings: Vec<String>,
}

fn cfg_err(e: bhyve_config::ConfigError) -> MachineError {
    MachineError::with_code(e.to_string(), e.exit_code())
}

fn flag(cfg: &Config, path: &str, default: bool) -> Result<bool, MachineError> {
    cfg.get_bool_default(path, default).map_err(cfg_err)
}

impl MachineSpec {
    pub fn from_config(cfg: &Config) -> Result<Self, MachineError> {
        let params = run_params(cfg).map_err(cfg_err)?;
        let t = params.topology;
        let topology = CpuTopology {
            cpus: t.cpus.into(),
            sockets: t.sockets.into(),
            cores: t.cores.into(),
            threads: t.threads.into(),
        };
        let cpusets = params
            .cpusets
            .into_iter()
            .map(|s| {
                s.map(|s| s.into_iter().map(|c| c as usize).collect())
                    .unwrap_or_default()
            })
            .collect();
        let mem_size = params.memsize;
        let name = cfg
            .get("name")
            .ok_or_else(|| MachineError::with_code("no VM name".into(), 1))?;
        let mut warnings = Vec::new();

        if cfg.get("gdb.port").is_some() {
            return Err(MachineError::new(
                "-G: the gdb stub is not implemented yet".into(),
            ));
        }
        if cfg.get(bhyve_config::RESTORE_FILE_VAR).is_some() {
            return Err(MachineError::new(
                "-r: restoring a snapshot is not implemented yet".into(),
            ));
        }
        if cfg.root().node("tpm").is_some() {
            return Err(MachineError::new(
                "-l tpm: TPM emulation is not implemented yet".into(),
            ));
        }
        if cfg.get("keyboard.layout").is_some() {
            warnings.push(
                "-K: keyboard layouts are not implemented yet; the PS/2 keyboard is US".into(),
            );
        }

        let pci = crate::pci::pci_functions(cfg)?;
        bhyve_config::check_lpc_bridges(cfg).map_err(cfg_err)?;

        let mut legacy = LegacySpec::default();
        for i in 0..4 {
            if let Some(path) = cfg.get(&format!("lpc.com{}.path", i + 1)) {
                legacy.com.push((i, path));
            }
        }
        legacy.pc_testdev = flag(cfg, "lpc.pc-testdev", false)?;
        legacy.rtc_utc = !flag(cfg, "rtc.use_localtime", true)?;
        legacy.cmos = cmos_memory(mem_size, t.cpus.into());
        legacy.pci = pci;
        if let Some(v) = cfg.get("pm.base") {
            let base = crate::pci::parse_c_number(&v)
                .filter(|b| b % 4 == 0 && (0x100..=0xfff0).contains(b))
                .ok_or_else(|| MachineError::new(format!("invalid pm.base '{v}'")))?;
            legacy.pm_base = Some(base);
        }
        legacy.debugcon = bhyve_config::lpc::debugcon_config(cfg)
            .map_err(cfg_err)?
            .map(|d| (d.path, d.port));
        // A size the layout rejects fails later, at boot, with its own
        // message; SMBIOS then describes nothing it could not hold.
        let layout =
            MemLayout::new(mem_size).unwrap_or(MemLayout::new(MIN_MEMORY).expect("minimum"));
        let smbios = SmbiosSpec::from_config(cfg, &layout, &t)
            .map_err(|e| MachineError::new(e.to_string()))?;
        let fw_cfg_qemu = bhyve_config::lpc::lpc_fwcfg_is_qemu(cfg);
        let fw_cfg_files = bhyve_config::fwcfg_user_files(cfg).map_err(cfg_err)?;
        legacy.fw_cfg_qemu = fw_cfg_qemu;
        // bhyve installs its fwctl only for a boot ROM (bhyverun.c).
        legacy.fwctl = !fw_cfg_qemu && cfg.get("lpc.bootrom").is_some();
        if !fw_cfg_qemu && !fw_cfg_files.is_empty() {
            warnings.push(
                "-f: fw_cfg files are only served with lpc.fwcfg=qemu (bhyve's fwctl has no files)"
                    .into(),
            );
        }

        // A boot ROM with QEMU's fw_cfg boots boot.kernel itself (QEMU's
        // -kernel with firmware: OVMF runs it); otherwise bhyve loads it.
        let mut fw_cfg_kernel = None;
        if let (Some(kernel), Some(_), true) =
            (cfg.get("boot.kernel"), cfg.get("lpc.bootrom"), fw_cfg_qemu)
        {
            fw_cfg_kernel = Some(FwCfgKernel {
                kernel,
                initrd: cfg.get("boot.initrd"),
                cmdline: cfg.get("boot.cmdline").unwrap_or_default(),
            });
        }
        let boot = if let (Some(kernel), None) = (cfg.get("boot.kernel"), &fw_cfg_kernel) {
            BootSource::Kernel {
                kernel,
                initrd: cfg.get("boot.initrd"),
                cmdline: cfg.get("boot.cmdline").unwrap_or_default(),
            }
        } else if let Some(rom) = cfg.get("lpc.bootrom") {
            BootSource::Rom(BootRomSpec {
                rom,
                vars: cfg.get("lpc.bootvars"),
            })
        } else {
            BootSource::Loaded
        };

        Ok(MachineSpec {
            name,
            mem_size,
            topology,
            cpusets,
            vm: VmOptions {
                yield_on_hlt: flag(cfg, "x86.vmexit_on_hlt", false)?,
                exit_on_pause: flag(cfg, "x86.vmexit_on_pause", false)?,
                ignore_unknown_msrs: !flag(cfg, "x86.strictmsr", true)?,
            },
            strict_io: flag(cfg, "x86.strictio", false)?,
            x2apic: flag(cfg, "x86.x2apic", false)?,
            wired: flag(cfg, "memory.wired", false)?,
            guest_in_core: flag(cfg, "memory.guest_in_core", false)?,
            destroy_on_poweroff: flag(cfg, "destroy_on_poweroff", false)?,
            mptable: flag(cfg, "x86.mptable", true)?,
            acpi: flag(cfg, "acpi_tables", false)?,
            acpi_in_memory: flag(cfg, "acpi_tables_in_memory", true)?,
            smbios,
            fw_cfg_qemu,
            fw_cfg_files,
            fw_cfg_kernel,
            legacy,
            boot,
            warnings,
        })
    }
}

/// Checks `cfg`, runs the VM and returns bhyve's exit status. Setup
/// errors come back as `Err` (one line, with their status); an error
/// while running (exit 4) is printed here, as bhyve prints it.
pub fn run(cfg: &Config) -> Result<i32, MachineError> {
    let spec = MachineSpec::from_config(cfg)?;
    for w in &spec.warnings {
        eprintln!("bhyve: warning: {w}");
    }
    run_spec(&spec)
}

struct Vcpus(Vec<JoinHandle<()>>);

impl Vcpus {
    fn join(&mut self) {
        for t in self.0.drain(..) {
            let _ = t.join();
        }
    }
}

pub fn run_spec(spec: &MachineSpec) -> Result<i32, MachineError> {
    signals::install_kick_handler()
        .map_err(|e| MachineError::new(format!("installing the vCPU kick handler: {e}")))?;
    let ncpus = spec.topology.cpus as usize;
    let life = Arc::new(Lifecycle::new(ncpus));
    // First, before any thread exists: every later thread inherits the
    // blocked stop signals, so only the watcher receives them.
    let stopper = life.clone();
    let _signals = StopSignalWatcher::spawn(move |sig| stopper.stop_signal(sig))
        .map_err(|e| MachineError::new(format!("signal thread: {e}")))?;
    let serial_backends = open_serial_backends(&spec.legacy)?;
    let store = VmStore::from_env();
    let Booted {
        dir,
        lock,
        mem,
        entry,
        rom,
        ..
    } = boot(&store, &spec.name, spec.mem_size, &spec.boot)?;
    if spec.wired {
        memory::wire(&mem).map_err(|e| MachineError::new(format!("-S: {e}")))?;
    }
    if !spec.guest_in_core {
        memory::exclude_from_core(&mem).map_err(|e| MachineError::new(e.to_string()))?;
    }
    let vm = KvmVm::create(&spec.vm).map_err(|e| MachineError::new(e.to_string()))?;
    if spec.vm.ignore_unknown_msrs && !vm.user_space_msr() {
        eprintln!(
            "bhyve: warning: -w: this host's KVM cannot forward unknown MSRs; they raise #GP"
        );
    }
    if ncpus > vm.max_vcpus() {
        return Err(MachineError::new(format!(
            "{ncpus} vCPUs requested but KVM allows {}",
            vm.max_vcpus()
        )));
    }
    vm.map_memory(&mem)
        .map_err(|e| MachineError::new(e.to_string()))?;
    if let Some(rom) = &rom {
        // `rom` outlives `vm` (declared first, dropped last).
        rom.install(&vm, &mem)
            .map_err(|e| MachineError::new(e.to_string()))?;
    }

    let control: Arc<dyn VmControl> = life.clone();
    let mut platform = Platform::build(&vm, control.clone(), &spec.legacy, serial_backends, &mem)?;
    if let Some(rom) = &rom {
        rom.attach_vars(&platform.mmio)
            .map_err(|e| MachineError::new(e.to_string()))?;
    }
    let button = platform.power_button();
    life.set_power_button(move || button.press());

    let mut vcpus = Vec::with_capacity(ncpus);
    let mut cpu_identity = CpuIdentity::default();
    for i in 0..ncpus {
        let fd = vm
            .create_vcpu(i as u64)
            .map_err(|e| MachineError::new(e.to_string()))?;
        let vcpu = Vcpu::new(i, fd, vm.fd().run_size());
        let params = CpuidParams {
            topology: spec.topology,
            apic_id: i as u32,
            x2apic: spec.x2apic,
        };
        let entries = cpuid::build(vm.supported_cpuid().as_slice(), &params);
        if i == 0 {
            cpu_identity = identity(&entries).unwrap_or_default();
        }
        let cpuid = CpuId::from_entries(&entries)
            .map_err(|_| MachineError::new("CPUID table too large".into()))?;
        vcpu.configure(&cpuid, spec.x2apic)
            .map_err(|e| MachineError::new(e.to_string()))?;
        if i == 0 {
            vcpu.set_entry_state(&entry)
                .map_err(|e| MachineError::new(e.to_string()))?;
        }
        vcpus.push(vcpu);
    }

    let layout = MemLayout::new(spec.mem_size).map_err(|e| MachineError::new(e.to_string()))?;
    let windows = PciWindows::bhyve(layout.highmem());
    let intx = platform.pci.intx_routes();
    let acpi = spec.acpi.then(|| {
        acpi_spec(
            ncpus,
            &spec.legacy,
            Some(pci_root_spec(&platform.pci, windows)),
        )
    });
    // Firmware built for QEMU runs from a copy of itself in the BIOS area
    // (see bootrom.rs) and finds the tables through fw_cfg, as on QEMU;
    // only bhyve-flavoured boots get them written there.
    let bios_area_is_firmware = spec.fw_cfg_qemu && matches!(spec.boot, BootSource::Rom(_));
    if !bios_area_is_firmware {
        if spec.mptable {
            write_mptable(&mem, ncpus, cpu_identity, &intx)?;
        }
        write_smbios(&mem, &spec.smbios)?;
        if let (Some(a), true) = (&acpi, spec.acpi_in_memory) {
            write_acpi_tables(&mem, a)?;
        }
    }
    if spec.fw_cfg_qemu {
        let contents = FwCfgContents {
            cpus: ncpus,
            layout,
            acpi: acpi.as_ref(),
            smbios: &spec.smbios,
            user: &spec.fw_cfg_files,
            bootorder: &platform.bootorder,
            kernel: spec.fw_cfg_kernel.as_ref(),
        };
        install_fw_cfg(&platform.pio, &mem, &contents)?;
    }

    let ctl = ControlServer::start(&dir.ctl_socket_path(), life.clone())
        .map_err(|e| MachineError::new(e.to_string()))?;
    let mut threads = Vcpus(Vec::with_capacity(ncpus));
    for vcpu in vcpus {
        let ctx = VcpuContext {
            pio: platform.pio.clone(),
            mmio: platform.mmio.clone(),
            lifecycle: life.clone(),
            strict_io: spec.strict_io,
            cpuset: spec.cpusets.get(vcpu.index()).cloned().unwrap_or_default(),
        };
        match vcpu.spawn(ctx) {
            Ok(t) => threads.0.push(t),
            Err(e) => {
                life.request_exit(ExitRequest::Error(format!(
                    "cannot start a vCPU thread: {e}"
                )));
                break;
            }
        }
    }

    let req = life.wait();
    threads.join();
    drop(ctl);
    platform.shutdown();
    if let ExitRequest::Error(msg) = &req {
        eprintln!("bhyve: {msg}");
    }
    if req == ExitRequest::PowerOff && spec.destroy_on_poweroff {
        if let Err(e) = dir.remove(lock) {
            eprintln!("bhyve: -D: destroying the VM: {e}");
        }
    } else {
        drop(lock);
    }
    Ok(req.exit_status())
}

/// The RAM split firmware reads from CMOS (bhyve's layout; a size the
/// layout rejects fails later, at boot, with its own message).
fn cmos_memory(mem_size: u64, cpus: u32) -> CmosMemory {
    let (lowmem, highmem) = MemLayout::new(mem_size)
        .map(|l| (l.lowmem(), l.highmem()))
        .unwrap_or((mem_size, 0));
    CmosMemory {
        lowmem,
        highmem,
        cpus,
    }
}

/// What the MP table's processor entries report: the guest's own CPUID
/// leaf 1 (bhyve hardcodes an i7's).
fn identity(cpuid: &[kvm_cpuid_entry2]) -> Option<CpuIdentity> {
    cpuid
        .iter()
        .find(|e| e.function == 1 && e.index == 0)
        .map(|e| CpuIdentity {
            signature: e.eax,
            features: e.edx,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bhyve_firmware::acpi::{self, AcpiSpec, ComPort, PmPorts};
    use bhyve_firmware::mptable;
    use vm_memory::GuestMemoryMmap;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        crate::testutil::config(&[&[("name", "t")], pairs].concat())
    }

    fn err(pairs: &[(&str, &str)]) -> (String, i32) {
        let e = MachineSpec::from_config(&cfg(pairs)).expect_err("must fail");
        (e.to_string(), e.exit_code())
    }

    #[test]
    fn defaults() {
        let s = MachineSpec::from_config(&cfg(&[])).unwrap();
        assert_eq!(s.mem_size, 256 << 20);
        assert_eq!(s.topology, CpuTopology::flat(1));
        assert_eq!(s.boot, BootSource::Loaded);
        assert!(!s.vm.ignore_unknown_msrs && !s.vm.yield_on_hlt && !s.strict_io);
        assert!(s.warnings.is_empty());
        assert!(s.mptable);
        assert!(!s.acpi, "no ACPI tables without -A");
        let s = MachineSpec::from_config(&cfg(&[("x86.mptable", "false")])).unwrap();
        assert!(!s.mptable);
        assert!(s.warnings.is_empty(), "-Y is effective: no warning");
    }

    #[test]
    fn options() {
        let s = MachineSpec::from_config(&cfg(&[
            ("memory.size", "1024"),
            ("cpus", "4"),
            ("x86.strictmsr", "false"),
            ("x86.vmexit_on_hlt", "true"),
            ("lpc.com2.path", "stdio"),
            ("lpc.pc-testdev", "true"),
            ("vcpu.1.cpuset", "0"),
            ("boot.kernel", "/k"),
            ("pci.0.0.0.device", "hostbridge"),
            ("acpi_tables", "true"),
        ]))
        .unwrap();
        assert_eq!(s.mem_size, 1 << 30);
        assert_eq!(s.topology.cpus, 4);
        assert_eq!(s.cpusets[1], vec![0]);
        assert!(s.cpusets[0].is_empty());
        assert!(s.vm.ignore_unknown_msrs && s.vm.yield_on_hlt);
        assert_eq!(s.legacy.com, vec![(1, "stdio".to_string())]);
        assert!(s.legacy.pc_testdev);
        assert!(matches!(s.boot, BootSource::Kernel { .. }));
        assert!(s.acpi);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn rtc_zone_and_cmos_memory() {
        let s = MachineSpec::from_config(&cfg(&[])).unwrap();
        assert!(!s.legacy.rtc_utc, "bhyve's RTC keeps local time by default");
        assert_eq!(
            s.legacy.cmos,
            CmosMemory {
                lowmem: 256 << 20,
                highmem: 0,
                cpus: 1
            }
        );
        let s = MachineSpec::from_config(&cfg(&[
            ("rtc.use_localtime", "false"),
            ("memory.size", "6G"),
            ("cpus", "3"),
        ]))
        .unwrap();
        assert!(s.legacy.rtc_utc);
        assert!(s.warnings.is_empty(), "-u is effective: {:?}", s.warnings);
        assert_eq!(
            s.legacy.cmos,
            CmosMemory {
                lowmem: 3 << 30,
                highmem: 3 << 30,
                cpus: 3
            }
        );
        // The FADT's century index names the RTC's century register.
        assert_eq!(
            AcpiSpec::new(1).rtc_century,
            bhyve_devices::rtc::RTC_CENTURY
        );
    }

    #[test]
    fn mptable_reports_the_guest_cpuid() {
        use vm_memory::{Bytes, GuestAddress};
        let leaf = |function, eax, edx| kvm_cpuid_entry2 {
            function,
            eax,
            edx,
            ..Default::default()
        };
        let cpu = identity(&[leaf(0, 0xd, 0), leaf(1, 0x906ea, 0x178b_fbff)]).unwrap();
        assert_eq!((cpu.signature, cpu.features), (0x906ea, 0x178b_fbff));
        assert!(identity(&[leaf(0, 0xd, 0)]).is_none());
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        write_mptable(&mem, 2, cpu, &[]).unwrap();
        let mut img = [0u8; 16 + 44 + 20];
        mem.read_slice(&mut img, GuestAddress(mptable::MPTABLE_BASE))
            .unwrap();
        assert_eq!(&img[..4], b"_MP_");
        assert_eq!(&img[16..20], b"PCMP");
        let cpu0 = &img[60..80];
        assert_eq!(u32::from_le_bytes(cpu0[4..8].try_into().unwrap()), 0x6ea);
        assert_eq!(
            u32::from_le_bytes(cpu0[8..12].try_into().unwrap()),
            0x178b_fbff
        );
    }

    #[test]
    fn acpi_tables_describe_this_run() {
        use vm_memory::{Bytes, GuestAddress};
        let legacy = LegacySpec {
            com: vec![(1, "stdio".into())],
            ..LegacySpec::default()
        };
        let spec = acpi_spec(3, &legacy, None);
        assert_eq!(
            spec.com_ports,
            [ComPort {
                index: 1,
                base: 0x2f8,
                irq: 3
            }]
        );
        // The platform's devices and bhyve's table values agree.
        let bhyve = AcpiSpec::new(3);
        assert_eq!(
            PmPorts {
                gpe0: bhyve.pm.gpe0,
                ..spec.pm
            },
            bhyve.pm
        );
        assert_eq!(spec.hpet, bhyve.hpet);
        assert_eq!(
            (spec.sci_irq, spec.s5_slp_typ),
            (bhyve.sci_irq, bhyve.s5_slp_typ)
        );

        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        write_mptable(&mem, 3, CpuIdentity::default(), &[]).unwrap();
        write_acpi_tables(&mem, &spec).unwrap();
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, GuestAddress(acpi::ACPI_BASE))
            .unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        let mut mp = [0u8; 4];
        mem.read_slice(&mut mp, GuestAddress(mptable::MPTABLE_BASE))
            .unwrap();
        assert_eq!(&mp, b"_MP_");
    }

    #[test]
    fn rejected() {
        assert_eq!(
            err(&[("memory.size", "lots")]),
            ("invalid memsize 'lots'".into(), 64)
        );
        assert_eq!(
            err(&[("pci.0.3.0.device", "xhci")]),
            (
                "pci 0:3:0: emulation 'xhci' is not implemented yet".into(),
                4
            )
        );
        assert_eq!(
            err(&[("pci.0.3.0.device", "virtio-blk")]),
            ("Missing \"path\" for block device.".into(), 4)
        );
        let s =
            MachineSpec::from_config(&cfg(&[("lpc.bootrom", "/rom"), ("lpc.bootvars", "/vars")]))
                .unwrap();
        assert_eq!(
            s.boot,
            BootSource::Rom(BootRomSpec {
                rom: "/rom".into(),
                vars: Some("/vars".into())
            })
        );
        assert_eq!(s.fw_cfg_kernel, None);
        assert_eq!(err(&[("gdb.port", "1234")]).1, 4);
    }

    #[test]
    fn boot_kernel_goes_to_the_firmware_with_qemu_fw_cfg() {
        let rom = [
            ("lpc.bootrom", "/rom"),
            ("boot.kernel", "/grub.efi"),
            ("boot.cmdline", "quiet"),
        ];
        let s = MachineSpec::from_config(&cfg(&[rom[0], rom[1], rom[2], ("lpc.fwcfg", "qemu")]))
            .unwrap();
        assert!(matches!(s.boot, BootSource::Rom(_)), "{:?}", s.boot);
        assert_eq!(
            s.fw_cfg_kernel,
            Some(FwCfgKernel {
                kernel: "/grub.efi".into(),
                initrd: None,
                cmdline: "quiet".into()
            })
        );
        // bhyve's fwctl has no kernel items: bhyve loads the kernel.
        let s = MachineSpec::from_config(&cfg(&rom)).unwrap();
        assert!(matches!(s.boot, BootSource::Kernel { .. }), "{:?}", s.boot);
        assert_eq!(s.fw_cfg_kernel, None);
        assert_eq!(err(&[("cpus", "2"), ("sockets", "3")]).1, 4);
    }
}
