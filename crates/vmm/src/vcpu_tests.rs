//! vCPU loop tests against the real /dev/kvm with hand-assembled guests.

use std::sync::{Arc, Mutex};

use bhyve_devices::{Bus, BusDevice, ExitRequest, VmControl};
use bhyve_firmware::entry::BOOT_GDT;
use bhyve_firmware::{EntryMode, EntryState};
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::cpuid::{self, CpuTopology, CpuidParams};
use crate::kvm_vm::{KvmVm, VmOptions};

struct Sink(Arc<Mutex<Vec<u8>>>);
impl BusDevice for Sink {
    fn read(&mut self, _: u64, _: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _: u64, _: u64, data: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(data);
    }
}

const CODE: u64 = 0x1000;
const GDT: u64 = 0x500;

/// Runs 32-bit protected-mode `code` on one vCPU until the VM stops.
fn run_guest(
    code: &[u8],
    opts: VmOptions,
    strict_io: bool,
) -> (ExitRequest, Vec<u8>, Arc<Lifecycle>) {
    run_guest_for(code, opts, strict_io, None)
}

/// Like `run_guest`; `stop_after` powers the VM off from outside.
fn run_guest_for(
    code: &[u8],
    opts: VmOptions,
    strict_io: bool,
    stop_after: Option<Duration>,
) -> (ExitRequest, Vec<u8>, Arc<Lifecycle>) {
    signals::install_kick_handler().unwrap();
    let vm = KvmVm::create(&opts).unwrap();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    for (i, d) in BOOT_GDT.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(GDT + 8 * i as u64)).unwrap();
    }
    mem.write_slice(code, GuestAddress(CODE)).unwrap();
    vm.map_memory(&mem).unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let pio = Arc::new(Bus::new());
    pio.insert(0x3f8, 8, Arc::new(Mutex::new(Sink(out.clone()))))
        .unwrap();
    let life = Arc::new(Lifecycle::new(1));
    let vcpu = Vcpu::new(0, vm.create_vcpu(0).unwrap(), vm.fd().run_size());
    let params = CpuidParams {
        topology: CpuTopology::flat(1),
        apic_id: 0,
        x2apic: false,
    };
    let entries = cpuid::build(vm.supported_cpuid().as_slice(), &params);
    vcpu.configure(&CpuId::from_entries(&entries).unwrap(), false)
        .unwrap();
    vcpu.set_entry_state(&EntryState {
        mode: EntryMode::Protected32,
        rip: CODE,
        rsp: 0x8000,
        rbx: 0,
        rsi: 0,
        cr3: 0,
        gdt_base: GDT,
        gdt_limit: (BOOT_GDT.len() * 8 - 1) as u16,
    })
    .unwrap();
    let ctx = VcpuContext {
        pio,
        mmio: Arc::new(Bus::new()),
        lifecycle: life.clone(),
        strict_io,
        cpuset: vec![],
    };
    let t = vcpu.spawn(ctx).unwrap();
    if let Some(d) = stop_after {
        let l = life.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            l.request_exit(ExitRequest::PowerOff);
        });
    }
    let req = life.wait();
    t.join().unwrap();
    let out = out.lock().unwrap().clone();
    (req, out, life)
}

// mov dx,0x3f8 ; mov al,'A' ; out dx,al
const OUT_A: [u8; 7] = [0x66, 0xba, 0xf8, 0x03, 0xb0, 0x41, 0xee];

#[test]
fn serial_out_then_halt() {
    let mut code = OUT_A.to_vec();
    code.extend_from_slice(&[0xfa, 0xf4]); // cli; hlt
    let (req, out, life) = run_guest(&code, VmOptions::default(), false);
    assert_eq!(req, ExitRequest::Halt);
    assert_eq!(out, b"A");
    assert_eq!(life.vcpu(0).counters.get(ExitKind::IoOut), 1);
}

#[test]
fn unclaimed_port_reads_ones_and_strict_io_stops() {
    // in al,0x80 ; mov dx,0x3f8 ; out dx,al ; cli ; hlt
    let code = [0xe4, 0x80, 0x66, 0xba, 0xf8, 0x03, 0xee, 0xfa, 0xf4];
    let (req, out, _) = run_guest(&code, VmOptions::default(), false);
    assert_eq!((req, out), (ExitRequest::Halt, vec![0xff]));
    let (req, _, _) = run_guest(&code, VmOptions::default(), true);
    assert_eq!(
        req,
        ExitRequest::Error(format!("Unhandled inb 0x0080 at {:#x}", CODE))
    );
}

#[test]
fn halted_with_interrupts_enabled_is_not_a_halt() {
    let mut code = OUT_A.to_vec();
    code.extend_from_slice(&[0xfb, 0xf4, 0xeb, 0xfd]); // sti; hlt; jmp hlt
    let opts = VmOptions {
        yield_on_hlt: true,
        ..Default::default()
    };
    let (req, out, life) = run_guest_for(&code, opts, false, Some(Duration::from_millis(600)));
    assert_eq!((req, out), (ExitRequest::PowerOff, b"A".to_vec()));
    // The detector probed the idle vCPU (kicks count as signal exits).
    assert!(life.vcpu(0).counters.get(ExitKind::Interrupted) >= 2);
}

#[test]
fn triple_fault_and_unknown_msr() {
    // lidt [zero-limit IDT at 0x3000] ; ud2 -> #UD -> #DF -> triple fault
    let code = [0x0f, 0x01, 0x1d, 0x00, 0x30, 0x00, 0x00, 0x0f, 0x0b];
    let (req, _, _) = run_guest(&code, VmOptions::default(), false);
    assert_eq!(req, ExitRequest::TripleFault);
    // rdmsr 0x12345678 with -w reads 0: mov ecx,imm ; rdmsr ; out 0x3f8 ; cli; hlt
    let code = vec![
        0xb9, 0x78, 0x56, 0x34, 0x12, 0x0f, 0x32, 0x66, 0xba, 0xf8, 0x03, 0xee, 0xfa, 0xf4,
    ];
    let (req, out, _) = run_guest(
        &code,
        VmOptions {
            ignore_unknown_msrs: true,
            ..Default::default()
        },
        false,
    );
    assert_eq!((req, out), (ExitRequest::Halt, vec![0]));
    // Without -w the #GP (no IDT) ends in a triple fault.
    let (req, _, _) = run_guest(&code, VmOptions::default(), false);
    assert_eq!(req, ExitRequest::TripleFault);
}
