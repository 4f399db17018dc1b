//! Debian's SeaBIOS, firmware nobody here wrote, judging the platform:
//! it boots from `-l bootrom` on QEMU's fw_cfg, and its own debug log
//! (port 0x402) and the tables it leaves in guest memory show what it
//! found: our memory size and e820, the PCI functions with the IDs we
//! configured, the `-c` CPU count, our SMBIOS UUID and our ACPI tables
//! (installed through the fw_cfg table-loader).
//!
//! The command line is the one docs/STATUS.md documents: QEMU's i440FX
//! host bridge identity through `pcireg.*`, the PM block moved off
//! SeaBIOS's debug port, `fwcfg=qemu`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::seabios::{seabios_args, BIOS};
use common::*;

const UUID: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

fn le32(d: &[u8], at: usize) -> usize {
    u32::from_le_bytes(d[at..at + 4].try_into().unwrap()) as usize
}

#[test]
fn seabios_boots_and_finds_our_platform() {
    assert!(
        Path::new(BIOS).exists(),
        "{BIOS} is missing: apt-get install seabios (.ci/run does)"
    );
    let s = Scratch::new("seabios");
    let log = s.dir.join("debugcon.log");
    let mut args: Vec<String> = ["-A", "-c", "2", "-m", "256M", "-U", UUID]
        .map(String::from)
        .to_vec();
    args.extend(seabios_args(BIOS, &["3,virtio-rnd".into()], &log));
    // QEMU's subsystem IDs on the host bridge too, as docs/STATUS.md says.
    args.extend(
        [
            "-o",
            "pci.0.0.0.pcireg.subvendor=0x1af4",
            "-o",
            "pci.0.0.0.pcireg.subdevice=0x1100",
            "seabios",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = s.command(&args).spawn().unwrap();
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("No bootable device") {
            break text;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("bhyve exited with {st} before SeaBIOS finished:\n{text}");
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("SeaBIOS did not reach its boot menu in 90 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Guest RAM is the VM's memory file: read what SeaBIOS left there
    // while the VM still runs.
    let mem = std::fs::read(s.rundir().join("seabios/memory")).unwrap();
    // SIGTERM: SeaBIOS never enables ACPI, so bhyve powers off (1).
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = wait_deadline(child);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    expect_log(
        &text,
        &[
            "Running on QEMU (i440fx)",
            "Found QEMU fw_cfg",
            "QEMU fw_cfg DMA interface supported",
            // Our etc/e820: 640 KiB, then RAM from 1 MiB to 256 MiB.
            "qemu/e820: addr 0x0000000000000000 len 0x00000000000a0000 [RAM]",
            "qemu/e820: addr 0x0000000000100000 len 0x000000000ff00000 [RAM]",
            "e0000000 - 00000000f0000000 = 2 RESERVED",
            "Found 3 PCI devices",
            "PCI: init bdf=00:00.0 id=8086:1237",
            // virtio-rnd's BARs, sized and placed by SeaBIOS: the legacy
            // I/O registers, the MSI-X table and the modern registers.
            "PCI: init bdf=00:03.0 id=1af4:1005",
            "PCI: map device bdf=00:03.0  bar 0, addr 0000c000, size 00000020 [io]",
            "PCI: map device bdf=00:03.0  bar 1, addr",
            "size 00002000 [mem]",
            "PCI: map device bdf=00:03.0  bar 4, addr",
            "size 00004000 [mem]",
            "PCI: init bdf=00:1f.0 id=8086:7000",
            "PIIX3/PIIX4 init",
            "Found 2 cpu(s)",
            &format!("Machine UUID {UUID}"),
            "No bootable device",
        ],
    );
    for bad in ["WARNING - internal error", "Unable to unlock ram"] {
        assert!(!text.contains(bad), "{bad:?} in:\n{text}");
    }

    // The RSDP SeaBIOS installed (table-loader ALLOCATE in the F-segment)
    // leads to our tables: OEM "BHYVE", with the MCFG at our ECAM.
    let at = (0xe_0000..0x10_0000 - 8)
        .step_by(16)
        .find(|&a| &mem[a..a + 8] == b"RSD PTR ")
        .expect("no RSDP in the BIOS area");
    assert_eq!(&mem[at + 9..at + 15], b"BHYVE ");
    let rsdt = le32(&mem, at + 16);
    assert_eq!(&mem[rsdt..rsdt + 4], b"RSDT");
    let len = le32(&mem, rsdt + 4);
    let tables: Vec<usize> = (rsdt + 36..rsdt + len)
        .step_by(4)
        .map(|p| le32(&mem, p))
        .collect();
    let sigs: Vec<&[u8]> = tables.iter().map(|&t| &mem[t..t + 4]).collect();
    for want in [b"FACP", b"APIC", b"HPET", b"MCFG"] {
        assert!(sigs.contains(&&want[..]), "{sigs:?}");
    }
    for &t in &tables {
        let n = le32(&mem, t + 4);
        let sum = mem[t..t + n].iter().fold(0u8, |a, b| a.wrapping_add(*b));
        assert_eq!(sum, 0, "checksum of {:?}", &mem[t..t + 4]);
        assert_eq!(&mem[t + 10..t + 16], b"BHYVE ");
    }
    let mcfg = tables[sigs.iter().position(|s| s == b"MCFG").unwrap()];
    assert_eq!(
        u64::from_le_bytes(mem[mcfg + 44..mcfg + 52].try_into().unwrap()),
        0xe000_0000
    );
    // The MADT lists the two CPUs of -c 2 (type 0 entries).
    let madt = tables[sigs.iter().position(|s| s == b"APIC").unwrap()];
    let (mut p, end, mut cpus) = (madt + 44, madt + le32(&mem, madt + 4), 0);
    while p + 2 <= end && mem[p + 1] >= 2 {
        cpus += usize::from(mem[p] == 0);
        p += usize::from(mem[p + 1]);
    }
    assert_eq!(cpus, 2);
}

/// The boot sector below (GNU as, `.code16`), for the disk test: reads
/// sector 2 through INT 13h, prints its own message and sector 2's to
/// SeaBIOS's debug port, and exits through pc-testdev with 0x21 (0x13
/// if the read failed).
///
/// ```text
/// _start: cli; xor %ax,%ax; mov %ax,%ds; mov %ax,%es; mov %ax,%ss
///         mov $0x7c00,%sp
///         mov $0x8000,%bx; mov $0x0201,%ax; mov $2,%cx; mov $0,%dh
///         int $0x13; jc fail             # AH=2: 1 sector, C0 H0 S2
///         mov $0x7c3e,%si; call print    # msg
///         mov $0x8000,%si; call print    # sector 2
///         mov $0x21,%al; out %al,$0xf4
/// fail:   mov $0x13,%al; out %al,$0xf4; hlt
/// print:  mov $0x402,%dx
/// 1:      mov (%si),%al; inc %si; test %al,%al; jz 2f
///         out %al,%dx; jmp 1b
/// 2:      ret
/// msg:    (at 0x3e)
/// ```
const BOOT_CODE: [u8; 0x3e] = [
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xbb, 0x00, 0x80, 0xb8,
    0x01, 0x02, 0xb9, 0x02, 0x00, 0xb6, 0x00, 0xcd, 0x13, 0x72, 0x10, 0xbe, 0x3e, 0x7c, 0xe8, 0x0f,
    0x00, 0xbe, 0x00, 0x80, 0xe8, 0x09, 0x00, 0xb0, 0x21, 0xe6, 0xf4, 0xb0, 0x13, 0xe6, 0xf4, 0xf4,
    0xba, 0x02, 0x04, 0x8a, 0x04, 0x46, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf6, 0xc3,
];
const BOOT_MSG: &[u8] = b"virtio-blk boot sector ran\n\0";
const SECTOR2_MSG: &[u8] = b"sector 2 read through INT 13h\n\0";

/// A 1 MiB disk whose boot sector prints `msg` and sector 2 to the debug
/// port (reading sector 2 through INT 13h), then exits with 0x21.
fn boot_disk(msg: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; 1 << 20];
    d[..BOOT_CODE.len()].copy_from_slice(&BOOT_CODE);
    d[0x3e..0x3e + msg.len()].copy_from_slice(msg);
    d[510] = 0x55;
    d[511] = 0xaa;
    d[512..512 + SECTOR2_MSG.len()].copy_from_slice(SECTOR2_MSG);
    d
}

/// Fails unless SeaBIOS's log `text` holds every line of `want`.
fn expect_log(text: &str, want: &[&str]) {
    for w in want {
        assert!(text.contains(w), "missing {w:?} in:\n{text}");
    }
}

/// Boots SeaBIOS (`bios`) with the `-s` `slots` and pc-testdev, as the
/// named VM `vm`: the boot sector of [`boot_disk`] must run to its exit
/// through pc-testdev (0x21), and SeaBIOS's debug log must hold every
/// line of `want`. Returns the log.
fn seabios_boots(s: &Scratch, vm: &str, bios: &str, slots: &[String], want: &[&str]) -> String {
    assert!(
        Path::new(bios).exists(),
        "{bios} is missing: apt-get install seabios"
    );
    let log = s.dir.join(format!("{vm}-debugcon.log"));
    let mut args = vec!["-A".to_string(), "-m".into(), "128M".into()];
    args.extend(seabios_args(bios, slots, &log));
    args.extend(["-l", "pc-testdev", vm].map(String::from));
    let out = s.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some((0x21 << 1) | 1),
        "{}\n{text}",
        stderr(&out)
    );
    expect_log(&text, want);
    text
}

/// bhyve refuses the `-s` `slot`: status 4 before any guest runs.
/// Returns its stderr.
fn expect_refused(s: &Scratch, slot: &str) -> String {
    let out = s.run(&["-s", slot, "-l", "pc-testdev", "x"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    err
}

#[test]
fn seabios_boots_from_a_virtio_blk_disk() {
    let s = Scratch::new("seabios-blk");
    let img = s.file("disk.img", &boot_disk(BOOT_MSG));
    seabios_boots(
        &s,
        "seabios-blk",
        BIOS,
        &[format!("4,virtio-blk,{}", img.display())],
        &[
            "PCI: init bdf=00:04.0 id=1af4:1001",
            "found virtio-blk at 00:04.0",
            "Searching bootorder for: /pci@i0cf8/*@4",
            "Booting from Hard Disk...",
            "Booting from 0000:7c00",
            "virtio-blk boot sector ran\nsector 2 read through INT 13h\n",
        ],
    );
}

/// `bootindex`: two virtio-blk disks, the second with `bootindex=1`.
/// SeaBIOS would boot the first one it finds (slot 4); our fw_cfg
/// `bootorder` makes it boot slot 5 instead.
#[test]
fn seabios_follows_bootindex() {
    let s = Scratch::new("seabios-bootindex");
    let a = s.file("a.img", &boot_disk(b"disk A boot sector ran\n\0"));
    let b = s.file("b.img", &boot_disk(b"disk B boot sector ran\n\0"));
    let text = seabios_boots(
        &s,
        "seabios-bootindex",
        BIOS,
        &[
            format!("4,virtio-blk,{}", a.display()),
            format!("5,virtio-blk,{},bootindex=1", b.display()),
        ],
        &[
            "Searching bootorder for: /pci@i0cf8/*@5",
            "disk B boot sector ran\nsector 2 read through INT 13h\n",
        ],
    );
    assert!(!text.contains("disk A boot sector ran"), "{text}");
    // A bootindex on a device that cannot boot is refused, not ignored.
    let err = expect_refused(&s, "3,virtio-rnd,bootindex=1");
    assert!(err.contains("bootindex"), "{err}");
}

/// SeaBIOS's virtio-scsi driver (request queue only, no control queue)
/// finds LUN 0 of our target through REPORT LUNS/INQUIRY/READ CAPACITY
/// and boots its disk image: the boot sector reads sector 2 with INT 13h
/// (a SCSI READ(10)). `-s 4,virtio-scsi,/dev/cam/ctl` is one error line
/// naming the Linux alternative, status 4.
#[test]
fn seabios_boots_from_a_virtio_scsi_disk() {
    let s = Scratch::new("seabios-scsi");
    let img = s.file("disk.img", &boot_disk(b"virtio-scsi boot sector ran\n\0"));
    seabios_boots(
        &s,
        "seabios-scsi",
        BIOS,
        &[format!("4,virtio-scsi,{}", img.display())],
        &[
            "PCI: init bdf=00:04.0 id=1af4:1004",
            "found virtio-scsi at 00:04.0",
            "virtio-scsi vendor='BHYVE' product='VIRTUAL DISK' rev='0001' type=0 removable=0",
            "Booting from Hard Disk...",
            "virtio-scsi boot sector ran\nsector 2 read through INT 13h\n",
        ],
    );
    let err = expect_refused(&s, "4,virtio-scsi,/dev/cam/ctl");
    assert!(err.contains("Linux has no CAM Target Layer"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// SeaBIOS's AHCI driver finds our ICH8 HBA, IDENTIFYs the disk on port
/// 2 (the model and size we configured show in its log) and boots it:
/// the boot sector reads sector 2 with INT 13h (READ DMA EXT).
#[test]
fn seabios_boots_from_an_ahci_disk() {
    let s = Scratch::new("seabios-ahci");
    let img = s.file("disk.img", &boot_disk(b"ahci boot sector ran\n\0"));
    seabios_boots(
        &s,
        "seabios-ahci",
        BIOS,
        &[format!(
            "4,ahci,cd:{0},hd:{1},hd:{1},model=BHYVE TEST DISK,ser=SER0042,rev=R9",
            s.file("empty.iso", &[0u8; 2048 * 16]).display(),
            img.display()
        )],
        &[
            "PCI: init bdf=00:04.0 id=8086:2821",
            "AHCI controller at 00:04.0",
            "AHCI/2: BHYVE TEST DISK ATA-",
            "Hard-Disk (1 MiBytes)",
            "Booting from Hard Disk...",
            "ahci boot sector ran\nsector 2 read through INT 13h\n",
        ],
    );
}

/// El Torito from an ATAPI CD-ROM: an ISO 9660 image (xorriso, made
/// here) whose boot image is a 1.44 MB floppy with our boot sector.
/// SeaBIOS finds the drive through IDENTIFY PACKET DEVICE, reads the
/// boot catalog with READ(10) and emulates the floppy: the boot sector's
/// INT 13h read of sector 2 goes through ATAPI reads too.
#[test]
fn seabios_boots_from_an_ahci_cd() {
    let s = Scratch::new("seabios-ahci-cd");
    let root = s.dir.join("cdroot");
    std::fs::create_dir_all(&root).unwrap();
    let mut floppy = boot_disk(b"ahci cd boot image ran\n\0");
    floppy.resize(1_474_560, 0);
    std::fs::write(root.join("boot.img"), &floppy).unwrap();
    std::fs::write(root.join("README.TXT"), b"hello from the CD\n").unwrap();
    let iso = s.dir.join("cd.iso");
    let out = std::process::Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "BHYVECD", "-o"])
        .arg(&iso)
        .args(["-b", "boot.img", "-c", "boot.cat"])
        .arg(&root)
        .output()
        .expect("xorriso (apt-get install xorriso)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    seabios_boots(
        &s,
        "seabios-ahci-cd",
        BIOS,
        &[format!("4,ahci-cd,{},model=BHYVE TEST CD", iso.display())],
        &[
            "PCI: init bdf=00:04.0 id=8086:2821",
            "AHCI/0: registering: \"DVD/CD [AHCI/0: BHYVE TEST CD ATAPI-",
            "Booting from DVD/CD...",
            "ahci cd boot image ran\nsector 2 read through INT 13h\n",
        ],
    );
}

/// Debian's SeaBIOS with its NVMe driver (bios.bin is built without
/// one; QEMU's 256 KiB image has it).
const BIOS_256K: &str = "/usr/share/seabios/bios-256k.bin";

/// SeaBIOS's NVMe driver finds our controller (bhyve's IDs), brings up
/// an admin and an I/O queue pair, identifies the namespace and
/// registers it as a drive (the size we configured, in sectors, shows in
/// its log; Debian's build does not log the model or serial) and boots
/// from it: the boot sector reads sector 2 with INT 13h (an NVMe Read
/// through PRPs).
#[test]
fn seabios_boots_from_an_nvme_disk() {
    let s = Scratch::new("seabios-nvme");
    let img = s.file("disk.img", &boot_disk(b"nvme boot sector ran\n\0"));
    seabios_boots(
        &s,
        "seabios-nvme",
        BIOS_256K,
        &[format!("4,nvme,{},ser=NVMESER42", img.display())],
        &[
            "PCI: init bdf=00:04.0 id=fb5d:0a0a",
            "Searching bootorder for: /pci@i0cf8/*@4",
            "LCHS=2/16/63 s=2048",
            "Booting from Hard Disk...",
            "nvme boot sector ran\nsector 2 read through INT 13h\n",
        ],
    );
}
