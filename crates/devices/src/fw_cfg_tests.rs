use std::sync::Mutex;

use vm_memory::GuestMemoryMmap;

use super::*;
use crate::bus::Bus;

const RAM: u64 = 1 << 20;

fn mem() -> Arc<GuestMemoryMmap> {
    Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap())
}

/// The device on a port bus, as the vmm registers it.
struct Rig {
    bus: Bus,
    mem: Arc<GuestMemoryMmap>,
    dev: Arc<Mutex<FwCfg>>,
}

impl Rig {
    fn new(b: FwCfgBuilder) -> Self {
        let mem = mem();
        let dev = Arc::new(Mutex::new(b.build(mem.clone())));
        let bus = Bus::new();
        for (base, len) in FwCfg::port_ranges() {
            bus.insert(base, len, dev.clone()).unwrap();
        }
        Rig { bus, mem, dev }
    }

    fn select(&self, key: u16) {
        // outw: the value's little-endian bytes.
        assert!(self
            .bus
            .write(u64::from(FW_CFG_PORT_SEL), &key.to_le_bytes()));
    }

    fn read(&self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                let mut b = [0xffu8];
                assert!(self.bus.read(u64::from(FW_CFG_PORT_DATA), &mut b));
                b[0]
            })
            .collect()
    }

    /// Places a descriptor at `at` and starts it the way SeaBIOS does:
    /// two `outl`s of big-endian halves.
    fn dma(&self, at: u64, control: u32, length: u32, addr: u64) -> u32 {
        let mut d = Vec::new();
        d.extend_from_slice(&control.to_be_bytes());
        d.extend_from_slice(&length.to_be_bytes());
        d.extend_from_slice(&addr.to_be_bytes());
        self.mem.write_slice(&d, GuestAddress(at)).unwrap();
        self.kick(at);
        let mut c = [0u8; 4];
        self.mem.read_slice(&mut c, GuestAddress(at)).unwrap();
        u32::from_be_bytes(c)
    }

    fn kick(&self, at: u64) {
        let hi = ((at >> 32) as u32).to_be_bytes();
        let lo = (at as u32).to_be_bytes();
        let port = u64::from(FW_CFG_PORT_DMA);
        assert!(self.bus.write(port, &hi));
        assert!(self.bus.write(port + 4, &lo));
    }

    fn guest(&self, at: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }
}

fn sample() -> FwCfgBuilder {
    FwCfgBuilder::new()
        .item(FW_CFG_NB_CPUS, 2u16.to_le_bytes().to_vec())
        .unwrap()
        .file(
            "etc/e820",
            e820_file(&[(0, 0x9fc00, 1), (0x100000, 0x7f00000, 1)]),
        )
        .unwrap()
        .file("bootorder", bootorder_file(&["/pci@i0cf8/scsi@4".into()]))
        .unwrap()
        .file("etc/sercon-port", 0x3f8u16.to_le_bytes().to_vec())
        .unwrap()
}

/// The directory as a guest parses it: (name, key, size).
fn parse_dir(d: &[u8]) -> Vec<(String, u16, u32)> {
    let count = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
    assert_eq!(d.len(), 4 + count * 64);
    d[4..]
        .chunks_exact(64)
        .map(|e| {
            let name = &e[8..];
            let end = name.iter().position(|&b| b == 0).unwrap();
            (
                String::from_utf8(name[..end].to_vec()).unwrap(),
                u16::from_be_bytes([e[4], e[5]]),
                u32::from_be_bytes(e[..4].try_into().unwrap()),
            )
        })
        .collect()
}

#[test]
fn signature_id_and_numbered_items_through_the_ports() {
    let r = Rig::new(sample());
    r.select(FW_CFG_SIGNATURE);
    assert_eq!(r.read(4), b"QEMU");
    r.select(FW_CFG_ID);
    assert_eq!(r.read(4), [3, 0, 0, 0]);
    r.select(FW_CFG_NB_CPUS);
    assert_eq!(r.read(2), [2, 0]);
    // Selecting again restarts the item.
    r.select(FW_CFG_SIGNATURE);
    assert_eq!(r.read(2), b"QE");
    r.select(FW_CFG_SIGNATURE);
    assert_eq!(r.read(1), b"Q");
    // The DMA register reads as "QEMU CFG" (big-endian).
    let mut sig = [0u8; 4];
    assert!(r.bus.read(u64::from(FW_CFG_PORT_DMA), &mut sig));
    assert_eq!(&sig, b"QEMU");
    assert!(r.bus.read(u64::from(FW_CFG_PORT_DMA) + 4, &mut sig));
    assert_eq!(&sig, b" CFG");
}

#[test]
fn file_dir_is_sorted_and_selects_files() {
    let r = Rig::new(sample());
    r.select(FW_CFG_FILE_DIR);
    let mut d = r.read(4);
    let count = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
    d.extend(r.read(count * 64));
    let dir = parse_dir(&d);
    assert_eq!(
        dir,
        vec![
            ("bootorder".to_string(), 0x20, 18),
            ("etc/e820".to_string(), 0x21, 40),
            ("etc/sercon-port".to_string(), 0x22, 2),
        ]
    );
    assert_eq!(r.dev.lock().unwrap().file_key("etc/e820"), Some((0x21, 40)));
    assert_eq!(r.dev.lock().unwrap().file_key("etc/e82"), None);
    r.select(0x22);
    assert_eq!(r.read(2), [0xf8, 0x03]);
    r.select(0x20);
    assert_eq!(r.read(18), b"/pci@i0cf8/scsi@4\0");
    r.select(0x21);
    let e820 = r.read(40);
    assert_eq!(&e820[20..28], &0x100000u64.to_le_bytes());
    assert_eq!(&e820[28..36], &0x7f00000u64.to_le_bytes());
    assert_eq!(&e820[36..40], &1u32.to_le_bytes());
}

#[test]
fn reads_past_the_end_and_unknown_selectors_are_zero() {
    let r = Rig::new(sample());
    r.select(FW_CFG_SIGNATURE);
    assert_eq!(r.read(6), b"QEMU\0\0");
    for key in [0x0004, 0x0023, 0x3fff, 0x8000, 0xffff] {
        r.select(key);
        assert_eq!(r.read(3), [0, 0, 0], "key {key:#x}");
    }
    // The write-channel bit is ignored for lookups, as in QEMU.
    r.select(FW_CFG_SIGNATURE | 0x4000);
    assert_eq!(r.read(4), b"QEMU");
    // Byte writes (the old data channel) and wide reads change nothing.
    r.select(FW_CFG_SIGNATURE);
    assert!(r.bus.write(u64::from(FW_CFG_PORT_DATA), &[0x19]));
    let mut w = [0xffu8; 2];
    assert!(r.bus.read(u64::from(FW_CFG_PORT_SEL), &mut w));
    assert_eq!(w, [0, 0]);
    assert_eq!(r.read(4), b"QEMU");
    // Accesses that do not fit the registers are not claimed.
    assert!(!r.bus.write(u64::from(FW_CFG_PORT_SEL), &[0; 4]));
}

#[test]
fn dma_read_select_and_skip() {
    let r = Rig::new(sample());
    let desc = 0x1000;
    let ctl = (u32::from(FW_CFG_FILE_DIR) << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ;
    assert_eq!(r.dma(desc, ctl, 4 + 3 * 64, 0x2000), 0);
    let dir = parse_dir(&r.guest(0x2000, 4 + 3 * 64));
    assert_eq!(dir[1].0, "etc/e820");
    // Skip 20 bytes of etc/e820, then read the second entry.
    let ctl = (0x21 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_SKIP;
    assert_eq!(r.dma(desc, ctl, 20, 0), 0);
    assert_eq!(r.dma(desc, FW_CFG_DMA_CTL_READ, 8, 0x3000), 0);
    assert_eq!(r.guest(0x3000, 8), 0x100000u64.to_le_bytes());
    // Data-port reads continue where the DMA stopped.
    assert_eq!(r.read(8), 0x7f00000u64.to_le_bytes());
    // Reading past the end fills zeros (and still succeeds).
    r.mem
        .write_slice(&[0xaa; 16], GuestAddress(0x4000))
        .unwrap();
    assert_eq!(r.dma(desc, FW_CFG_DMA_CTL_READ, 16, 0x4000), 0);
    assert_eq!(
        r.guest(0x4000, 16),
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    // No operation bit: nothing moves, still success.
    assert_eq!(r.dma(desc, 0, 16, 0x4000), 0);
    // One 64-bit write of the address also starts a DMA (MMIO style).
    r.mem
        .write_slice(
            &[0, 0, 0, 0x0a, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0x51, 0],
            GuestAddress(0x5000),
        )
        .unwrap();
    assert!(r
        .bus
        .write(u64::from(FW_CFG_PORT_DMA), &0x5000u64.to_be_bytes()));
    assert_eq!(r.guest(0x5000, 4), [0; 4]);
    assert_eq!(r.guest(0x5100, 4), b"QEMU");
}

#[test]
fn dma_signature_lands_in_memory() {
    let r = Rig::new(sample());
    let ctl = FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ;
    assert_eq!(r.dma(0x800, ctl, 4, 0x900), 0);
    assert_eq!(r.guest(0x900, 4), b"QEMU");
    // SeaBIOS writes only the low half: after a DMA whose descriptor had
    // a high half, the high half starts at zero again.
    r.kick(1 << 32);
    let d = [[0, 0, 0, 0x0a], [0, 0, 0, 2], [0; 4], [0, 0, 0x0a, 0]].concat();
    r.mem.write_slice(&d, GuestAddress(0x700)).unwrap();
    let port = u64::from(FW_CFG_PORT_DMA);
    assert!(r.bus.write(port + 4, &0x700u32.to_be_bytes()));
    assert_eq!(r.guest(0x700, 4), [0; 4]);
    assert_eq!(r.guest(0xa00, 2), b"QE");
}

#[test]
fn hostile_dma_sets_error_and_never_panics() {
    let r = Rig::new(sample());
    let desc = 0x1000;
    let sel = (0x21 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ;
    // Destination outside RAM, straddling its end, and wrapping around.
    for addr in [RAM, RAM - 8, u64::MAX - 3, 1 << 40] {
        assert_eq!(
            r.dma(desc, sel, 40, addr),
            FW_CFG_DMA_CTL_ERROR,
            "{addr:#x}"
        );
    }
    // A 4 GiB read: bounded by guest RAM, ends in ERROR, no huge buffer.
    assert_eq!(r.dma(desc, sel, u32::MAX, 0), FW_CFG_DMA_CTL_ERROR);
    // Writes to items are refused.
    let w = (0x21 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE;
    assert_eq!(r.dma(desc, w, 4, 0x2000), FW_CFG_DMA_CTL_ERROR);
    // A descriptor outside RAM (or wrapping) is ignored without a panic.
    r.kick(RAM + 0x1000);
    r.kick(u64::MAX - 7);
    let port = u64::from(FW_CFG_PORT_DMA);
    assert!(r.bus.write(port, &u64::MAX.to_be_bytes()));
    // A descriptor straddling the end of RAM gets ERROR in what is RAM.
    let at = RAM - 8;
    r.mem.write_slice(&[0xff; 8], GuestAddress(at)).unwrap();
    r.kick(at);
    assert_eq!(r.guest(at, 4), FW_CFG_DMA_CTL_ERROR.to_be_bytes());
    // Odd-sized register writes are ignored.
    assert!(r.bus.write(port + 2, &[1, 2]));
    assert!(r.bus.write(port + 1, &[1]));
    // The device still works afterwards.
    r.select(FW_CFG_SIGNATURE);
    assert_eq!(r.read(4), b"QEMU");
}

#[test]
fn builder_rejects_bad_input() {
    let b = || FwCfgBuilder::new();
    assert_eq!(
        b().file("opt/a", vec![])
            .unwrap()
            .file("opt/a", vec![1])
            .unwrap_err(),
        FwCfgError::DuplicateFile("opt/a".into())
    );
    let long = "x".repeat(56);
    assert_eq!(
        b().file(&long, vec![]).unwrap_err(),
        FwCfgError::BadName(long.clone())
    );
    assert!(b().file(&long[..55], vec![]).is_ok());
    assert!(b().file("", vec![]).is_err());
    assert!(b().file("a\0b", vec![]).is_err());
    for key in [FW_CFG_SIGNATURE, FW_CFG_ID, FW_CFG_FILE_DIR] {
        assert_eq!(
            b().item(key, vec![]).unwrap_err(),
            FwCfgError::DuplicateItem(key)
        );
    }
    assert_eq!(
        b().item(5, vec![]).unwrap().item(5, vec![]).unwrap_err(),
        FwCfgError::DuplicateItem(5)
    );
    for key in [0x20, 0x3fff, 0x4005] {
        assert_eq!(b().item(key, vec![]).unwrap_err(), FwCfgError::BadKey(key));
    }
    // Architecture-local items are fine.
    let r = Rig::new(b().item(FW_CFG_ARCH_LOCAL | 3, vec![7]).unwrap());
    r.select(0x8003);
    assert_eq!(r.read(1), [7]);
    let e = FwCfgError::DuplicateFile("opt/a".into());
    assert_eq!(e.to_string(), "fw_cfg file \"opt/a\" is defined twice");
}

#[test]
fn file_count_is_bounded() {
    let mut b = FwCfgBuilder::new();
    for i in 0..FW_CFG_MAX_FILES {
        b = b.file(&format!("f{i:05}"), vec![]).unwrap();
    }
    assert_eq!(
        b.clone().file("one-more", vec![]).unwrap_err(),
        FwCfgError::TooManyFiles
    );
    let r = Rig::new(b);
    let last = format!("f{:05}", FW_CFG_MAX_FILES - 1);
    assert_eq!(r.dev.lock().unwrap().file_key(&last), Some((0x3fff, 0)));
}

#[test]
fn helper_files() {
    assert_eq!(
        e820_file(&[(0x1000, 0x2000, 2)]),
        [0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]
    );
    assert_eq!(
        bootorder_file(&["/a@1".into(), "/b@2".into()]),
        b"/a@1\n/b@2\0"
    );
    assert!(bootorder_file(&[]).is_empty());
}

/// A fake bzImage: `setup_sects` at 0x1f1, "HdrS" at 0x202.
fn bzimage(setup_sects: u8, len: usize) -> Vec<u8> {
    let mut k: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    k[0x1f1] = setup_sects;
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k
}

fn items(v: &[(u16, Vec<u8>)], key: u16) -> Option<&[u8]> {
    v.iter().find(|(k, _)| *k == key).map(|(_, d)| d.as_slice())
}

#[test]
fn kernel_items_split_a_bzimage_as_qemu_does() {
    let k = bzimage(3, 10_000);
    let v = kernel_items(&k, Some(b"INITRD"), "console=ttyS0");
    assert_eq!(
        items(&v, FW_CFG_SETUP_SIZE),
        Some(&2048u32.to_le_bytes()[..])
    );
    assert_eq!(items(&v, FW_CFG_SETUP_DATA), Some(&k[..2048]));
    assert_eq!(
        items(&v, FW_CFG_KERNEL_SIZE),
        Some(&7952u32.to_le_bytes()[..])
    );
    assert_eq!(items(&v, FW_CFG_KERNEL_DATA), Some(&k[2048..]));
    assert_eq!(
        items(&v, FW_CFG_CMDLINE_SIZE),
        Some(&14u32.to_le_bytes()[..])
    );
    assert_eq!(
        items(&v, FW_CFG_CMDLINE_DATA),
        Some(&b"console=ttyS0\0"[..])
    );
    assert_eq!(items(&v, FW_CFG_INITRD_SIZE), Some(&6u32.to_le_bytes()[..]));
    assert_eq!(items(&v, FW_CFG_INITRD_DATA), Some(&b"INITRD"[..]));
    // setup_sects 0 means 4; a setup longer than the file is the file.
    let v = kernel_items(&bzimage(0, 4000), None, "");
    assert_eq!(
        items(&v, FW_CFG_SETUP_SIZE),
        Some(&2560u32.to_le_bytes()[..])
    );
    assert_eq!(items(&v, FW_CFG_INITRD_SIZE), None);
    assert_eq!(items(&v, FW_CFG_CMDLINE_DATA), Some(&b"\0"[..]));
    let v = kernel_items(&bzimage(200, 1000), None, "");
    assert_eq!(items(&v, FW_CFG_SETUP_DATA).map(<[u8]>::len), Some(1000));
    assert_eq!(items(&v, FW_CFG_KERNEL_SIZE), Some(&[0u8; 4][..]));
}

#[test]
fn kernel_items_serve_an_efi_application_whole() {
    // A PE image (GRUB's EFI build): no "HdrS", no setup.
    let mut pe = vec![0u8; 600];
    pe[..2].copy_from_slice(b"MZ");
    for k in [&pe[..], &pe[..10]] {
        let v = kernel_items(k, None, "x");
        assert_eq!(items(&v, FW_CFG_SETUP_SIZE), Some(&[0u8; 4][..]));
        assert_eq!(items(&v, FW_CFG_SETUP_DATA), Some(&[][..]));
        assert_eq!(items(&v, FW_CFG_KERNEL_DATA), Some(k));
    }
    // Through the device: the size, then the bytes, as OVMF reads them.
    let mut b = FwCfgBuilder::new();
    for (key, data) in kernel_items(&pe, None, "x") {
        b = b.item(key, data).unwrap();
    }
    let r = Rig::new(b);
    r.select(FW_CFG_KERNEL_SIZE);
    assert_eq!(r.read(4), 600u32.to_le_bytes());
    r.select(FW_CFG_KERNEL_DATA);
    assert_eq!(r.read(2), b"MZ");
}
