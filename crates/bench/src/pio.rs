//! Port-I/O exit round trip: the same three-instruction loop
//! (`out 0xe0, al; dec ecx; jnz`) run in our bhyve (the `pio_loop` test
//! guest, against pc-testdev's scratch port) and in a minimal raw KVM_RUN
//! loop that does nothing but count the exits — the floor any VMM pays.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

use crate::median;
use crate::proc::measure;

const CODE_GPA: u64 = 0x1000;
const MEM_SIZE: usize = 0x10000;

/// Real-mode loop: `mov ecx, N; 1: out 0xe0, al; dec ecx; jnz 1b; hlt`.
fn loop_code(n: u32) -> Vec<u8> {
    let mut c = vec![0x66, 0xb9];
    c.extend_from_slice(&n.to_le_bytes());
    c.extend_from_slice(&[0xe6, 0xe0, 0x66, 0x49, 0x75, 0xfa, 0xf4]);
    c
}

/// Seconds per exit in a bare KVM_RUN loop.
fn raw_kvm(n: u32) -> Result<f64> {
    let kvm = Kvm::new().context("opening /dev/kvm")?;
    let vm = kvm.create_vm().context("KVM_CREATE_VM")?;
    // SAFETY: anonymous private mapping, checked for failure below.
    let host = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            MEM_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if host == libc::MAP_FAILED {
        bail!("mmap: {}", std::io::Error::last_os_error());
    }
    let code = loop_code(n);
    // SAFETY: the mapping is MEM_SIZE bytes and the code fits after CODE_GPA.
    unsafe {
        std::ptr::copy_nonoverlapping(
            code.as_ptr(),
            (host as *mut u8).add(CODE_GPA as usize),
            code.len(),
        )
    };
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: MEM_SIZE as u64,
        userspace_addr: host as u64,
    };
    // SAFETY: the region stays mapped for the VM's life (leaked below).
    unsafe { vm.set_user_memory_region(region) }.context("KVM_SET_USER_MEMORY_REGION")?;
    let mut vcpu = vm.create_vcpu(0).context("KVM_CREATE_VCPU")?;
    let mut sregs = vcpu.get_sregs()?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)?;
    let mut regs = vcpu.get_regs()?;
    regs.rip = CODE_GPA;
    regs.rflags = 2;
    vcpu.set_regs(&regs)?;
    let mut count = 0u32;
    let start = Instant::now();
    loop {
        match vcpu.run().context("KVM_RUN")? {
            VcpuExit::IoOut(0xe0, _) => count += 1,
            VcpuExit::Hlt => break,
            other => bail!("raw loop: unexpected exit {other:?}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if count != n {
        bail!("raw loop: {count} exits, expected {n}");
    }
    Ok(secs / n as f64)
}

fn bhyve_run(bhyve: &Path, guest: &Path, rundir: &Path, n: u32) -> Result<f64> {
    let mut c = Command::new(bhyve);
    c.env("BHYVE_RUNDIR", rundir)
        .args(["-m", "64M", "-l", "com1,stdio", "-l", "pc-testdev", "-o"])
        .arg(format!("boot.kernel={}", guest.display()))
        .arg("-o")
        .arg(format!("boot.cmdline=iterations={n}"))
        .arg("pio");
    let s = measure(&mut c)?;
    if s.status != bhyve_testguests::PASS_STATUS {
        bail!(
            "pio_loop guest exited with {}: {:?}",
            s.status,
            String::from_utf8_lossy(&s.output)
        );
    }
    Ok(s.total.as_secs_f64())
}

pub fn run(bhyve: &Path, work: &Path, n: u32, runs: usize) -> Result<()> {
    let guest = bhyve_testguests::write_guest("pio_loop", work)?;
    let rundir = work.join("run");
    let mut ours = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..runs.max(1) {
        // The difference between a long and an empty loop removes the
        // boot and teardown time from the per-exit figure.
        let long = bhyve_run(bhyve, &guest, &rundir, n)?;
        let empty = bhyve_run(bhyve, &guest, &rundir, 0)?;
        ours.push((long - empty) / n as f64);
        floor.push(raw_kvm(n)?);
    }
    let _ = std::fs::remove_dir_all(&rundir);
    let a = median(&mut ours) * 1e6;
    let b = median(&mut floor) * 1e6;
    println!(
        "pio: {n} x (out 0xe0; dec; jnz), median of {} runs",
        runs.max(1)
    );
    println!("| metric | bhyve | raw KVM loop | bhyve/raw |");
    println!("|---|---|---|---|");
    println!(
        "| PIO exit round trip | {a:.2} µs | {b:.2} µs | {:.2} |",
        a / b
    );
    Ok(())
}
