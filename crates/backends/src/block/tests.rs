//! The backend against real temporary files: options, scatter-gather
//! through guest memory, O_DIRECT bouncing, flush/discard/write-zeroes,
//! and many requests in flight.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use bhyve_devices::blockif::{BlockBuffers, BlockIo, BlockOp, BlockRequest};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;

struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str, len: u64) -> Tmp {
        // The system temporary directory: a real file system here, where
        // O_DIRECT and hole punching work (tmpfs would not test them).
        let p = std::env::temp_dir().join(format!("bhyve-blk-{}-{name}", std::process::id()));
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(len).unwrap();
        Tmp(p)
    }
    fn path(&self) -> String {
        self.0.to_str().unwrap().to_owned()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn opts(t: &Tmp) -> BlockOptions {
    BlockOptions {
        path: t.path(),
        ..Default::default()
    }
}

/// Two regions, so segments can straddle a boundary.
fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20), (GuestAddress(1 << 20), 1 << 20)])
        .unwrap()
}

fn run(
    b: &Blockif,
    op: BlockOp,
    offset: u64,
    len: u64,
    buffers: BlockBuffers,
) -> std::io::Result<u64> {
    run_fua(b, op, offset, len, buffers, false)
}

fn run_fua(
    b: &Blockif,
    op: BlockOp,
    offset: u64,
    len: u64,
    buffers: BlockBuffers,
    fua: bool,
) -> std::io::Result<u64> {
    let (tx, rx) = mpsc::channel();
    b.submit(
        BlockRequest {
            op,
            offset,
            len,
            buffers,
            fua,
        },
        Box::new(move |_, r| tx.send(r).unwrap()),
    );
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

fn guest(m: &GuestMemoryMmap, segs: &[(u64, u64)]) -> BlockBuffers {
    BlockBuffers::Guest {
        mem: m.clone(),
        segs: segs.iter().map(|&(a, l)| (GuestAddress(a), l)).collect(),
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn sectorsize_parsing_and_validation() {
    assert_eq!(parse_sectorsize("512").unwrap(), (512, 512));
    assert_eq!(parse_sectorsize("512/4096").unwrap(), (512, 4096));
    for bad in ["", "abc", "512/", "/512", "512x", "-512", "512/4k"] {
        let e = parse_sectorsize(bad).unwrap_err();
        assert_eq!(e.to_string(), format!("Invalid sector size \"{bad}\""));
    }
    let t = Tmp::new("ss", 1 << 16);
    for (ss, ps) in [(1000, 1000), (256, 256), (4096, 512), (512, 1000)] {
        let o = BlockOptions {
            sector_size: Some((ss, ps)),
            ..opts(&t)
        };
        let e = Blockif::open(&o, "t").err().unwrap();
        assert_eq!(e.to_string(), format!("Invalid sector size {ss}/{ps}"));
    }
    let o = BlockOptions {
        sector_size: Some((4096, 16384)),
        ..opts(&t)
    };
    let i = Blockif::open(&o, "t").unwrap().info();
    assert_eq!(
        (i.sector_size, i.physical_sector_size, i.size),
        (4096, 16384, 1 << 16)
    );
    assert!(!i.read_only && i.can_delete);
}

#[test]
fn open_errors_and_modes() {
    let e = Blockif::open(
        &BlockOptions {
            path: "/nonexistent/disk.img".into(),
            ..Default::default()
        },
        "t",
    )
    .err()
    .unwrap();
    assert!(
        e.to_string()
            .starts_with("Could not open backing file: /nonexistent/disk.img"),
        "{e}"
    );
    let e = Blockif::open(
        &BlockOptions {
            path: "/dev/null".into(),
            ..Default::default()
        },
        "t",
    )
    .err()
    .unwrap();
    assert!(matches!(e, BlockError::NotADisk(_)), "{e}");
    let t = Tmp::new("ro", 4096);
    let b = Blockif::open(
        &BlockOptions {
            read_only: true,
            ..opts(&t)
        },
        "t",
    )
    .unwrap();
    assert!(b.info().read_only && !b.info().can_delete);
    let r = run(&b, BlockOp::Write, 0, 0, BlockBuffers::Host(vec![1; 512]));
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EROFS));
    let b = Blockif::open(
        &BlockOptions {
            nodelete: true,
            ..opts(&t)
        },
        "t",
    )
    .unwrap();
    let r = run(&b, BlockOp::Discard, 0, 512, BlockBuffers::None);
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EOPNOTSUPP));
}

#[test]
fn serial_is_bhyves_md5_of_the_path() {
    // python3: hashlib.md5(b'/images/disk.img').digest()[:6]
    assert_eq!(default_serial("/images/disk.img"), "BHYVE-D5EC-1A86-9C8F");
    assert_eq!(default_serial("x").len(), 20);
}

fn scatter_gather(nocache: bool) {
    let t = Tmp::new(if nocache { "sg-direct" } else { "sg" }, 1 << 20);
    let b = Blockif::open(
        &BlockOptions {
            nocache,
            ..opts(&t)
        },
        "t",
    )
    .unwrap();
    let m = mem();
    let data = pattern(12288, 7);
    // Aligned pages, one of them straddling the two memory regions.
    m.write_slice(&data[..4096], GuestAddress(0x1000)).unwrap();
    m.write_slice(&data[4096..], GuestAddress((1 << 20) - 4096))
        .unwrap();
    let segs = [(0x1000, 4096), ((1 << 20) - 4096, 8192)];
    assert_eq!(
        run(&b, BlockOp::Write, 8192, 0, guest(&m, &segs)).unwrap(),
        12288
    );
    let file = std::fs::read(&t.0).unwrap();
    assert_eq!(&file[8192..8192 + 12288], &data[..]);
    // Unaligned memory and a 512-byte (not 4 KiB) aligned offset, and an
    // odd-sized middle segment: bounced under O_DIRECT.
    let odd = pattern(1536, 99);
    m.write_slice(&odd[..700], GuestAddress(0x20003)).unwrap();
    m.write_slice(&odd[700..], GuestAddress(0x30001)).unwrap();
    let segs = [(0x20003, 700), (0x30001, 836)];
    assert_eq!(
        run(&b, BlockOp::Write, 512, 0, guest(&m, &segs)).unwrap(),
        1536
    );
    // Unaligned file offset too (not something virtio sends, but AHCI's
    // callers and a hostile front end can): read-modify-write.
    assert_eq!(
        run(
            &b,
            BlockOp::Write,
            100_001,
            0,
            BlockBuffers::Host(odd.clone())
        )
        .unwrap(),
        1536
    );
    let file = std::fs::read(&t.0).unwrap();
    assert_eq!(&file[512..2048], &odd[..]);
    assert_eq!(&file[100_001..100_001 + 1536], &odd[..]);
    assert!(file[100_001 - 100..100_001].iter().all(|&x| x == 0));
    assert_eq!(&file[8192..8192 + 12288], &data[..], "neighbours intact");
    // Read back into odd guest buffers.
    let segs = [(0x50005, 1000), (0x60000, 536)];
    assert_eq!(
        run(&b, BlockOp::Read, 512, 0, guest(&m, &segs)).unwrap(),
        1536
    );
    let mut back = vec![0u8; 1536];
    m.read_slice(&mut back[..1000], GuestAddress(0x50005))
        .unwrap();
    m.read_slice(&mut back[1000..], GuestAddress(0x60000))
        .unwrap();
    assert_eq!(back, odd);
    assert_eq!(
        run(&b, BlockOp::Flush, 0, 0, BlockBuffers::None).unwrap(),
        0
    );
}

#[test]
fn scatter_gather_buffered() {
    scatter_gather(false);
}

#[test]
fn scatter_gather_nocache_bounces_unaligned_buffers() {
    scatter_gather(true);
}

#[test]
fn large_unaligned_direct_request_is_chunked() {
    let t = Tmp::new("big", 4 << 20);
    let b = Blockif::open(
        &BlockOptions {
            nocache: true,
            ..opts(&t)
        },
        "t",
    )
    .unwrap();
    let data = pattern(3 << 20, 3);
    let mut host = data.clone();
    host.push(0); // odd length: forces the bounce path
    assert_eq!(
        run(&b, BlockOp::Write, 4096, 0, BlockBuffers::Host(host)).unwrap(),
        (3 << 20) + 1
    );
    let file = std::fs::read(&t.0).unwrap();
    assert!(file[4096..4096 + (3 << 20)] == data[..]);
}

#[test]
fn guest_segments_outside_ram_fail() {
    let t = Tmp::new("efault", 1 << 16);
    let b = Blockif::open(&opts(&t), "t").unwrap();
    let m = mem();
    for segs in [
        vec![(4 << 20, 512)],
        vec![((2 << 20) - 256, 512)],
        vec![(0, u64::MAX)],
    ] {
        let r = run(&b, BlockOp::Read, 0, 0, guest(&m, &segs));
        assert!(r.is_err(), "{segs:?}");
    }
    // Offsets past what a file can hold.
    let r = run(
        &b,
        BlockOp::Write,
        u64::MAX - 10,
        0,
        BlockBuffers::Host(vec![0; 512]),
    );
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EINVAL));
}

#[test]
fn discard_punches_a_hole_and_write_zeroes_zeroes() {
    let t = Tmp::new("discard", 4 << 20);
    let b = Blockif::open(&opts(&t), "t").unwrap();
    let data = pattern(4 << 20, 1);
    run(&b, BlockOp::Write, 0, 0, BlockBuffers::Host(data.clone())).unwrap();
    run(&b, BlockOp::Flush, 0, 0, BlockBuffers::None).unwrap();
    let before = std::fs::metadata(&t.0).unwrap().blocks();
    assert_eq!(
        run(&b, BlockOp::Discard, 1 << 20, 2 << 20, BlockBuffers::None).unwrap(),
        2 << 20
    );
    let md = std::fs::metadata(&t.0).unwrap();
    assert_eq!(md.len(), 4 << 20, "size kept");
    assert!(
        md.blocks() + (2 << 20) / 512 <= before,
        "{} -> {}",
        before,
        md.blocks()
    );
    let file = std::fs::read(&t.0).unwrap();
    assert!(file[1 << 20..3 << 20].iter().all(|&x| x == 0));
    assert_eq!(&file[..1 << 20], &data[..1 << 20]);
    assert_eq!(&file[3 << 20..], &data[3 << 20..]);
    for unmap in [false, true] {
        let off = if unmap { 3 << 20 } else { 512 };
        run(
            &b,
            BlockOp::WriteZeroes { unmap },
            off,
            4096,
            BlockBuffers::None,
        )
        .unwrap();
        let file = std::fs::read(&t.0).unwrap();
        let o = off as usize;
        assert!(file[o..o + 4096].iter().all(|&x| x == 0));
        assert_eq!(file[o + 4096], data[o + 4096]);
    }
}

/// FUA writes (data or zeroes) reach stable storage before completion;
/// others leave it to a later flush.
#[test]
fn fua_writes_and_zeroes_are_flushed() {
    let t = Tmp::new("fua", 1 << 20);
    let b = Blockif::open(&opts(&t), "t").unwrap();
    let zeroes = BlockOp::WriteZeroes { unmap: false };
    for (op, fua, flushed) in [
        (BlockOp::Write, false, 0),
        (BlockOp::Write, true, 1),
        (zeroes, false, 0),
        (zeroes, true, 1),
    ] {
        let before = b.flushes();
        let buffers = match op {
            BlockOp::Write => BlockBuffers::Host(vec![7; 4096]),
            _ => BlockBuffers::None,
        };
        run_fua(&b, op, 8192, 4096, buffers, fua).unwrap();
        assert_eq!(b.flushes() - before, flushed, "{op:?} fua={fua}");
    }
}

#[test]
fn many_requests_in_flight() {
    let t = Tmp::new("many", 1 << 20);
    let b = Blockif::open(&opts(&t), "t").unwrap();
    let (tx, rx) = mpsc::channel();
    for i in 0..128u64 {
        let tx = tx.clone();
        b.submit(
            BlockRequest {
                op: BlockOp::Write,
                offset: i * 4096,
                len: 0,
                buffers: BlockBuffers::Host(vec![i as u8; 4096]),
                fua: i % 16 == 0,
            },
            Box::new(move |_, r| tx.send((i, r.unwrap())).unwrap()),
        );
    }
    let mut seen: Vec<u64> = (0..128)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap().0)
        .collect();
    seen.sort();
    assert_eq!(seen, (0..128).collect::<Vec<_>>());
    let file = std::fs::read(&t.0).unwrap();
    for i in 0..128usize {
        assert!(file[i * 4096..(i + 1) * 4096].iter().all(|&x| x == i as u8));
    }
    // Dropping the backend with nothing queued returns promptly.
    drop(b);
}

#[test]
fn grown_file_is_seen() {
    let t = Tmp::new("grow", 4096);
    let b = Blockif::open(&opts(&t), "t").unwrap();
    assert_eq!(b.refresh_size(), Some(4096));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&t.0)
        .unwrap()
        .set_len(8192)
        .unwrap();
    assert_eq!(b.refresh_size(), Some(8192));
    assert_eq!(b.info().size, 4096, "info is what the device was told");
}

#[test]
fn submit_here_runs_on_the_callers_thread() {
    let t = Tmp::new("here", 1 << 20);
    let b = Blockif::open(&opts(&t), "t").unwrap();
    let m = mem();
    m.write_slice(&[0x5a; 4096], GuestAddress(0x1000)).unwrap();
    let guest = |a: u64| BlockBuffers::Guest {
        mem: m.clone(),
        segs: vec![(GuestAddress(a), 4096)],
    };
    let me = std::thread::current().id();
    let (tx, rx) = mpsc::channel();
    for (op, a) in [(BlockOp::Write, 0x1000), (BlockOp::Read, 0x3000)] {
        let tx = tx.clone();
        b.submit_here(
            BlockRequest {
                op,
                offset: 8192,
                len: 4096,
                buffers: guest(a),
                fua: false,
            },
            Box::new(move |_, r| tx.send((std::thread::current().id(), r.ok())).unwrap()),
        );
        // Done before submit_here returned, on this thread.
        assert_eq!(rx.try_recv().unwrap(), (me, Some(4096)));
    }
    let mut back = [0u8; 4096];
    m.read_slice(&mut back, GuestAddress(0x3000)).unwrap();
    assert_eq!(back, [0x5a; 4096]);
}
