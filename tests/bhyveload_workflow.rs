//! bhyveload: option handling, loading into a named VM, and its errors,
//! with a tiny PVH ELF kernel built here (so these tests need neither KVM
//! nor the test-guest toolchain).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bhyve_firmware::EntryMode;
use bhyve_vmm::store::VmStore;

const KERNEL_ADDR: u64 = 0x10_0000;

fn rundir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("bhyveload-test-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    fs::create_dir_all(&p).unwrap();
    p
}

fn run(bin: &str, rundir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("BHYVE_RUNDIR", rundir.join("vms"))
        .output()
        .expect("run binary")
}

fn bhyveload(rundir: &Path, args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_bhyveload"), rundir, args)
}

fn bhyvectl(rundir: &Path, args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_bhyvectl"), rundir, args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An ELF64 x86-64 executable: one PT_LOAD of `code` at 1 MiB (`memsz`
/// bytes in memory) and a PT_NOTE with the PVH entry (Xen note 18).
fn pvh_elf(code: &[u8], memsz: u64) -> Vec<u8> {
    let mut f = vec![0u8; 0x1000];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // little endian
    f[6] = 1; // EV_CURRENT
    let put16 = |f: &mut Vec<u8>, o: usize, v: u16| f[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |f: &mut Vec<u8>, o: usize, v: u32| f[o..o + 4].copy_from_slice(&v.to_le_bytes());
    let put64 = |f: &mut Vec<u8>, o: usize, v: u64| f[o..o + 8].copy_from_slice(&v.to_le_bytes());
    put16(&mut f, 16, 2); // ET_EXEC
    put16(&mut f, 18, 62); // EM_X86_64
    put32(&mut f, 20, 1);
    put64(&mut f, 24, KERNEL_ADDR);
    put64(&mut f, 32, 64); // e_phoff
    put16(&mut f, 52, 64); // e_ehsize
    put16(&mut f, 54, 56); // e_phentsize
    put16(&mut f, 56, 2); // e_phnum
                          // PT_LOAD
    let ph = 64;
    put32(&mut f, ph, 1);
    put32(&mut f, ph + 4, 5);
    put64(&mut f, ph + 8, 0x1000);
    put64(&mut f, ph + 16, KERNEL_ADDR);
    put64(&mut f, ph + 24, KERNEL_ADDR);
    put64(&mut f, ph + 32, code.len() as u64);
    put64(&mut f, ph + 40, memsz);
    put64(&mut f, ph + 48, 0x1000);
    // PT_NOTE
    let note = 0x200;
    let ph = 64 + 56;
    put32(&mut f, ph, 4);
    put32(&mut f, ph + 4, 4);
    put64(&mut f, ph + 8, note as u64);
    put64(&mut f, ph + 32, 20);
    put64(&mut f, ph + 40, 20);
    put64(&mut f, ph + 48, 4);
    put32(&mut f, note, 4); // namesz
    put32(&mut f, note + 4, 4); // descsz
    put32(&mut f, note + 8, 18); // XEN_ELFNOTE_PHYS32_ENTRY
    f[note + 12..note + 16].copy_from_slice(b"Xen\0");
    put32(&mut f, note + 16, KERNEL_ADDR as u32);
    f.extend_from_slice(code);
    f
}

/// `hlt; jmp .-1`
const HLT_LOOP: &[u8] = &[0xf4, 0xeb, 0xfd];

fn write_kernel(dir: &Path, memsz: u64) -> PathBuf {
    let p = dir.join("vmlinux");
    fs::write(&p, pvh_elf(HLT_LOOP, memsz)).unwrap();
    p
}

fn vm_names(rd: &Path) -> String {
    stdout(&bhyvectl(rd, &["--list"]))
}

#[test]
fn load_list_reload_destroy() {
    let rd = rundir("basic");
    let kernel = write_kernel(&rd, HLT_LOOP.len() as u64);
    fs::write(rd.join("initrd.img"), b"INITRD-CONTENT").unwrap();

    // -h resolves relative -k/-i; -e and -a build the command line.
    let o = bhyveload(
        &rd,
        &[
            "-m",
            "64M",
            "-h",
            rd.to_str().unwrap(),
            "-k",
            "vmlinux",
            "-i",
            "initrd.img",
            "-e",
            "console=ttyS0",
            "-a",
            "quiet loglevel=3",
            "-e",
            "x=a b",
            "vm1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");

    let store = VmStore::at(rd.join("vms"));
    let dir = store.open("vm1").unwrap();
    assert_eq!(dir.mem_size().unwrap(), 64 << 20);
    assert_eq!(fs::metadata(dir.memory_path()).unwrap().len(), 64 << 20);
    let entry = dir.entry().unwrap().expect("entry state saved");
    assert_eq!(entry.mode, EntryMode::Protected32);
    assert_eq!(entry.rip, KERNEL_ADDR);
    // The kernel's bytes are in the memory file at their guest address,
    // and the command line and initrd somewhere in it.
    let mem = fs::read(dir.memory_path()).unwrap();
    let k = KERNEL_ADDR as usize;
    assert_eq!(&mem[k..k + HLT_LOOP.len()], HLT_LOOP);
    let find = |needle: &[u8]| mem.windows(needle.len()).any(|w| w == needle);
    assert!(find(b"console=ttyS0 quiet loglevel=3 x=\"a b\"\0"));
    assert!(find(b"INITRD-CONTENT"));
    assert_eq!(vm_names(&rd), "vm1\tloaded\n");

    // Reloading an existing VM that is not running re-sizes it.
    let k = kernel.to_str().unwrap();
    let o = bhyveload(&rd, &["-m", "32", "-k", k, "vm1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(dir.mem_size().unwrap(), 32 << 20);

    // A running VM (lock held, here by this test) is refused untouched.
    let lock = dir.lock_running().unwrap();
    let o = bhyveload(&rd, &["-m", "64M", "-k", k, "vm1"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "bhyveload: VM vm1 is running\n");
    assert_eq!(dir.mem_size().unwrap(), 32 << 20);
    assert!(dir.entry().unwrap().is_some());
    drop(lock);

    let o = bhyvectl(&rd, &["--vm=vm1", "--destroy"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(vm_names(&rd), "");
    fs::remove_dir_all(&rd).unwrap();
}

#[test]
fn option_errors() {
    let rd = rundir("opts");
    let kernel = write_kernel(&rd, HLT_LOOP.len() as u64);
    let k = kernel.to_str().unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["-m", "lots", "-k", k, "vm1"],
            64,
            "bhyveload: invalid memsize 'lots'\n",
        ),
        (
            &["-d", "disk.img", "vm1"],
            64,
            "bhyveload: -d: loading from a disk image",
        ),
        (&["-l", "/boot/userboot.so", "vm1"], 64, "bhyveload: -l: "),
        (&["-c", "/dev/nmdm0A", "vm1"], 64, "bhyveload: -c: "),
        (
            &["-o", "foo.bar=1", "-k", k, "vm1"],
            64,
            "bhyveload: -o foo.bar: not a bhyveload setting",
        ),
        (
            &["-e", "novalue", "-k", k, "vm1"],
            64,
            "bhyveload: -e 'novalue': expected name=value\n",
        ),
        (&["vm1"], 64, "bhyveload: no kernel: pass -k"),
        (&["-k", k], 1, "bhyveload: usage: bhyveload"),
        (&["-k", k, "a", "b"], 1, "bhyveload: usage: bhyveload"),
        (&["-x", "vm1"], 1, "bhyveload: "),
        (
            &["-k", k, "bad/name"],
            1,
            "bhyveload: invalid VM name 'bad/name'",
        ),
        (
            &["-k", "/nonexistent/vmlinux", "vm1"],
            1,
            "bhyveload: /nonexistent/vmlinux: No such file",
        ),
        (
            &["-k", k, "-i", "/nonexistent/initrd", "vm1"],
            1,
            "bhyveload: /nonexistent/initrd: No such file",
        ),
        (
            &["-k", "/etc", "vm1"],
            1,
            "bhyveload: /etc: not a regular file\n",
        ),
        (&["-m", "1M", "-k", k, "vm1"], 1, "bhyveload: memory size"),
    ];
    for (args, code, msg) in cases {
        let o = bhyveload(&rd, args);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with(msg), "{args:?}: {}", stderr(&o));
        assert!(!rd.join("vms").join("vm1").exists(), "{args:?} left a VM");
    }
    // -c stdio is the default and accepted; -o forms of -k/-m work.
    let o = bhyveload(
        &rd,
        &[
            "-c",
            "stdio",
            "-S",
            "-C",
            "-o",
            &format!("boot.kernel={k}"),
            "-o",
            "memory.size=8M",
            "-o",
            "boot.cmdline=root=/dev/vda",
            "vm1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        VmStore::at(rd.join("vms"))
            .open("vm1")
            .unwrap()
            .mem_size()
            .unwrap(),
        8 << 20
    );

    let o = bhyveload(&rd, &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    for opt in [
        "-k kernel",
        "-i initrd",
        "-e name=value",
        "-h host-path",
        "-m mem-size",
        "-S",
        "-o name=value",
        "-d disk-path",
        "-l os-loader",
    ] {
        assert!(stdout(&o).contains(opt), "--help mentions {opt}");
    }
    fs::remove_dir_all(&rd).unwrap();
}

#[test]
fn failed_load_removes_new_vm_keeps_existing() {
    let rd = rundir("fail");
    let good = write_kernel(&rd, HLT_LOOP.len() as u64);
    let big = rd.join("big-vmlinux");
    fs::write(&big, pvh_elf(HLT_LOOP, 64 << 20)).unwrap();
    let junk = rd.join("junk");
    fs::write(&junk, vec![0x5a; 4096]).unwrap();
    let huge_initrd = rd.join("huge-initrd");
    fs::File::create(&huge_initrd)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();

    for (args, msg) in [
        (
            vec!["-m", "16M", "-k", big.to_str().unwrap()],
            "kernel does not fit in guest memory",
        ),
        (vec!["-k", junk.to_str().unwrap()], "not a Linux kernel"),
        (
            vec![
                "-m",
                "16M",
                "-k",
                good.to_str().unwrap(),
                "-i",
                huge_initrd.to_str().unwrap(),
            ],
            "does not fit",
        ),
    ] {
        let mut a = args.clone();
        a.push("vm1");
        let o = bhyveload(&rd, &a);
        assert_eq!(o.status.code(), Some(1), "{a:?}");
        let e = stderr(&o);
        assert!(
            e.starts_with("bhyveload: ") && e.contains(msg),
            "{a:?}: {e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        assert_eq!(vm_names(&rd), "", "{a:?} left a VM");
        assert_eq!(
            fs::read_dir(rd.join("vms")).unwrap().count(),
            0,
            "no leftovers"
        );
    }

    // An existing VM survives a failed reload, not runnable until loaded.
    let o = bhyveload(&rd, &["-k", good.to_str().unwrap(), "vm1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = bhyveload(&rd, &["-k", junk.to_str().unwrap(), "vm1"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(vm_names(&rd), "vm1\tstopped\n");
    fs::remove_dir_all(&rd).unwrap();
}
