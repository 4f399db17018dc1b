//! The `ahci_io` and `nvme_io` C test guests (payload at CPL3) under
//! bhyve's `ahci` and `nvme` devices, checked from the host side: the
//! disk files byte for byte after the run (patterns, trimmed and
//! deallocated ranges zero and punched), the CD image's blocks against
//! the hashes the guest printed. The same guests run under QEMU's ICH9
//! AHCI and `nvme` devices when QEMU is present (the yardstick).

mod common;

use std::ops::Range;

use bhyve_testguests::{ahci_io_pattern, fnv1a, nvme_io_pattern, PASS_STATUS};
use common::disk::*;
use common::vm::*;
use common::*;

const SECTOR: u64 = 512;
const DISK_BYTES: usize = 16 << 20;
const CD_BYTES: usize = 2 << 20;

// ---- AHCI -------------------------------------------------------------------

/// `ahci_io`'s NCQ writes on a disk of `sectors` with 32 tags: (first
/// sector, sectors); the last tag writes the disk's last 8 sectors.
fn ncq_writes(sectors: u64) -> Vec<(u64, u64)> {
    (0..32u64)
        .map(|t| {
            if t < 31 {
                (0x800 + t * 0x40, 1 + (t * 5) % 40)
            } else {
                (sectors - 8, 8)
            }
        })
        .collect()
}
const TRIMS: [(u64, u64); 2] = [(0x2000, 0x800), (0x3000, 0x800)];

fn bytes_of((sector, n): (u64, u64)) -> Range<usize> {
    (sector * SECTOR) as usize..((sector + n) * SECTOR) as usize
}

/// The disk `ahci_io` leaves behind, trimmed ranges zero.
fn ahci_expected(before: &[u8]) -> Vec<u8> {
    let mut d = before.to_vec();
    for w in ncq_writes(before.len() as u64 / SECTOR) {
        for o in bytes_of(w) {
            d[o] = ahci_io_pattern(o as u64);
        }
    }
    for t in TRIMS {
        d[bytes_of(t)].fill(0);
    }
    d
}

/// The ATAPI lines: the hashes of the CD image's blocks.
fn atapi_reads(cd: &[u8], port: u32) -> Vec<String> {
    let blocks = (cd.len() / 2048) as u32;
    [(0u32, 8u32), (16, 1), (blocks - 4, 4)]
        .iter()
        .map(|&(lba, n)| {
            let r = lba as usize * 2048..(lba + n) as usize * 2048;
            format!(
                "ahci_io: port {port:#x} read lba {lba:#x} {n:#x} blocks fnv1a {:#x}",
                fnv1a(&cd[r])
            )
        })
        .collect()
}

#[test]
fn ahci_io_disk_and_cd() {
    let s = Scratch::new("ahci-io");
    let before = noise(DISK_BYTES, 0x1234_5678_9abc_def1);
    let cd = noise(CD_BYTES, 99);
    let disk = s.file("disk.img", &before);
    let iso = s.file("cd.iso", &cd);
    let dev = format!(
        "3,ahci,hd:{},ser=AHCISER1,model=BHYVE TEST DISK,cd:{},ser=CDSER2",
        disk.display(),
        iso.display()
    );
    let o = s.run_guest("ahci_io", &[&dev], None);
    let out = stdout(&o);
    let raw = format!("{out}{}", stderr(&o));
    assert_eq!(o.status.code(), Some(PASS_STATUS), "{raw}");

    let after = std::fs::read(&disk).unwrap();
    let expect = ahci_expected(&before);
    compare("ahci disk", &after, &expect, &before, &raw);
    assert_eq!(std::fs::read(&iso).unwrap(), cd, "the CD image changed");
    let f = std::fs::File::open(&disk).unwrap();
    for t in TRIMS {
        assert!(is_hole(&f, bytes_of(t)), "trim {t:?} is no hole\n{raw}");
    }

    let sectors = DISK_BYTES as u64 / SECTOR;
    let mut want: Vec<String> = [
        "function 0x3 0x0 id 8086:2821",
        "version 0x10300 ports 0x6 slots 0x20 ncq 1 pi 0x3",
        "port 0x0 disk sig 0x101",
        "port 0x0 model BHYVE TEST DISK",
        "port 0x0 serial AHCISER1",
        "port 0x0 firmware 001",
    ]
    .iter()
    .map(|l| format!("ahci_io: {l}"))
    .collect();
    let p0 = |l: String| format!("ahci_io: port 0x0 {l}");
    want.extend([
        p0(format!(
            "sectors {sectors:#x} lba48 1 ncq 1 depth 0x20 trim 1"
        )),
        p0(format!(
            "read {sectors:#x} sectors fnv1a {:#x}",
            fnv1a(&before)
        )),
        p0("ncq write 0x20 commands outstanding ok".into()),
        p0("flush ok".into()),
        p0("ncq read 0x20 commands outstanding, data as written".into()),
        p0("trim sectors 0x2000 0x3000 of 0x800 ok".into()),
        p0("flush ok".into()),
        p0("trimmed ranges read zero".into()),
        p0(format!(
            "ncq read back {sectors:#x} sectors fnv1a {:#x} as expected",
            fnv1a(&after)
        )),
        // No PRDT or an unmapped buffer is an aborted command; so is a
        // PRDT shorter than the transfer (an overflow, PxIS.OFS).
        p0("bad prdt empty: error tfd 0x441".into()),
        p0("bad prdt short: error tfd 0x441".into()),
        p0("bad prdt outside ram: error tfd 0x441".into()),
        p0("reads after bad prdts".into()),
    ]);
    let p1 = |l: &str| format!("ahci_io: port 0x1 {l}");
    want.extend([
        p1("atapi sig 0xeb140101"),
        p1("model BHYVE SATA DVD ROM"),
        p1("serial CDSER2"),
        p1("firmware 001"),
        p1("inquiry type 0x5 removable 1 vendor BHYVE product BHYVE DVD-ROM"),
        p1(&format!(
            "capacity {:#x} blocks of 0x800 bytes",
            CD_BYTES / 2048
        )),
    ]);
    want.extend(atapi_reads(&cd, 1));
    want.extend([
        p1("read past the end: sense key 0x5 asc 0x21"),
        "ahci_io: 0x2 ports passed".into(),
        "ahci_io: done".into(),
    ]);
    assert_eq!(own_lines(&out, "ahci_io"), want, "{raw}");
}

/// Two 8 MiB disks on one HBA (ports 0 and 1), bad PRDTs skipped: both
/// checked byte for byte.
#[test]
fn ahci_io_two_disks() {
    let s = Scratch::new("ahci-io-two");
    let befores = [noise(DISK_BYTES / 2, 5), noise(DISK_BYTES / 2, 6)];
    let disks = [s.file("a.img", &befores[0]), s.file("b.img", &befores[1])];
    let dev = format!("4,ahci,hd:{},hd:{}", disks[0].display(), disks[1].display());
    let o = s.run_guest("ahci_io", &[&dev], Some("badprdt=0"));
    let out = stdout(&o);
    let raw = format!("{out}{}", stderr(&o));
    assert_eq!(o.status.code(), Some(PASS_STATUS), "{raw}");
    for (disk, before) in disks.iter().zip(&befores) {
        let after = std::fs::read(disk).unwrap();
        compare("ahci disk", &after, &ahci_expected(before), before, &raw);
    }
    let l = own_lines(&out, "ahci_io");
    assert_eq!(l[0], "ahci_io: function 0x4 0x0 id 8086:2821", "{raw}");
    for port in 0..2 {
        let want = format!("ahci_io: port {port:#x} ncq write 0x20 commands outstanding ok");
        assert!(l.contains(&want.as_str()), "{want}\n{raw}");
    }
    assert!(l.contains(&"ahci_io: 0x2 ports passed"), "{raw}");
    assert!(!out.contains("bad prdt"), "{raw}");
}

/// The same guest under QEMU's ICH9 AHCI leaves the same disk and reads
/// the same CD blocks. (QEMU 7.2 aborts on a READ DMA with an empty
/// PRDT, `ide_dma_cb: Assertion prep_size >= 0`: its run skips the bad
/// PRDT cases.)
#[test]
fn ahci_io_under_qemu() {
    if !qemu_available() {
        return;
    }
    let s = Scratch::new("ahci-io-qemu");
    let before = noise(DISK_BYTES, 17);
    let cd = noise(CD_BYTES, 18);
    let disk = s.file("disk.img", &before);
    let iso = s.file("cd.iso", &cd);
    let guest = s.guest("ahci_io");
    let hd = format!(
        "if=none,id=d,file={},format=raw,discard=unmap",
        disk.display()
    );
    let cdrom = format!("if=none,id=c,file={},format=raw,media=cdrom", iso.display());
    let (st, out) = run_qemu(
        &guest,
        "badprdt=0",
        &[
            "-drive",
            &hd,
            "-device",
            "ide-hd,bus=ide.0,drive=d",
            "-drive",
            &cdrom,
            "-device",
            "ide-cd,bus=ide.1,drive=c",
        ],
    );
    assert_eq!(st, Some(PASS_STATUS), "{out}");
    let after = std::fs::read(&disk).unwrap();
    compare(
        "qemu ahci disk",
        &after,
        &ahci_expected(&before),
        &before,
        &out,
    );
    let l = own_lines(&out, "ahci_io");
    for want in atapi_reads(&cd, 1) {
        assert!(l.contains(&want.as_str()), "{want}\n{out}");
    }
    assert!(
        l.contains(&"ahci_io: port 0x0 ncq write 0x20 commands outstanding ok"),
        "{out}"
    );
    assert!(
        l.contains(&"ahci_io: port 0x0 trimmed ranges read zero"),
        "{out}"
    );
    assert_eq!(l.last(), Some(&"ahci_io: done"), "{out}");
}

// ---- NVMe -------------------------------------------------------------------

/// `nvme_io`'s pattern writes (512-byte LBAs): (byte offset, bytes).
const NVME_WRITES: [(usize, usize); 4] = [
    (0x10_0000, 0x800),
    (0x14_0000, 0x1000),
    (0x18_0000, 0x10000),
    (0x1c_0000, 0x20000),
];
const DEALLOC: Range<usize> = 0x80_0000..0x90_0000;

fn nvme_expected(before: &[u8], lbasz: usize) -> Vec<u8> {
    let mut d = before.to_vec();
    let last = (before.len() - lbasz, lbasz);
    // Larger LBAs: at least one LBA, and PRP1+PRP2 without the offset
    // takes two whole pages.
    let writes = NVME_WRITES
        .iter()
        .enumerate()
        .map(|(k, &(at, len))| match (k, lbasz) {
            (_, 512) => (at, len),
            (1, _) => (at, 0x2000),
            _ => (at, len.max(lbasz)),
        });
    for (at, len) in writes.chain([last]) {
        for (o, b) in d[at..at + len].iter_mut().enumerate() {
            *b = nvme_io_pattern((at + o) as u64);
        }
    }
    d[DEALLOC].fill(0);
    d
}

fn nvme_run(tag: &str, opts: &str, cmdline: &str) -> (String, String, Vec<u8>, Vec<u8>) {
    let s = Scratch::new(tag);
    let before = noise(DISK_BYTES, 0x77 + opts.len() as u64);
    let disk = s.file("nvme.img", &before);
    let dev = format!("3,nvme,{}{opts}", disk.display());
    let o = s.run_guest("nvme_io", &[&dev], Some(cmdline));
    let out = stdout(&o);
    let raw = format!("{out}{}", stderr(&o));
    assert_eq!(o.status.code(), Some(PASS_STATUS), "{raw}");
    let after = std::fs::read(&disk).unwrap();
    let f = std::fs::File::open(&disk).unwrap();
    assert!(is_hole(&f, DEALLOC), "deallocated range is no hole\n{raw}");
    (out, raw, before, after)
}

#[test]
fn nvme_io_four_queues() {
    let (out, raw, before, after) = nvme_run("nvme-io", ",ser=NVMESER7", "queues=4");
    compare("nvme", &after, &nvme_expected(&before, 512), &before, &raw);
    let blocks = DISK_BYTES / 512;
    let want: Vec<String> = [
        "function 0x3 0x0 id fb5d:a0a".to_string(),
        "version 0x10400 mqes 0x800 dstrd 0x0 css 0x1 mpsmin 0x0".into(),
        "enabled".into(),
        "model bhyve-NVMe".into(),
        "serial NVMESER7".into(),
        "firmware 1.0".into(),
        "vid 0xfb5d nn 0x1 oncs 0xc vwc 0x1 mdts 0x9 sqes 0x66 cqes 0x44".into(),
        format!("namespace 1 size {blocks:#x} lba format 0x0 of 0x1 data 0x200 meta 0x0"),
        "queues requested 0x4 granted sq 0x4 cq 0x4".into(),
        "0x4 queue pairs of 0x40 entries".into(),
        format!("read {blocks:#x} blocks fnv1a {:#x}", fnv1a(&before)),
        "write prp1 lba 0x800 0x4 blocks 0x1 pages queue 0x1 ok".into(),
        "write prp1+prp2 lba 0xa00 0x8 blocks 0x2 pages queue 0x2 ok".into(),
        "write prp list chained lba 0xc00 0x80 blocks 0x11 pages queue 0x3 ok".into(),
        "write prp list lba 0xe00 0x100 blocks 0x20 pages queue 0x4 ok".into(),
        format!(
            "write last lba {:#x} 0x1 blocks 0x1 pages queue 0x1 ok",
            blocks - 1
        ),
        "flush ok on every queue".into(),
        "read back every shape as written".into(),
        "full queue 0x1: 0x3f commands outstanding 0x3 times, cq phase wrapped 0x3 times".into(),
        "deallocate lba 0x4000 0x800 blocks ok".into(),
        "deallocated range reads zero".into(),
        format!(
            "read back {blocks:#x} blocks fnv1a {:#x} as expected",
            fnv1a(&after)
        ),
        // Invalid Field in Command, as bhyve answers an unmappable PRP.
        "prp1 outside ram: status 0x4".into(),
        "prp list entry outside ram: status 0x4".into(),
        "prp list outside ram: status 0x4".into(),
        "reads after bad prps".into(),
        "deleted 0x4 queue pairs".into(),
        "shutdown complete".into(),
        "done".into(),
    ]
    .into_iter()
    .map(|l| format!("nvme_io: {l}"))
    .collect();
    assert_eq!(own_lines(&out, "nvme_io"), want, "{raw}");
}

/// 4 KiB sectors, more queues than granted, small queues filled (7
/// outstanding), every pair still used.
#[test]
fn nvme_io_small_queues_4k_sectors() {
    let (out, raw, before, after) = nvme_run(
        "nvme-io-small",
        ",maxq=2,qsz=8,sectsz=4096",
        "queues=6 qsz=64",
    );
    compare(
        "nvme 4k",
        &after,
        &nvme_expected(&before, 4096),
        &before,
        &raw,
    );
    let l = own_lines(&out, "nvme_io");
    for want in [
        "nvme_io: namespace 1 size 0x1000 lba format 0x0 of 0x1 data 0x1000 meta 0x0",
        "nvme_io: queues requested 0x6 granted sq 0x2 cq 0x2",
        "nvme_io: 0x2 queue pairs of 0x8 entries",
        "nvme_io: write prp1+prp2 lba 0x140 0x2 blocks 0x2 pages queue 0x2 ok",
        "nvme_io: write prp list chained lba 0x180 0x10 blocks 0x10 pages queue 0x1 ok",
        "nvme_io: full queue 0x1: 0x7 commands outstanding 0x3 times, cq phase wrapped 0x3 times",
        "nvme_io: deleted 0x2 queue pairs",
        "nvme_io: done",
    ] {
        assert!(l.contains(&want), "{want}\n{raw}");
    }
}

/// The same guest under QEMU's nvme leaves the same namespace. (QEMU
/// completes reads to a PRP outside RAM successfully: the DMA is dropped.)
#[test]
fn nvme_io_under_qemu() {
    if !qemu_available() {
        return;
    }
    let s = Scratch::new("nvme-io-qemu");
    let before = noise(DISK_BYTES, 23);
    let disk = s.file("nvme.img", &before);
    let guest = s.guest("nvme_io");
    let drive = format!(
        "if=none,id=n,file={},format=raw,discard=unmap",
        disk.display()
    );
    let (st, out) = run_qemu(
        &guest,
        "queues=4",
        &["-drive", &drive, "-device", "nvme,serial=QSER,drive=n"],
    );
    assert_eq!(st, Some(PASS_STATUS), "{out}");
    let after = std::fs::read(&disk).unwrap();
    compare(
        "qemu nvme",
        &after,
        &nvme_expected(&before, 512),
        &before,
        &out,
    );
    let l = own_lines(&out, "nvme_io");
    for want in [
        "nvme_io: serial QSER",
        "nvme_io: 0x4 queue pairs of 0x40 entries",
        "nvme_io: read back every shape as written",
        "nvme_io: deallocated range reads zero",
        "nvme_io: reads after bad prps",
        "nvme_io: done",
    ] {
        assert!(l.contains(&want), "{want}\n{out}");
    }
}
