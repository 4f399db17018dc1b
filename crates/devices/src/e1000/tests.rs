//! The e1000 driven through its PCI interface, as a driver would, with a
//! datagram socketpair as the backend (the test holds the host side).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::regs::*;
use super::*;
use crate::net_test_util::FakeBackend;
use crate::pci::{MsiMessage, PciInterrupts};
use crate::timer::ManualClock;
use crate::virtio::net::sock::{socketpair, SockBackend};

const MAC: [u8; 6] = [0x58, 0x9c, 0xfc, 0x0a, 0x0b, 0x0c];
const TX_RING: u64 = 0x10000;
const RX_RING: u64 = 0x20000;
const TX_BUF: u64 = 0x30000;
const RX_BUF: u64 = 0x40000;
const RING_LEN: u32 = 16;

#[derive(Default)]
struct Irq {
    intx: AtomicBool,
    msis: AtomicUsize,
}

impl PciInterrupts for Irq {
    fn set_intx(&self, asserted: bool) {
        self.intx.store(asserted, Ordering::SeqCst);
    }
    fn route_msi(&self, _: u16, _: Option<MsiMessage>) {}
    fn fire_msi(&self, _: u16) {
        self.msis.fetch_add(1, Ordering::SeqCst);
    }
}

fn sock_pair() -> (SockBackend, SockBackend) {
    let (a, b) = socketpair(None).unwrap();
    (SockBackend::new(a, false, 0), SockBackend::new(b, false, 0))
}

struct Nic {
    dev: Arc<Mutex<E1000>>,
    mem: GuestMemoryMmap,
    irq: Arc<Irq>,
    host: Option<SockBackend>,
    clock: Arc<ManualClock>,
}

impl Nic {
    fn new(with_backend: bool) -> Nic {
        let (host, backend) = if with_backend {
            let (a, b) = sock_pair();
            (Some(a), Some(Arc::new(b) as Arc<dyn NetBackend>))
        } else {
            (None, None)
        };
        Nic::with_backend(host, backend)
    }

    fn with_backend(host: Option<SockBackend>, backend: Option<Arc<dyn NetBackend>>) -> Nic {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let clock = ManualClock::new();
        let dev = E1000::with_clock(MAC, backend, mem.clone(), clock.clone()).unwrap();
        let irq = Arc::new(Irq::default());
        {
            let mut d = dev.lock().unwrap();
            d.config_mut().set_interrupts(irq.clone());
            // Memory, I/O and bus mastering on, as firmware leaves it.
            d.config_mut().write(4, &[0x07, 0x00]);
        }
        Nic {
            dev,
            mem,
            irq,
            host,
            clock,
        }
    }

    fn wr(&self, reg: u32, v: u32) {
        self.dev
            .lock()
            .unwrap()
            .bar_write(REGISTER_BAR, u64::from(reg), &v.to_le_bytes());
    }

    fn rd(&self, reg: u32) -> u32 {
        let mut b = [0u8; 4];
        self.dev
            .lock()
            .unwrap()
            .bar_read(REGISTER_BAR, u64::from(reg), &mut b);
        u32::from_le_bytes(b)
    }

    /// Turns the MSI capability on or off, as a driver switching
    /// interrupt modes does.
    fn set_msi(&self, on: bool) {
        let mut d = self.dev.lock().unwrap();
        let mut p = [0u8; 1];
        d.config().read(0x34, &mut p);
        let cap = u16::from(p[0]);
        d.config_mut().write(cap + 4, &0xfee0_0000u32.to_le_bytes());
        d.config_mut().write(cap + 2, &[u8::from(on), 0]);
    }

    fn wait_for(&self, what: &str, f: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn setup_tx(&self) {
        self.wr(TDBAL, TX_RING as u32);
        self.wr(TDBAH, 0);
        self.wr(TDLEN, RING_LEN * 16);
        self.wr(TDH, 0);
        self.wr(TDT, 0);
        self.wr(TCTL, TCTL_EN);
    }

    fn setup_rx(&self, rctl: u32) {
        for i in 0..u64::from(RING_LEN) {
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&(RX_BUF + i * 0x800).to_le_bytes());
            self.mem
                .write_slice(&d, GuestAddress(RX_RING + 16 * i))
                .unwrap();
        }
        self.wr(RDBAL, RX_RING as u32);
        self.wr(RDLEN, RING_LEN * 16);
        self.wr(RDH, 0);
        self.wr(RDT, RING_LEN - 1);
        self.wr(RCTL, rctl | RCTL_EN);
    }

    fn send_legacy(&self, idx: u32, frame: &[u8]) {
        let buf = TX_BUF + u64::from(idx) * 0x800;
        self.mem.write_slice(frame, GuestAddress(buf)).unwrap();
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&buf.to_le_bytes());
        let lower = frame.len() as u32 | (1 << 24) | (1 << 25) | (1 << 27);
        d[8..12].copy_from_slice(&lower.to_le_bytes());
        self.mem
            .write_slice(&d, GuestAddress(TX_RING + 16 * u64::from(idx)))
            .unwrap();
    }
}

fn frame(dst: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = i as u8;
    }
    f
}

#[test]
fn identity_bars_and_msi() {
    let n = Nic::new(false);
    let d = n.dev.lock().unwrap();
    let c = d.config();
    assert_eq!(c.vendor_device(), (0x8086, 0x100f));
    let mut b = [0u8; 4];
    c.read(0x2c, &mut b);
    assert_eq!(b, [0x86, 0x80, 0x08, 0x10]);
    assert_eq!(c.bar_size(REGISTER_BAR), 128 << 10);
    assert_eq!(c.bar_size(FLASH_BAR), 64 << 10);
    assert_eq!(c.bar_size(IO_BAR), 8);
    c.read(0x08, &mut b);
    assert_eq!(&b[2..], &[0x00, 0x02], "Ethernet controller");
    c.read(0x34, &mut b[..1]);
    let mut cap = [0u8; 1];
    c.read(u16::from(b[0]), &mut cap);
    assert_eq!(cap[0], 0x05, "MSI capability");
}

#[test]
fn status_eeprom_phy_and_receive_address() {
    let n = Nic::new(false);
    assert_eq!(n.rd(STATUS), STATUS_FD | STATUS_LU | STATUS_SPEED_1000);
    let mut sum = 0u16;
    let mut words = Vec::new();
    for a in 0..64u32 {
        n.wr(EERD, EERD_START | (a << EERD_ADDR_SHIFT));
        let r = n.rd(EERD);
        assert!(r & EERD_DONE != 0);
        words.push((r >> 16) as u16);
        sum = sum.wrapping_add((r >> 16) as u16);
    }
    assert_eq!(sum, 0xbaba);
    let mac: Vec<u8> = words[..3].iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(mac, MAC);
    // PHY status through MDIC: link up, auto-negotiation complete.
    n.wr(
        MDIC,
        MDIC_OP_READ | (1 << MDIC_PHY_SHIFT) | (1 << MDIC_REG_SHIFT),
    );
    let m = n.rd(MDIC);
    assert!(m & MDIC_READY != 0 && m & MDIC_ERROR == 0);
    assert_eq!(m & 0x24, 0x24);
    // RAL0/RAH0 hold the MAC with Address Valid; also through IOADDR/IODATA.
    let mut d = n.dev.lock().unwrap();
    d.bar_write(IO_BAR, 0, &RAL0.to_le_bytes());
    let mut b = [0u8; 4];
    d.bar_read(IO_BAR, 4, &mut b);
    assert_eq!(b, MAC[..4]);
    d.bar_write(IO_BAR, 0, &(RAL0 + 4).to_le_bytes());
    d.bar_read(IO_BAR, 4, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x8000_0000 | 0x0c0b);
    // Narrow accesses are ignored (bhyve answers 32-bit ones only).
    d.bar_write(REGISTER_BAR, u64::from(IMS), &[0xff]);
    drop(d);
    assert_eq!(n.rd(IMS), 0);
}

#[test]
fn icr_ims_imc_and_itr_window() {
    let n = Nic::new(false);
    n.wr(ITR, 0);
    n.wr(ICS, ICR_LSC);
    assert!(!n.irq.intx.load(Ordering::SeqCst), "masked");
    n.wr(IMS, ICR_LSC | ICR_RXT0);
    assert!(
        n.irq.intx.load(Ordering::SeqCst),
        "unmasking a pending cause"
    );
    assert_eq!(n.rd(ICR), ICR_LSC);
    assert!(!n.irq.intx.load(Ordering::SeqCst), "ICR read clears");
    assert_eq!(n.rd(ICR), 0);
    n.wr(ICS, ICR_RXT0);
    assert!(n.irq.intx.load(Ordering::SeqCst));
    n.wr(IMC, ICR_RXT0);
    assert!(!n.irq.intx.load(Ordering::SeqCst), "masking drops the line");
    n.wr(ICR, u32::MAX);
    n.wr(IMS, ICR_RXT0);

    // With ITR, a second cause inside the window waits for its end.
    n.wr(ITR, 1000); // 256 µs
    n.wr(ICS, ICR_RXT0);
    assert!(n.irq.intx.load(Ordering::SeqCst));
    n.rd(ICR);
    assert!(!n.irq.intx.load(Ordering::SeqCst));
    n.wr(ICS, ICR_RXT0);
    assert!(!n.irq.intx.load(Ordering::SeqCst), "throttled");
    n.clock.advance(200_000);
    n.dev.lock().unwrap().itr_expire();
    assert!(!n.irq.intx.load(Ordering::SeqCst), "window not over");
    n.clock.advance(100_000);
    n.dev.lock().unwrap().itr_expire();
    assert!(n.irq.intx.load(Ordering::SeqCst), "end of the window");

    // MSI: the same causes fire the vector instead of INTx.
    let n = Nic::new(false);
    n.wr(ITR, 0);
    n.set_msi(true);
    n.wr(IMS, ICR_TXDW);
    n.wr(ICS, ICR_TXDW);
    assert_eq!(n.irq.msis.load(Ordering::SeqCst), 1);
    assert!(!n.irq.intx.load(Ordering::SeqCst));
}

#[test]
fn intx_takes_over_a_pending_cause_when_msi_goes_off() {
    let n = Nic::new(false);
    n.wr(ITR, 0);
    n.set_msi(true);
    n.wr(IMS, ICR_TXDW | ICR_RXT0);
    n.wr(ICS, ICR_TXDW);
    assert_eq!(n.irq.msis.load(Ordering::SeqCst), 1);
    let intx = || n.irq.intx.load(Ordering::SeqCst);
    assert!(!intx(), "INTx while MSI is on");
    // The driver falls back to INTx before reading ICR.
    n.set_msi(false);
    assert!(intx(), "INTx low with an unmasked cause pending");
    n.set_msi(true);
    assert!(!intx(), "INTx left asserted with MSI on again");
    n.set_msi(false);
    assert!(intx());
    assert_eq!(n.rd(ICR), ICR_TXDW);
    assert!(!intx(), "reading ICR drops the line");
    n.wr(ICS, ICR_RXT0);
    assert!(intx(), "a new cause with MSI off");
    assert_eq!(n.irq.msis.load(Ordering::SeqCst), 1);
}

#[test]
fn transmit_reaches_the_backend_and_sets_dd() {
    let n = Nic::new(true);
    n.wr(IMS, ICR_TXDW);
    n.setup_tx();
    let f = frame([2, 0, 0, 0, 0, 9], 100);
    n.send_legacy(0, &f);
    n.send_legacy(1, &frame([0xff; 6], 70));
    n.wr(TDT, 2);
    let host = n.host.as_ref().unwrap();
    assert_eq!(host.recv_timeout(Duration::from_secs(5)).unwrap(), f);
    assert_eq!(host.recv_timeout(Duration::from_secs(5)).unwrap().len(), 70);
    n.wait_for("TDH", || n.rd(TDH) == 2);
    let mut st = [0u8; 1];
    n.mem
        .read_slice(&mut st, GuestAddress(TX_RING + 16 + 12))
        .unwrap();
    assert_eq!(st[0] & 1, 1, "DD");
    n.wait_for("TXDW", || n.irq.intx.load(Ordering::SeqCst));
    assert!(n.rd(ICR) & ICR_TXDW != 0);
    assert_eq!(n.rd(STATS_BASE + 0x80), 2, "GPTC");
    assert_eq!(n.rd(STATS_BASE + 0x80), 0, "read to clear");
    assert_eq!(n.rd(STATS_BASE + 0xf4), 1, "BPTC");
}

#[test]
fn receive_fills_descriptors_through_the_filters() {
    let n = Nic::new(true);
    n.wr(IMS, ICR_RXT0);
    n.setup_rx(RCTL_BAM | RCTL_SECRC);
    let host = n.host.as_ref().unwrap();
    let other = frame([2, 1, 1, 1, 1, 1], 200);
    let mine = frame(MAC, 1000);
    let bcast = frame([0xff; 6], 30);
    for f in [&other, &mine, &bcast] {
        host.send(f).unwrap();
    }
    n.wait_for("RDH", || n.rd(RDH) == 2);
    let mut got = vec![0u8; 1000];
    n.mem.read_slice(&mut got, GuestAddress(RX_BUF)).unwrap();
    assert_eq!(got, mine, "the other host's unicast was filtered out");
    let mut d = [0u8; 16];
    n.mem.read_slice(&mut d, GuestAddress(RX_RING)).unwrap();
    assert_eq!(u16::from_le_bytes([d[8], d[9]]), 1000);
    assert_eq!(d[12] & 3, 3, "DD and EOP");
    n.mem
        .read_slice(&mut d, GuestAddress(RX_RING + 16))
        .unwrap();
    assert_eq!(
        u16::from_le_bytes([d[8], d[9]]),
        60,
        "padded to the minimum"
    );
    n.wait_for("RXT0", || n.irq.intx.load(Ordering::SeqCst));
    assert!(n.rd(ICR) & ICR_RXT0 != 0);
    assert_eq!(n.rd(STATS_BASE + 0x74), 2, "GPRC");

    // Promiscuous: the other host's frames come in too.
    n.wr(RCTL, RCTL_EN | RCTL_UPE | RCTL_SECRC);
    host.send(&other).unwrap();
    n.wait_for("RDH", || n.rd(RDH) == 3);

    // A full ring holds frames back until the guest gives buffers.
    n.wr(RDT, 3);
    host.send(&mine).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(n.rd(RDH), 3);
    n.wr(RDT, 10);
    n.wait_for("RDH after RDT", || n.rd(RDH) == 4);
}

#[test]
fn hostile_ring_registers_never_stall_or_panic() {
    let n = Nic::new(true);
    // Pointers past the ring, a ring outside RAM, an empty ring.
    n.wr(TDBAL, 0xffff_fff0);
    n.wr(TDBAH, 0xffff_ffff);
    n.wr(TDLEN, 128);
    n.wr(TCTL, TCTL_EN);
    n.wr(TDT, 5000);
    n.wr(TDT, 3);
    n.wait_for("TDH over the bad ring", || n.rd(TDH) == 3);
    n.wr(TDLEN, 0);
    n.wr(TDT, 4);
    n.wr(RDLEN, 0);
    n.wr(RCTL, RCTL_EN | RCTL_UPE);
    n.wr(RDT, 9);
    n.host.as_ref().unwrap().send(&frame(MAC, 64)).unwrap();
    // Every register, every value class.
    for off in (0..0x6000u32).step_by(4) {
        if off == CTRL || off == CTRL_DUP {
            continue;
        }
        for v in [0, u32::MAX, 0x5555_5555] {
            n.wr(off, v);
            n.rd(off);
        }
    }
    n.wr(CTRL, CTRL_RST);
    assert_eq!(n.rd(TCTL), 0);
    assert_eq!(n.rd(RAL0 + 4) & RAH_AV, 0, "a software reset clears AV");
    n.dev.lock().unwrap().reset();
    assert_eq!(
        n.rd(RAL0 + 4),
        0x8000_0c0b,
        "power-on reset reloads the MAC"
    );
}

// ---- a hostile guest racing the workers ---------------------------------

/// Parks the workers right before their next guest-memory write until the
/// returned sender is dropped; the receiver hears when one is parked.
fn park_before_dma(n: &Nic) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    park_before_dma_after(n, 0)
}

/// As [`park_before_dma`], letting the first `skip` writes through.
fn park_before_dma_after(n: &Nic, skip: usize) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (parked_tx, parked) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let (parked_tx, release_rx) = (Mutex::new(parked_tx), Mutex::new(release_rx));
    let calls = AtomicUsize::new(0);
    let hook: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        if calls.fetch_add(1, Ordering::SeqCst) < skip {
            return;
        }
        let _ = parked_tx.lock().unwrap().send(());
        let _ = release_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(5));
    });
    *n.dev.lock().unwrap().kicks.dma_hook.lock().unwrap() = Some(hook);
    (parked, release)
}

/// What a driver going down does while a worker is parked before its
/// write: writes `reg` (on a vCPU thread of its own) and, as soon as that
/// returned, reuses `regions` for other data (fills them with 0x08: RS
/// set, DD clear). Returns the regions once the worker had time to go on.
fn write_then_reuse(
    n: &Nic,
    reg: u32,
    v: u32,
    release: mpsc::Sender<()>,
    regions: &[(u64, usize)],
) -> Vec<Vec<u8>> {
    let reuse = || {
        for &(a, len) in regions {
            n.mem.write_slice(&vec![8u8; len], GuestAddress(a)).unwrap();
        }
    };
    let dev = n.dev.clone();
    let (done_tx, done) = mpsc::channel();
    let vcpu = std::thread::spawn(move || {
        dev.lock()
            .unwrap()
            .bar_write(REGISTER_BAR, u64::from(reg), &v.to_le_bytes());
        let _ = done_tx.send(());
    });
    if done.recv_timeout(Duration::from_millis(300)).is_ok() {
        reuse();
        drop(release);
    } else {
        // The write waits for the worker's copy: let it finish first.
        drop(release);
        done.recv_timeout(Duration::from_secs(5))
            .expect("the register write returned");
        reuse();
    }
    vcpu.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    regions
        .iter()
        .map(|&(a, len)| {
            let mut b = vec![0u8; len];
            n.mem.read_slice(&mut b, GuestAddress(a)).unwrap();
            b
        })
        .collect()
}

fn untouched(regions: &[Vec<u8>]) -> bool {
    regions.iter().all(|r| r.iter().all(|&b| b == 8))
}

#[test]
fn no_receive_write_lands_after_rctl_disable_returned() {
    let n = Nic::new(true);
    n.setup_rx(RCTL_UPE | RCTL_SECRC);
    let (parked, release) = park_before_dma(&n);
    n.host.as_ref().unwrap().send(&frame(MAC, 200)).unwrap();
    parked
        .recv_timeout(Duration::from_secs(5))
        .expect("the receive worker reached its write");
    let after = write_then_reuse(&n, RCTL, 0, release, &[(RX_RING, 16), (RX_BUF, 200)]);
    assert!(
        untouched(&after),
        "written after RCTL.EN=0 returned: {after:?}"
    );
}

#[test]
fn no_transmit_write_back_lands_after_tctl_disable_returned() {
    let n = Nic::new(true);
    n.setup_tx();
    n.send_legacy(0, &frame([2, 0, 0, 0, 0, 9], 100));
    let (parked, release) = park_before_dma(&n);
    n.wr(TDT, 1);
    parked
        .recv_timeout(Duration::from_secs(5))
        .expect("the transmit worker reached its write-back");
    let after = write_then_reuse(&n, TCTL, 0, release, &[(TX_RING, 16)]);
    assert!(
        untouched(&after),
        "written after TCTL.EN=0 returned: {after:?}"
    );
}

#[test]
fn a_reset_stops_a_tso_packet_between_segments() {
    let be = Arc::new(FakeBackend::new());
    let n = Nic::with_backend(None, Some(be.clone()));
    // The guest resets the device as the first segment goes out (on the
    // transmit worker's thread, as a vCPU would race it).
    let dev = Arc::downgrade(&n.dev);
    be.on_send(move |sent| {
        if sent > 1 {
            return;
        }
        if let Some(d) = dev.upgrade() {
            d.lock()
                .unwrap()
                .bar_write(REGISTER_BAR, u64::from(CTRL), &CTRL_RST.to_le_bytes());
        }
    });
    n.setup_tx();
    // One TCP/IPv4 TSO packet: a 54-byte header and 3000 bytes in MSS 100,
    // i.e. 30 segments.
    let mut pkt = frame([2, 0, 0, 0, 0, 9], 54 + 3000);
    pkt[14] = 0x45;
    n.mem.write_slice(&pkt, GuestAddress(TX_BUF)).unwrap();
    let dext = 1 << 29;
    let mut ctx = [0u8; 16];
    ctx[..6].copy_from_slice(&[14, 24, 33, 0, 34, 50]);
    let cmd: u32 = 3000 | dext | (1 << 24) | (1 << 25) | (1 << 26);
    ctx[8..12].copy_from_slice(&cmd.to_le_bytes());
    ctx[13] = 54;
    ctx[14..16].copy_from_slice(&100u16.to_le_bytes());
    let mut data = [0u8; 16];
    data[..8].copy_from_slice(&TX_BUF.to_le_bytes());
    let lower: u32 = (54 + 3000) | dext | (1 << 20) | (1 << 24) | (1 << 26) | (1 << 27);
    data[8..12].copy_from_slice(&lower.to_le_bytes());
    data[13] = 3;
    n.mem.write_slice(&ctx, GuestAddress(TX_RING)).unwrap();
    n.mem
        .write_slice(&data, GuestAddress(TX_RING + 16))
        .unwrap();
    n.wr(TDT, 2);
    n.wait_for("the first segment", || be.sends() > 0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(n.rd(TCTL), 0, "the reset happened");
    assert_eq!(be.sends(), 1, "segments sent after CTRL.RST returned");
}

#[test]
fn a_failed_backend_does_not_spin_the_receive_worker() {
    // A tap whose interface the host deleted: fails, yet polls ready.
    let be = Arc::new(FakeBackend::failed(libc::EBADFD));
    let n = Nic::with_backend(None, Some(be.clone()));
    // Receiving off (frames discarded), then on with buffers.
    std::thread::sleep(Duration::from_millis(300));
    n.setup_rx(RCTL_UPE);
    std::thread::sleep(Duration::from_millis(300));
    let reads = be.reads();
    assert!(reads >= 2, "the backend was tried ({reads} reads)");
    assert!(reads < 50, "{reads} reads of a failed backend in 0.6 s");
}

// ---- a ring disabled in the middle of a batch ----------------------------

/// Descriptors of the ring at `base` whose status has DD.
fn dd_count(n: &Nic, base: u64) -> Vec<u32> {
    (0..RING_LEN)
        .filter(|&i| {
            let mut st = [0u8; 1];
            n.mem
                .read_slice(&mut st, GuestAddress(base + 16 * u64::from(i) + 12))
                .unwrap();
            st[0] & 1 != 0
        })
        .collect()
}

#[test]
fn a_transmit_disable_mid_batch_keeps_the_packets_completed() {
    let be = Arc::new(FakeBackend::new());
    let n = Nic::with_backend(None, Some(be.clone()));
    // The guest clears TCTL.EN as the third frame goes out (on the
    // worker's thread, as a vCPU would race it).
    let dev = Arc::downgrade(&n.dev);
    be.on_send(move |sent| {
        if sent != 3 {
            return;
        }
        if let Some(d) = dev.upgrade() {
            d.lock()
                .unwrap()
                .bar_write(REGISTER_BAR, u64::from(TCTL), &0u32.to_le_bytes());
        }
    });
    n.setup_tx();
    for i in 0..4 {
        n.send_legacy(i, &frame([2, 0, 0, 0, 0, 9], 100));
    }
    n.wr(TDT, 4);
    n.wait_for("the third frame", || be.sends() >= 3);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(n.rd(TCTL), 0, "the disable happened");
    assert_eq!(be.sends(), 3, "frames sent after TCTL.EN=0 returned");
    assert_eq!(dd_count(&n, TX_RING), [0, 1], "DD of the packets completed");
    assert_eq!(n.rd(TDH), 2, "TDH left behind descriptors with DD");
    // Re-enabled without rewriting TDH: the two packets done stay done;
    // the one in flight at the disable (sent, DD not written) goes again.
    n.wr(TCTL, TCTL_EN);
    n.wait_for("TDH", || n.rd(TDH) == 4);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(be.sends(), 5, "completed packets sent again");
}

#[test]
fn a_receive_disable_mid_batch_keeps_the_frames_delivered() {
    let n = Nic::new(true);
    n.setup_rx(RCTL_UPE | RCTL_SECRC);
    // The worker delivers the first frame and parks before the second.
    let (parked, release) = park_before_dma_after(&n, 1);
    let host = n.host.as_ref().unwrap();
    for i in 0..4u8 {
        let mut f = frame(MAC, 100);
        f[20] = i;
        host.send(&f).unwrap();
    }
    parked
        .recv_timeout(Duration::from_secs(5))
        .expect("the receive worker reached its second write");
    // RCTL.EN=0 on a vCPU: it waits for the copy in progress, which is
    // let go once the vCPU is (very likely) waiting.
    let dev = n.dev.clone();
    let vcpu = std::thread::spawn(move || {
        dev.lock()
            .unwrap()
            .bar_write(REGISTER_BAR, u64::from(RCTL), &RCTL_UPE.to_le_bytes());
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(release);
    vcpu.join().unwrap();
    let rdh = n.rd(RDH);
    let done = dd_count(&n, RX_RING);
    assert!(done.len() >= 2, "frames delivered: {done:?}");
    assert_eq!(
        done,
        (0..rdh).collect::<Vec<_>>(),
        "RDH {rdh} left behind descriptors with DD"
    );
    // Re-enabled without rewriting RDH: new frames land after them (a
    // frame still queued may come first), the delivered ones stay.
    n.wr(RCTL, RCTL_EN | RCTL_UPE | RCTL_SECRC);
    let mut f = frame(MAC, 100);
    f[20] = 0x77;
    host.send(&f).unwrap();
    let marker = |i: u32| {
        let mut b = [0u8; 1];
        n.mem
            .read_slice(&mut b, GuestAddress(RX_BUF + 0x800 * u64::from(i) + 20))
            .unwrap();
        b[0]
    };
    n.wait_for("a frame after the re-enable", || {
        (rdh..RING_LEN).any(|i| marker(i) == 0x77)
    });
    for i in 0..rdh {
        assert_eq!(marker(i), i as u8, "frame {i} overwritten");
    }
}
