//! The FreeBSD workflow end to end on KVM: bhyveload → bhyve (guest
//! reboots: exit 0, VM kept) → bhyveload again → bhyve → bhyvectl
//! --destroy; and bhyvectl's runtime operations against a running guest.
//!
//! The guests are tiny PVH ELF kernels built here: one resets through port
//! 0xcf9, one sleeps forever in `sti; hlt`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KERNEL_ADDR: u64 = 0x10_0000;

/// `mov dx, 0xcf9; mov al, 6; out dx, al; 1: hlt; jmp 1b`
const RESET_CF9: &[u8] = &[0x66, 0xba, 0xf9, 0x0c, 0xb0, 0x06, 0xee, 0xf4, 0xeb, 0xfd];
/// `1: sti; hlt; jmp 1b`
const SLEEP: &[u8] = &[0xfb, 0xf4, 0xeb, 0xfc];

fn kvm_usable() -> bool {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn rundir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("bhyve-flow-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    fs::create_dir_all(&p).unwrap();
    p
}

fn cmd(bin: &str, rd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args).env("BHYVE_RUNDIR", rd.join("vms"));
    c.stdin(Stdio::null());
    c
}

fn out(bin: &str, rd: &Path, args: &[&str]) -> Output {
    cmd(bin, rd, args).output().expect("run binary")
}

const BHYVE: &str = env!("CARGO_BIN_EXE_bhyve");
const BHYVECTL: &str = env!("CARGO_BIN_EXE_bhyvectl");
const BHYVELOAD: &str = env!("CARGO_BIN_EXE_bhyveload");

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A minimal PVH ELF: `code` loaded at 1 MiB, entry note pointing at it.
fn pvh_elf(code: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 0x1000];
    let w = |f: &mut Vec<u8>, o: usize, b: &[u8]| f[o..o + b.len()].copy_from_slice(b);
    w(&mut f, 0, b"\x7fELF\x02\x01\x01");
    w(&mut f, 16, &2u16.to_le_bytes());
    w(&mut f, 18, &62u16.to_le_bytes());
    w(&mut f, 20, &1u32.to_le_bytes());
    w(&mut f, 24, &KERNEL_ADDR.to_le_bytes());
    w(&mut f, 32, &64u64.to_le_bytes());
    w(&mut f, 52, &64u16.to_le_bytes());
    w(&mut f, 54, &56u16.to_le_bytes());
    w(&mut f, 56, &2u16.to_le_bytes());
    let len = code.len() as u64;
    // PT_LOAD: type, flags, offset, vaddr, paddr, filesz, memsz, align
    for (i, v) in [0x1000, KERNEL_ADDR, KERNEL_ADDR, len, len, 0x1000]
        .iter()
        .enumerate()
    {
        w(&mut f, 64 + 8 + i * 8, &v.to_le_bytes());
    }
    w(&mut f, 64, &1u32.to_le_bytes());
    w(&mut f, 68, &5u32.to_le_bytes());
    // PT_NOTE at 0x200
    let ph = 120;
    w(&mut f, ph, &4u32.to_le_bytes());
    w(&mut f, ph + 4, &4u32.to_le_bytes());
    w(&mut f, ph + 8, &0x200u64.to_le_bytes());
    w(&mut f, ph + 32, &20u64.to_le_bytes());
    w(&mut f, ph + 40, &20u64.to_le_bytes());
    w(&mut f, ph + 48, &4u64.to_le_bytes());
    w(&mut f, 0x200, &4u32.to_le_bytes());
    w(&mut f, 0x204, &4u32.to_le_bytes());
    w(&mut f, 0x208, &18u32.to_le_bytes());
    w(&mut f, 0x20c, b"Xen\0");
    w(&mut f, 0x210, &(KERNEL_ADDR as u32).to_le_bytes());
    f.extend_from_slice(code);
    f
}

fn kernel(rd: &Path, name: &str, code: &[u8]) -> String {
    let p = rd.join(name);
    fs::write(&p, pvh_elf(code)).unwrap();
    p.to_str().unwrap().to_string()
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn list(rd: &Path) -> String {
    String::from_utf8_lossy(&out(BHYVECTL, rd, &["--list"]).stdout).into_owned()
}

#[test]
fn load_run_reboot_reload_destroy() {
    if !kvm_usable() {
        eprintln!("skipped: /dev/kvm not usable");
        return;
    }
    let rd = rundir("reboot");
    let k = kernel(&rd, "reset", RESET_CF9);
    for round in 0..2 {
        let o = out(BHYVELOAD, &rd, &["-m", "64M", "-k", &k, "vm1"]);
        assert_eq!(o.status.code(), Some(0), "round {round}: {}", err(&o));
        assert_eq!(list(&rd), "vm1\tloaded\n");
        let o = out(BHYVE, &rd, &["-m", "64M", "vm1"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "round {round}: reboot exits 0: {}",
            err(&o)
        );
        // The VM outlives bhyve; its entry state was consumed.
        assert_eq!(list(&rd), "vm1\tstopped\n", "round {round}");
    }
    // Without a fresh bhyveload there is nothing to run.
    let o = out(BHYVE, &rd, &["-m", "64M", "vm1"]);
    assert_ne!(o.status.code(), Some(0));
    let o = out(BHYVECTL, &rd, &["--vm=vm1", "--destroy"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(list(&rd), "");
    fs::remove_dir_all(&rd).unwrap();
}

/// Starts the sleeping guest and waits until its control socket answers.
fn start_sleeper(rd: &Path) -> Child {
    let k = kernel(rd, "sleep", SLEEP);
    let o = out(BHYVELOAD, rd, &["-m", "64M", "-k", &k, "vm1"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let mut child = cmd(BHYVE, rd, &["-m", "64M", "vm1"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let o = out(BHYVECTL, rd, &["--vm=vm1", "--get-stats"]);
        if o.status.success() {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("bhyve exited early: {st}");
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{}", err(&o));
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn runtime_operations_on_a_running_guest() {
    if !kvm_usable() {
        eprintln!("skipped: /dev/kvm not usable");
        return;
    }
    let rd = rundir("runtime");

    // Stats, then power-off: bhyve exits 1.
    let mut bhyve = start_sleeper(&rd);
    assert_eq!(list(&rd), "vm1\trunning\n");
    let o = out(BHYVECTL, &rd, &["--vm=vm1", "--get-stats"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.starts_with("vcpu0 stats:\n") && text.lines().count() > 1,
        "{text}"
    );
    let o = out(BHYVELOAD, &rd, &["-k", "/dev/null", "vm1"]);
    assert_eq!(err(&o), "bhyveload: /dev/null: not a regular file\n");
    let o = out(
        BHYVELOAD,
        &rd,
        &["-m", "64M", "-k", &kernel(&rd, "k", SLEEP), "vm1"],
    );
    assert_eq!(err(&o), "bhyveload: VM vm1 is running\n");
    let o = out(BHYVECTL, &rd, &["--vm=vm1", "--force-poweroff"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(wait_timeout(&mut bhyve, Duration::from_secs(10)), Some(1));

    // Reset: bhyve exits 0, as on a guest reboot.
    let mut bhyve = start_sleeper(&rd);
    let o = out(BHYVECTL, &rd, &["--vm=vm1", "--force-reset"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(wait_timeout(&mut bhyve, Duration::from_secs(10)), Some(0));

    // An NMI reaches a guest without an IDT: it triple-faults (exit 3).
    let mut bhyve = start_sleeper(&rd);
    let o = out(BHYVECTL, &rd, &["--vm=vm1", "--inject-nmi"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(wait_timeout(&mut bhyve, Duration::from_secs(10)), Some(3));

    // Destroying a running VM powers it off first.
    let mut bhyve = start_sleeper(&rd);
    let o = out(BHYVECTL, &rd, &["--vm=vm1", "--destroy"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(wait_timeout(&mut bhyve, Duration::from_secs(10)), Some(1));
    assert_eq!(list(&rd), "");
    fs::remove_dir_all(&rd).unwrap();
}
