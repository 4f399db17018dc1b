//! Boot ROM checks (bhyve's limits and messages), the CFI variable store
//! and the ISA BIOS copy. Running a ROM on KVM is tested end to end in
//! tests/bhyve_bootrom.rs.

use std::path::PathBuf;

use super::*;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("bhyve-bootrom-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spec(rom: &str, vars: Option<&str>) -> BootRomSpec {
    BootRomSpec {
        rom: rom.into(),
        vars: vars.map(Into::into),
    }
}

fn load_err(rom: &str, vars: Option<&str>) -> String {
    match BootRom::load(&spec(rom, vars)) {
        Ok(_) => panic!("{rom} {vars:?} must be rejected"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rejects_what_bhyve_rejects() {
    let d = Dir::new("reject");
    let page = d.file("page", &[0u8; 4096]);
    let e = load_err("/nonexistent/rom", None);
    assert!(
        e.starts_with("Error opening bootrom \"/nonexistent/rom\": "),
        "{e}"
    );
    let e = load_err(&page, Some("/nonexistent/vars"));
    assert!(
        e.starts_with("Error opening bootrom variable file \"/nonexistent/vars\": "),
        "{e}"
    );
    assert_eq!(
        load_err(&d.file("empty", &[]), None),
        "ROM size 0 is invalid"
    );
    assert_eq!(
        load_err(&d.file("odd", &[0u8; 5000]), None),
        "ROM size 5000 is not a multiple of the page size"
    );
    let small = d.file("small", &[0u8; 100]);
    assert_eq!(
        load_err(&page, Some(&small)),
        "Invalid bootrom variable size 100"
    );
    // Sparse files: the size checks come before any read.
    let big = d.0.join("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(BOOTROM_SIZE)
        .unwrap();
    let big = big.to_str().unwrap();
    assert_eq!(
        load_err(big, Some(&page)),
        format!(
            "Invalid bootrom and variable aggregate size {}",
            BOOTROM_SIZE + 4096
        )
    );
    assert_eq!(
        load_err(&page, Some(big)),
        format!(
            "Invalid bootrom and variable aggregate size {}",
            BOOTROM_SIZE + 4096
        )
    );
    let e = load_err(d.0.to_str().unwrap(), None);
    assert!(e.starts_with("Error opening bootrom"), "{e}");
    // The largest ROM fits exactly.
    let rom = BootRom::load(&spec(big, None)).unwrap();
    assert_eq!(rom.rom_range(), (BOOTROM_END - BOOTROM_SIZE, BOOTROM_SIZE));
}

#[test]
fn layout_rom_at_4g_vars_below() {
    let d = Dir::new("layout");
    let mut img = vec![0u8; 3 * 4096];
    img[0] = 0xaa;
    *img.last_mut().unwrap() = 0xbb;
    let rom = d.file("rom", &img);
    let vars = d.file("vars", &[0u8; 8192]);
    let r = BootRom::load(&spec(&rom, Some(&vars))).unwrap();
    assert_eq!(r.rom_range(), (0xffff_d000, 0x3000));
    assert_eq!(r.vars_range(), Some((0xffff_b000, 0x2000)));
    assert_eq!(r.rom_bytes(), &img[..]);
    let r = BootRom::load(&spec(&rom, None)).unwrap();
    assert_eq!(r.vars_range(), None);
}

#[test]
fn isa_bios_window_holds_the_rom_tail() {
    let d = Dir::new("isa");
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    // A small ROM lands right below 1 MiB.
    let mut img = vec![0u8; 4096];
    img[0] = 0x11;
    img[4095] = 0x22;
    let r = BootRom::load(&spec(&d.file("small", &img), None)).unwrap();
    r.copy_isa_bios(&mem).unwrap();
    assert_eq!(mem.read_obj::<u8>(GuestAddress(0xff000)).unwrap(), 0x11);
    assert_eq!(mem.read_obj::<u8>(GuestAddress(0xfffff)).unwrap(), 0x22);
    assert_eq!(mem.read_obj::<u8>(GuestAddress(0xfefff)).unwrap(), 0);
    // A large one: only its last 128 KiB, from 0xe0000.
    let mut img = vec![0u8; 256 << 10];
    img[(128 << 10) - 1] = 0x33;
    img[128 << 10] = 0x44;
    let r = BootRom::load(&spec(&d.file("big", &img), None)).unwrap();
    r.copy_isa_bios(&mem).unwrap();
    assert_eq!(mem.read_obj::<u8>(GuestAddress(0xe0000)).unwrap(), 0x44);
    assert_eq!(mem.read_obj::<u8>(GuestAddress(0xdffff)).unwrap(), 0);
    // Memory without the window: an error, not a panic.
    let tiny = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    assert!(r.copy_isa_bios(&tiny).is_err());
}

#[test]
fn variable_store_speaks_cfi_and_persists() {
    let d = Dir::new("cfi");
    let rom = d.file("rom", &[0u8; 4096]);
    let mut init = vec![0u8; 4096];
    init[0x10] = 0x5a;
    let vars = d.file("vars", &init);
    let r = BootRom::load(&spec(&rom, Some(&vars))).unwrap();
    let (gpa, len) = r.vars_range().unwrap();
    let bus = Bus::new();
    r.attach_vars(&bus).unwrap();
    let read = |addr: u64, n: usize| {
        let mut b = vec![0u8; n];
        assert!(bus.read(addr, &mut b));
        b
    };
    // Read-array mode: the file's bytes.
    assert_eq!(read(gpa + 0x10, 1), [0x5a]);
    // EDK II's probe: a status command reads back as a clear status (not
    // as the written byte: that would be RAM), then the array again.
    assert!(bus.write(gpa + 0x10, &[CFI_CLEAR_STATUS]));
    assert_eq!(read(gpa + 0x10, 1), [0]);
    assert_eq!(read(gpa + 0x10, 1), [0x5a]);
    assert!(bus.write(gpa + 0x10, &[CFI_READ_STATUS]));
    assert_eq!(read(gpa + 0x10, 4), [0; 4]);
    // A plain write is a command, not data.
    assert!(bus.write(gpa + 0x20, &[0x99]));
    assert_eq!(read(gpa + 0x20, 1), [0]);
    // Program two bytes, then one more at the very end.
    assert!(bus.write(gpa, &[CFI_WRITE_BYTE]));
    assert!(bus.write(gpa + 0x10, &[0xc3, 0xd4]));
    assert_eq!(read(gpa + 0x10, 2), [0xc3, 0xd4]);
    assert!(bus.write(gpa, &[CFI_WRITE_BYTE]));
    assert!(bus.write(gpa + len - 1, &[0xee]));
    // Accesses running past the store are not the store's.
    assert!(!bus.read(gpa + len - 1, &mut [0u8; 2]));
    assert!(!bus.write(gpa + len, &[CFI_WRITE_BYTE]));
    drop(r);
    let file = std::fs::read(&vars).unwrap();
    assert_eq!(file.len(), 4096);
    assert_eq!(&file[0x10..0x12], &[0xc3, 0xd4]);
    assert_eq!(file[4095], 0xee);
    assert_eq!(file[0x20], 0, "commands never reach the file");
}

#[test]
fn reset_entry_state_is_the_power_on_state() {
    use bhyve_firmware::EntryState;
    let vm = KvmVm::create(&crate::kvm_vm::VmOptions::default()).unwrap();
    let fd = vm.create_vcpu(0).unwrap();
    // KVM's fresh vCPU: what set_entry_state(reset) restates.
    let fresh = fd.get_sregs().unwrap();
    let vcpu = crate::vcpu::Vcpu::new(0, fd, vm.fd().run_size());
    vcpu.set_entry_state(&EntryState::reset()).unwrap();
    let s = vcpu.fd().get_sregs().unwrap();
    let r = vcpu.fd().get_regs().unwrap();
    assert_eq!(
        (s.cs.selector, s.cs.base, s.cs.limit),
        (0xf000, 0xffff_0000, 0xffff)
    );
    assert_eq!((r.rip, r.rflags), (0xfff0, 2));
    assert_eq!(s.cr0, 0x6000_0010);
    assert_eq!((s.ds.base, s.ds.limit, s.ss.selector), (0, 0xffff, 0));
    assert_eq!((s.efer, s.cr4), (0, 0));
    assert_eq!(
        (fresh.cs.selector, fresh.cs.base, fresh.cr0),
        (s.cs.selector, s.cs.base, s.cr0)
    );
}
