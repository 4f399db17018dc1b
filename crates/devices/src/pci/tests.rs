//! Bus 0 end to end: configuration accesses through 0xcf8/0xcfc and
//! ECAM, BAR sizing and moves on the buses, INTx through PIRQ links,
//! MSI and MSI-X delivery, and a guest writing garbage everywhere.

use std::sync::{Arc, Mutex};

use super::config::{BarKind, PciConfig, PciId, ROM_BAR};
use super::intx::{IntxLines, IntxRoute, PirqRouter, PirqTable};
use super::root::{ConfigIo, Ecam, PciAddress, PciRoot, PciWindows};
use super::{HostBridge, LpcBridge, MsiMessage, PciDevice, PciInterrupts, ECAM_BASE};
use crate::bus::Bus;
use crate::reset::ResetControl;
use crate::testutil::{RecIrq, RecVm};
use crate::ExitRequest;

#[derive(Default)]
struct RecInterrupts {
    intx: Mutex<Vec<bool>>,
    routes: Mutex<Vec<(u16, Option<MsiMessage>)>>,
    fired: Mutex<Vec<u16>>,
}

impl PciInterrupts for RecInterrupts {
    fn set_intx(&self, asserted: bool) {
        self.intx.lock().unwrap().push(asserted);
    }
    fn route_msi(&self, vector: u16, msg: Option<MsiMessage>) {
        self.routes.lock().unwrap().push((vector, msg));
    }
    fn fire_msi(&self, vector: u16) {
        self.fired.lock().unwrap().push(vector);
    }
}

/// A function with an I/O BAR, a 32-bit BAR (registers + MSI-X), a
/// 64-bit BAR, a ROM, MSI and MSI-X; its registers are a scratch array.
struct TestDev {
    config: PciConfig,
    regs: [u8; 64],
}

impl TestDev {
    fn new() -> Self {
        let mut config = PciConfig::new(PciId {
            vendor: 0x1af4,
            device: 0x1234,
            class: 0xff,
            ..PciId::default()
        });
        config.add_bar(0, BarKind::Io, 32).unwrap();
        config.add_bar(1, BarKind::Mem32, 0x4000).unwrap();
        config.add_bar(2, BarKind::Mem64, 0x10_0000).unwrap();
        config.set_rom(Arc::from(&b"\x55\xaaROM"[..])).unwrap();
        config.add_msi(2).unwrap();
        config.add_msix(4, (1, 0x2000), (1, 0x3000)).unwrap();
        config.set_intpin(1);
        TestDev {
            config,
            regs: [0; 64],
        }
    }
}

impl PciDevice for TestDev {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn bar_read(&mut self, _bar: u8, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.regs[(offset as usize + i) % 64];
        }
    }
    fn bar_write(&mut self, _bar: u8, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.regs[(offset as usize + i) % 64] = *b;
        }
    }
}

#[derive(Default)]
struct RecRouter(Mutex<Vec<(u8, Option<u8>)>>);
impl PirqRouter for RecRouter {
    fn pirq_changed(&self, pirq: u8, irq: Option<u8>) {
        self.0.lock().unwrap().push((pirq, irq));
    }
}

struct Rig {
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    root: Arc<Mutex<PciRoot>>,
    dev: Arc<Mutex<TestDev>>,
    irq: Arc<RecInterrupts>,
    vm: Arc<RecVm>,
    router: Arc<RecRouter>,
    route: IntxRoute,
}

const DEV: PciAddress = PciAddress { slot: 3, func: 0 };

fn rig() -> Rig {
    let pio = Arc::new(Bus::new());
    let mmio = Arc::new(Bus::new());
    let pirq = Arc::new(Mutex::new(PirqTable::new(1 << 4 | 1 << 9)));
    let router = Arc::new(RecRouter::default());
    pirq.lock().unwrap().set_router(router.clone());
    let root = Arc::new(Mutex::new(PciRoot::new(
        pio.clone(),
        mmio.clone(),
        PciWindows::bhyve(0),
        pirq.clone(),
    )));
    let none = || -> Arc<dyn PciInterrupts> { Arc::new(RecInterrupts::default()) };
    let mut r = root.lock().unwrap();
    r.add(
        PciAddress { slot: 0, func: 0 },
        Arc::new(Mutex::new(HostBridge::new(HostBridge::bhyve_id()))),
        |_| none(),
    )
    .unwrap();
    r.add(
        PciAddress { slot: 31, func: 0 },
        Arc::new(Mutex::new(LpcBridge::new(LpcBridge::bhyve_id(), pirq))),
        |_| none(),
    )
    .unwrap();
    let dev = Arc::new(Mutex::new(TestDev::new()));
    let irq = Arc::new(RecInterrupts::default());
    let i2 = irq.clone();
    let route = r
        .add(DEV, dev.clone(), move |_| i2 as Arc<dyn PciInterrupts>)
        .unwrap()
        .unwrap();
    drop(r);
    let vm = RecVm::new();
    let cfg = ConfigIo::new(root.clone(), Some(ResetControl::new(vm.clone())));
    pio.insert(0xcf8, 8, Arc::new(Mutex::new(cfg))).unwrap();
    mmio.insert(
        ECAM_BASE,
        super::ECAM_SIZE,
        Arc::new(Mutex::new(Ecam::new(root.clone()))),
    )
    .unwrap();
    Rig {
        pio,
        mmio,
        root,
        dev,
        irq,
        vm,
        router,
        route,
    }
}

impl Rig {
    fn conf1(&self, a: PciAddress, reg: u8) -> u32 {
        let addr = 0x8000_0000 | u32::from(a.slot) << 11 | u32::from(a.func) << 8 | u32::from(reg);
        assert!(self.pio.write(0xcf8, &addr.to_le_bytes()));
        let mut d = [0u8; 4];
        assert!(self.pio.read(0xcfc, &mut d));
        u32::from_le_bytes(d)
    }

    fn conf1_write(&self, a: PciAddress, reg: u8, data: &[u8]) {
        let addr =
            0x8000_0000 | u32::from(a.slot) << 11 | u32::from(a.func) << 8 | u32::from(reg & 0xfc);
        self.pio.write(0xcf8, &addr.to_le_bytes());
        self.pio.write(0xcfc + u64::from(reg & 3), data);
    }

    fn ecam_addr(a: PciAddress, reg: u64) -> u64 {
        ECAM_BASE | u64::from(a.slot) << 15 | u64::from(a.func) << 12 | reg
    }

    fn ecam(&self, a: PciAddress, reg: u64) -> u32 {
        let mut d = [0u8; 4];
        assert!(self.mmio.read(Self::ecam_addr(a, reg), &mut d));
        u32::from_le_bytes(d)
    }

    fn ecam_write(&self, a: PciAddress, reg: u64, v: u32) {
        assert!(self.mmio.write(Self::ecam_addr(a, reg), &v.to_le_bytes()));
    }

    fn bar(&self, i: u8) -> u64 {
        self.dev.lock().unwrap().config().bar_addr(i)
    }
}

#[test]
fn identities_through_both_mechanisms() {
    let r = rig();
    let hb = PciAddress { slot: 0, func: 0 };
    let lpc = PciAddress { slot: 31, func: 0 };
    assert_eq!(r.conf1(hb, 0), 0x1275_1275);
    assert_eq!(r.ecam(hb, 0), 0x1275_1275);
    assert_eq!(r.conf1(hb, 8) >> 16, 0x0600, "host bridge class");
    assert_eq!(r.conf1(lpc, 0), 0x7000_8086);
    assert_eq!(r.conf1(lpc, 8) >> 16, 0x0601, "ISA bridge class");
    assert_eq!(r.conf1(DEV, 0), 0x1234_1af4);
    // Absent functions, other buses and a disabled address read ones.
    assert_eq!(r.conf1(PciAddress { slot: 5, func: 0 }, 0), 0xffff_ffff);
    assert_eq!(r.ecam(hb, 1 << 20), 0xffff_ffff);
    r.pio.write(0xcf8, &0u32.to_le_bytes());
    let mut d = [0u8; 4];
    r.pio.read(0xcfc, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0xffff_ffff);
    // The capability list of the host bridge: PCIe, then nothing.
    let cap = r.conf1(hb, 0x34) as u8;
    assert_eq!(r.conf1(hb, cap) & 0xff, 0x10);
    assert_ne!(r.conf1(hb, 4) >> 16 & 0x10, 0, "capability list bit");
    // Sub-dword accesses through 0xcfc + n.
    r.conf1(DEV, 0);
    let mut w = [0u8; 2];
    r.pio.read(0xcfe, &mut w);
    assert_eq!(u16::from_le_bytes(w), 0x1234);
}

#[test]
fn reset_register_shares_the_conf1_range() {
    let r = rig();
    // A 4-byte write at 0xcf8 is the address, never a reset.
    r.pio.write(0xcf8, &0x8000_0004u32.to_le_bytes());
    assert!(r.vm.exits().is_empty());
    assert!(r.pio.write(0xcf9, &[0x06]));
    assert_eq!(r.vm.exits(), vec![ExitRequest::Reboot]);
}

#[test]
fn bars_are_placed_enabled_and_decoded() {
    let r = rig();
    let io = r.bar(0);
    let m32 = r.bar(1);
    let m64 = r.bar(2);
    assert!((0x2000..0x10000).contains(&io) && io.is_multiple_of(32));
    assert!((0xc000_0000..0xe000_0000).contains(&m32) && m32.is_multiple_of(0x4000));
    assert!(
        (0xc000_0000..0xe000_0000).contains(&m64),
        "small 64-bit BARs stay below 4 GiB"
    );
    let cmd = r.conf1(DEV, 4) & 0xffff;
    assert_eq!(cmd & 3, 3, "I/O and memory decode enabled");
    // The device sees BAR accesses.
    assert!(r.pio.write(io + 2, &[0x5a]));
    let mut b = [0u8; 1];
    assert!(r.pio.read(io + 2, &mut b));
    assert_eq!(b[0], 0x5a);
    assert!(r.mmio.write(m64 + 8, &[7]));
    assert_eq!(r.dev.lock().unwrap().regs[8], 7);
    // Sizing: all ones reads back the size mask with the type bits.
    r.conf1_write(DEV, 0x14, &u32::MAX.to_le_bytes());
    assert_eq!(r.conf1(DEV, 0x14), !(0x4000 - 1) & !0xf);
    r.conf1_write(DEV, 0x10, &u32::MAX.to_le_bytes());
    assert_eq!(r.conf1(DEV, 0x10), !(32 - 1) | 1);
    r.conf1_write(DEV, 0x18, &u32::MAX.to_le_bytes());
    r.conf1_write(DEV, 0x1c, &u32::MAX.to_le_bytes());
    assert_eq!(r.conf1(DEV, 0x18), !(0x10_0000 - 1) | 0x4);
    assert_eq!(r.conf1(DEV, 0x1c), u32::MAX);
    // While sized the old addresses stop decoding.
    assert!(!r.mmio.read(m32, &mut b));
    // Moving BAR 1 moves its decode.
    r.conf1_write(DEV, 0x14, &0xd000_0000u32.to_le_bytes());
    assert!(r.mmio.write(0xd000_0004, &[9]));
    assert_eq!(r.dev.lock().unwrap().regs[4], 9);
    // Memory decode off: nothing answers; on again: back.
    r.conf1_write(DEV, 4, &[0x01, 0]);
    assert!(!r.mmio.read(0xd000_0004, &mut b));
    assert!(r.pio.read(io, &mut b) || r.bar(0) != io);
    r.conf1_write(DEV, 4, &[0x03, 0]);
    assert!(r.mmio.read(0xd000_0004, &mut b));
}

/// A BAR never lands on ports a platform device holds (pc-testdev's IRQ
/// ports at 0x2000, the bottom of bhyve's I/O window): it would not be
/// decoded where the guest reads it.
#[test]
fn bars_skip_ranges_already_claimed() {
    struct Held;
    impl crate::bus::BusDevice for Held {
        fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
            data.fill(0xee);
        }
        fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
    }
    let pio = Arc::new(Bus::new());
    let mmio = Arc::new(Bus::new());
    let held = Arc::new(Mutex::new(Held));
    pio.insert(0x2000, 0x20, held.clone()).unwrap();
    mmio.insert(0xc000_0000, 0x1000, held).unwrap();
    let pirq = Arc::new(Mutex::new(PirqTable::new(0)));
    let mut root = PciRoot::new(pio.clone(), mmio.clone(), PciWindows::bhyve(0), pirq);
    let dev = Arc::new(Mutex::new(TestDev::new()));
    root.add(DEV, dev.clone(), |_| {
        Arc::new(RecInterrupts::default()) as Arc<dyn PciInterrupts>
    })
    .unwrap();
    drop(root);
    let mut b = [0u8; 1];
    // The held ranges still answer as before; the BARs follow them.
    assert!(pio.read(0x2002, &mut b));
    assert_eq!(b[0], 0xee);
    assert!(pio.write(0x2020 + 2, &[0x5a]));
    assert!(mmio.write(0xc000_4000 + 3, &[0x77]));
    let d = dev.lock().unwrap();
    assert_eq!((d.regs[2], d.regs[3]), (0x5a, 0x77));
    assert_eq!(d.config().bar_addr(0), 0x2020);
    assert_eq!(d.config().bar_addr(1), 0xc000_4000);
}

#[test]
fn rom_bar_maps_the_contents_read_only() {
    let r = rig();
    assert_ne!(r.bar(ROM_BAR), 0);
    let mut b = [0u8; 2];
    assert!(!r.mmio.read(r.bar(ROM_BAR), &mut b), "ROM decode is off");
    r.conf1_write(DEV, 0x30, &u32::MAX.to_le_bytes());
    assert_eq!(r.conf1(DEV, 0x30), !(2048 - 1) | 1, "2 KiB ROM");
    r.conf1_write(DEV, 0x30, &(0xd800_0000u32 | 1).to_le_bytes());
    assert!(r.mmio.read(0xd800_0000, &mut b));
    assert_eq!(b, [0x55, 0xaa]);
    r.mmio.write(0xd800_0000, &[0, 0]);
    r.mmio.read(0xd800_0000, &mut b);
    assert_eq!(b, [0x55, 0xaa]);
    let mut far = [0u8; 1];
    r.mmio.read(0xd800_0000 + 100, &mut far);
    assert_eq!(far, [0xff], "past the image");
}

#[test]
fn intx_routes_through_pirq_links() {
    let r = rig();
    // The host bridge and LPC have no pin: the device got link A.
    assert_eq!(
        r.route,
        IntxRoute {
            pirq: 0,
            ioapic_pin: 16
        }
    );
    // Link A got the lowest permitted IRQ not reserved (3; 4 and 9 are).
    assert_eq!(r.conf1(DEV, 0x3c) & 0xffff, 0x0103);
    let lpc = PciAddress { slot: 31, func: 0 };
    assert_eq!(r.conf1(lpc, 0x60), 0x8080_8003);
    assert_eq!(r.router.0.lock().unwrap().last(), Some(&(0, Some(3))));
    // The guest re-routes link A to IRQ 11, then disables link B.
    r.conf1_write(lpc, 0x60, &[11]);
    r.conf1_write(lpc, 0x61, &[0x80]);
    assert_eq!(r.conf1(lpc, 0x60) & 0xff, 11);
    assert_eq!(r.router.0.lock().unwrap().last(), Some(&(0, Some(11))));
    // A forbidden IRQ is kept but does not route.
    r.conf1_write(lpc, 0x6b, &[2]);
    assert_eq!(r.conf1(lpc, 0x68) >> 24, 2);
    assert_eq!(r.router.0.lock().unwrap().last(), Some(&(7, None)));
    // Level: asserted while the device holds it, unless disabled.
    r.dev.lock().unwrap().config.set_intx(true);
    assert_ne!(r.conf1(DEV, 4) & (1 << 19), 0, "status shows INTx");
    r.conf1_write(DEV, 5, &[0x04]);
    r.dev.lock().unwrap().config.set_intx(false);
    assert_eq!(*r.irq.intx.lock().unwrap(), vec![true, false]);
}

#[test]
fn shared_lines_stay_up_while_anyone_asserts() {
    let a = RecIrq::new();
    let lines = IntxLines::new(vec![a.clone()]);
    lines.set(0, true);
    lines.set(0, true);
    lines.set(0, false);
    assert!(a.is_high());
    lines.set(0, false);
    assert!(!a.is_high());
    lines.set(0, false);
    assert_eq!(a.history(), vec![true, false]);
}

#[test]
fn msi_routes_masks_and_pending() {
    let r = rig();
    let cap = {
        let d = r.dev.lock().unwrap();
        let mut c = [0u8; 1];
        d.config().read(0x34, &mut c);
        c[0]
    };
    // Program address/data, enable 4 vectors (MME=2), mask vector 1.
    r.ecam_write(DEV, u64::from(cap) + 4, 0xfee0_0000);
    r.ecam_write(DEV, u64::from(cap) + 8, 0);
    r.ecam_write(DEV, u64::from(cap) + 12, 0x40);
    r.ecam_write(DEV, u64::from(cap) + 16, 0b10);
    r.ecam_write(
        DEV,
        u64::from(cap),
        (r.ecam(DEV, u64::from(cap)) & 0xffff) | (0x21 << 16),
    );
    let routes = r.irq.routes.lock().unwrap().clone();
    let msg = |d| {
        Some(MsiMessage {
            address: 0xfee0_0000,
            data: d,
        })
    };
    assert!(routes.contains(&(0, msg(0x40))));
    assert!(routes.contains(&(2, msg(0x42))));
    assert!(!routes.iter().any(|(v, m)| *v == 1 && m.is_some()));
    let mut d = r.dev.lock().unwrap();
    assert!(d.config.raise_interrupt(0));
    assert!(d.config.raise_interrupt(1), "masked: pending");
    assert!(d.config.raise_interrupt(9), "out of range: dropped");
    assert_eq!(*r.irq.fired.lock().unwrap(), vec![0]);
    let mut p = [0u8; 4];
    d.config().read(u16::from(cap) + 20, &mut p);
    assert_eq!(u32::from_le_bytes(p), 0b10, "pending bit visible");
    drop(d);
    // Unmasking delivers the pending vector.
    r.ecam_write(DEV, u64::from(cap) + 16, 0);
    assert_eq!(*r.irq.fired.lock().unwrap(), vec![0, 1]);
    // INTx is not used while MSI is on.
    r.dev.lock().unwrap().config.set_intx(true);
    assert!(r.irq.intx.lock().unwrap().is_empty());
}

#[test]
fn msix_table_mask_and_pba() {
    let r = rig();
    let m32 = r.bar(1);
    let entry = |v: u64| m32 + 0x2000 + 16 * v;
    let cap = {
        let d = r.dev.lock().unwrap();
        let mut c = [0u8; 1];
        d.config().read(0x34, &mut c);
        let mut next = [0u8; 1];
        d.config().read(u16::from(c[0]) + 1, &mut next);
        next[0]
    };
    assert_eq!(r.ecam(DEV, u64::from(cap)) & 0xff, 0x11);
    assert_eq!(r.ecam(DEV, u64::from(cap)) >> 16 & 0x7ff, 3, "4 entries");
    // Entries start masked; program entry 2 and unmask it.
    let mut w = [0u8; 4];
    r.mmio.read(entry(2) + 12, &mut w);
    assert_eq!(u32::from_le_bytes(w), 1);
    r.mmio.write(entry(2), &0xfee0_1000u32.to_le_bytes());
    r.mmio.write(entry(2) + 4, &0u32.to_le_bytes());
    r.mmio.write(entry(2) + 8, &0x51u32.to_le_bytes());
    r.mmio.write(entry(2) + 12, &0u32.to_le_bytes());
    // Not enabled yet: no route. Enable with the function mask set.
    assert!(r.irq.routes.lock().unwrap().is_empty());
    r.ecam_write(DEV, u64::from(cap), 0xc000 << 16);
    assert!(r
        .irq
        .routes
        .lock()
        .unwrap()
        .iter()
        .all(|(_, m)| m.is_none()));
    r.dev.lock().unwrap().config.raise_interrupt(2);
    let mut q = [0u8; 8];
    r.mmio.read(m32 + 0x3000, &mut q);
    assert_eq!(u64::from_le_bytes(q), 1 << 2, "PBA bit 2");
    // Clearing the function mask routes entry 2 and delivers it.
    r.ecam_write(DEV, u64::from(cap), 0x8000 << 16);
    let want = MsiMessage {
        address: 0xfee0_1000,
        data: 0x51,
    };
    assert!(r.irq.routes.lock().unwrap().contains(&(2, Some(want))));
    assert_eq!(*r.irq.fired.lock().unwrap(), vec![2]);
    r.mmio.read(m32 + 0x3000, &mut q);
    assert_eq!(u64::from_le_bytes(q), 0);
    // The PBA is read-only; the table's reserved control bits too.
    r.mmio.write(m32 + 0x3000, &u64::MAX.to_le_bytes());
    r.mmio.write(entry(2) + 12, &u32::MAX.to_le_bytes());
    r.mmio.read(m32 + 0x3000, &mut q);
    assert_eq!(u64::from_le_bytes(q), 0);
    r.mmio.read(entry(2) + 12, &mut w);
    assert_eq!(u32::from_le_bytes(w), 1);
    // The device's own registers in the same BAR are unaffected.
    r.mmio.write(m32 + 3, &[0x33]);
    assert_eq!(r.dev.lock().unwrap().regs[3], 0x33);
}

/// A guest that writes every configuration byte of every function with
/// garbage, then garbage into every BAR it can find, must not crash the
/// root, make BARs overlap other ranges, or change read-only identity.
#[test]
fn garbage_everywhere_is_harmless() {
    let r = rig();
    // A neighbour range that garbage BARs must not steal.
    struct Fixed;
    impl crate::BusDevice for Fixed {
        fn read(&mut self, _: u64, _: u64, d: &mut [u8]) {
            d.fill(0x42);
        }
        fn write(&mut self, _: u64, _: u64, _: &[u8]) {}
    }
    r.mmio
        .insert(0xfed0_0000, 0x1000, Arc::new(Mutex::new(Fixed)))
        .unwrap();
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let fns = [
        PciAddress { slot: 0, func: 0 },
        PciAddress { slot: 31, func: 0 },
        DEV,
    ];
    for round in 0..40 {
        for a in fns {
            for reg in (0..4096u64).step_by(4) {
                let v = rnd() as u32;
                if reg < 0x100 && round % 2 == 0 {
                    r.conf1_write(a, reg as u8, &v.to_le_bytes());
                } else {
                    r.ecam_write(a, reg, v);
                }
            }
            // Aim some BARs at the neighbour on purpose.
            r.ecam_write(a, 0x14, 0xfed0_0000);
            r.ecam_write(a, 4, 0x7);
        }
        for i in 0..7 {
            let (addr, size) = {
                let d = r.dev.lock().unwrap();
                (d.config().bar_addr(i), d.config().bar_size(i))
            };
            for _ in 0..16 {
                let off = rnd() % size.max(1);
                let len = [1usize, 2, 4, 8][(rnd() % 4) as usize];
                let data = rnd().to_le_bytes();
                r.mmio.write(addr.wrapping_add(off), &data[..len]);
                r.pio.write(addr.wrapping_add(off), &data[..len]);
                let mut back = [0u8; 8];
                r.mmio.read(addr.wrapping_add(off), &mut back[..len]);
            }
        }
        // Random unaligned sizes at the data port and ECAM edges.
        for _ in 0..64 {
            let len = [1usize, 2, 4, 8][(rnd() % 4) as usize];
            let port = 0xcf8 + rnd() % 8;
            r.pio.write(port, &rnd().to_le_bytes()[..len]);
            let mut b = [0u8; 8];
            r.pio.read(port, &mut b[..len]);
            let ea = ECAM_BASE + (rnd() % super::ECAM_SIZE);
            r.mmio.write(ea, &rnd().to_le_bytes()[..len]);
            r.mmio.read(ea, &mut b[..len]);
        }
        let _ = r.dev.lock().unwrap().config.raise_interrupt(rnd() as u16);
    }
    let mut b = [0u8; 4];
    assert!(r.mmio.read(0xfed0_0000, &mut b));
    assert_eq!(b, [0x42; 4], "the neighbour still answers");
    assert_eq!(r.ecam(DEV, 0), 0x1234_1af4, "identity intact");
    assert_eq!(r.ecam(PciAddress { slot: 31, func: 0 }, 0), 0x7000_8086);
    drop(r.root.lock().unwrap());
}
