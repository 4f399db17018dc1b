//! A small NVMe host driver over fake guest memory, and a RAM disk that
//! can hold requests, for the controller tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::blockif::BlockInfo;
use crate::nvme::regs::{self, CC, CSTS};
use crate::nvme::spec::{admin, Command, Status};
use crate::nvme::{NvmeParams, NvmePci, MSIX_BAR, REG_BAR};
use crate::pci::{MsiMessage, PciDevice, PciInterrupts};
use crate::ramdisk::{sector_bytes, Completion, Options, RamDisk};

pub(super) const MEM: usize = 8 << 20;
pub(super) const ASQ: u64 = 0x10000;
pub(super) const ACQ: u64 = 0x20000;
pub(super) const DATA: u64 = 0x400000;

/// A RAM disk of [`sector_bytes`] that completes at once, or holds
/// requests until released; it flags requests no controller should make
/// (checked when the [`Drv`] goes).
pub(super) fn ram_disk(size: usize, can_delete: bool, read_only: bool) -> Arc<RamDisk> {
    let info = BlockInfo {
        read_only,
        can_delete,
        ..RamDisk::info_rw()
    };
    let strict = Options {
        completion: Completion::Inline,
        strict: true,
    };
    RamDisk::new(sector_bytes(size), info, strict).unwrap()
}

#[derive(Default)]
pub(super) struct Irqs {
    pub(super) fired: Mutex<Vec<u16>>,
    pub(super) intx: AtomicBool,
}

impl Irqs {
    /// Whether every vector in `want` fired within a few seconds: the
    /// device posts a completion before it signals it, so a driver that
    /// polls the CQ can see the entry first.
    pub(super) fn wait_fired(&self, want: &[u16]) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if want.iter().all(|v| self.fired.lock().unwrap().contains(v)) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Irqs {
    /// Whether the INTx line reaches `level` within a few seconds (the
    /// same ordering as [`Irqs::wait_fired`]).
    pub(super) fn wait_intx(&self, level: bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.intx.load(Ordering::SeqCst) != level {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        true
    }
}

impl PciInterrupts for Irqs {
    fn set_intx(&self, asserted: bool) {
        self.intx.store(asserted, Ordering::SeqCst);
    }
    fn route_msi(&self, _: u16, _: Option<MsiMessage>) {}
    fn fire_msi(&self, v: u16) {
        self.fired.lock().unwrap().push(v);
    }
}

pub(super) struct Queue {
    pub(super) base: u64,
    pub(super) size: u32,
    pub(super) idx: u32,
    pub(super) phase: bool,
}

pub(super) struct Drv {
    pub(super) f: Arc<Mutex<NvmePci>>,
    pub(super) mem: GuestMemoryMmap,
    pub(super) disk: Arc<RamDisk>,
    pub(super) irqs: Arc<Irqs>,
    pub(super) sqs: Vec<Option<Queue>>,
    pub(super) cqs: Vec<Option<Queue>>,
    pub(super) cid: u16,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Cqe {
    pub(super) dw0: u32,
    pub(super) sqhd: u16,
    pub(super) sqid: u16,
    pub(super) cid: u16,
    pub(super) status: Status,
}

impl Drop for Drv {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let v = self.disk.take_violation();
            assert!(v.is_none(), "the controller asked the disk for {v:?}");
        }
    }
}

impl Drv {
    pub(super) fn new(params: NvmeParams, disk: Arc<RamDisk>) -> Drv {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
        let f = NvmePci::new_shared(params, disk.clone(), mem.clone()).unwrap();
        let irqs = Arc::new(Irqs::default());
        f.lock().unwrap().config_mut().set_interrupts(irqs.clone());
        Drv {
            f,
            mem,
            disk,
            irqs,
            sqs: (0..17).map(|_| None).collect(),
            cqs: (0..17).map(|_| None).collect(),
            cid: 0,
        }
    }

    pub(super) fn default() -> Drv {
        Drv::new(
            NvmeParams::bhyve_defaults(4, 0),
            ram_disk(1 << 20, true, false),
        )
    }

    pub(super) fn r32(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.f.lock().unwrap().bar_read(REG_BAR, off, &mut b);
        u32::from_le_bytes(b)
    }

    pub(super) fn w32(&self, off: u64, v: u32) {
        self.f
            .lock()
            .unwrap()
            .bar_write(REG_BAR, off, &v.to_le_bytes());
    }

    /// Where the MSI-X capability is.
    fn msix_cap(&self) -> u16 {
        let f = self.f.lock().unwrap();
        let c = f.config();
        let mut b = [0u8; 2];
        c.read(0x34, &mut b[..1]);
        let mut at = u16::from(b[0]);
        while at != 0 {
            c.read(at, &mut b);
            if b[0] == 0x11 {
                break;
            }
            at = u16::from(b[1]);
        }
        assert_ne!(at, 0, "MSI-X capability");
        at
    }

    pub(super) fn disable_msix(&self) {
        let at = self.msix_cap();
        let mut f = self.f.lock().unwrap();
        f.config_mut().write(at + 2, &0u16.to_le_bytes());
    }

    pub(super) fn enable_msix(&self) {
        let at = self.msix_cap();
        let mut f = self.f.lock().unwrap();
        let c = f.config_mut();
        c.write(at + 2, &0x8000u16.to_le_bytes());
        for v in 0..17u64 {
            c.msix_write(MSIX_BAR, v * 16, &0xfee0_0000u32.to_le_bytes());
            c.msix_write(MSIX_BAR, v * 16 + 8, &(0x40 + v as u32).to_le_bytes());
            c.msix_write(MSIX_BAR, v * 16 + 12, &0u32.to_le_bytes());
        }
    }

    pub(super) fn enable(&mut self) {
        self.w32(regs::AQA, 31 | (31 << 16));
        self.w32(regs::ASQ, ASQ as u32);
        self.w32(regs::ASQ + 4, 0);
        self.w32(regs::ACQ, ACQ as u32);
        self.w32(regs::ACQ + 4, 0);
        self.w32(CC, 1 | (6 << 16) | (4 << 20));
        assert_eq!(self.r32(CSTS) & 1, 1, "ready");
        self.sqs[0] = Some(Queue {
            base: ASQ,
            size: 32,
            idx: 0,
            phase: true,
        });
        self.cqs[0] = Some(Queue {
            base: ACQ,
            size: 32,
            idx: 0,
            phase: true,
        });
    }

    /// Places a command in SQ `q` without ringing.
    pub(super) fn put(&mut self, q: usize, mut cmd: Command) -> u16 {
        self.cid = self.cid.wrapping_add(1);
        cmd.cid = self.cid;
        let sq = self.sqs[q].as_mut().unwrap();
        self.mem
            .write_slice(
                &cmd.to_bytes(),
                GuestAddress(sq.base + u64::from(sq.idx) * 64),
            )
            .unwrap();
        sq.idx = (sq.idx + 1) % sq.size;
        cmd.cid
    }

    pub(super) fn ring(&self, q: usize) {
        let tail = self.sqs[q].as_ref().unwrap().idx;
        self.w32(regs::DOORBELLS + 8 * q as u64, tail);
    }

    /// The next completion of CQ `q`, if one arrives within a second.
    pub(super) fn try_reap(&mut self, q: usize, wait: Duration) -> Option<Cqe> {
        let cq = self.cqs[q].as_mut().unwrap();
        let at = GuestAddress(cq.base + u64::from(cq.idx) * 16);
        let deadline = Instant::now() + wait;
        loop {
            let mut b = [0u8; 16];
            self.mem.read_slice(&mut b, at).unwrap();
            let dw3 = u32::from_le_bytes(b[12..16].try_into().unwrap());
            if ((dw3 >> 16) & 1 == 1) == cq.phase {
                cq.idx += 1;
                if cq.idx == cq.size {
                    cq.idx = 0;
                    cq.phase = !cq.phase;
                }
                return Some(Cqe {
                    dw0: u32::from_le_bytes(b[0..4].try_into().unwrap()),
                    sqhd: u16::from_le_bytes([b[8], b[9]]),
                    sqid: u16::from_le_bytes([b[10], b[11]]),
                    cid: dw3 as u16,
                    status: Status((dw3 >> 17) as u16),
                });
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub(super) fn reap(&mut self, q: usize) -> Cqe {
        self.try_reap(q, Duration::from_secs(5))
            .expect("a completion")
    }

    pub(super) fn consume(&self, q: usize) {
        let head = self.cqs[q].as_ref().unwrap().idx;
        self.w32(regs::DOORBELLS + 8 * q as u64 + 4, head);
    }

    pub(super) fn admin(&mut self, cmd: Command) -> Cqe {
        let cid = self.put(0, cmd);
        self.ring(0);
        let c = self.reap(0);
        self.consume(0);
        assert_eq!(c.cid, cid);
        c
    }

    pub(super) fn create_pair(&mut self, qid: u16, size: u32, vector: u16) {
        let cq = 0x100000 + u64::from(qid) * 0x10000;
        let sq = cq + 0x8000;
        let c = self.admin(Command {
            opc: admin::CREATE_CQ,
            prp1: cq,
            cdw10: u32::from(qid) | ((size - 1) << 16),
            cdw11: 1 | 2 | (u32::from(vector) << 16),
            ..Default::default()
        });
        assert_eq!(c.status, Status::SUCCESS);
        let c = self.admin(Command {
            opc: admin::CREATE_SQ,
            prp1: sq,
            cdw10: u32::from(qid) | ((size - 1) << 16),
            cdw11: 1 | (u32::from(qid) << 16),
            ..Default::default()
        });
        assert_eq!(c.status, Status::SUCCESS);
        self.cqs[qid as usize] = Some(Queue {
            base: cq,
            size,
            idx: 0,
            phase: true,
        });
        self.sqs[qid as usize] = Some(Queue {
            base: sq,
            size,
            idx: 0,
            phase: true,
        });
    }

    pub(super) fn io(&mut self, q: usize, cmd: Command) -> Cqe {
        let cid = self.put(q, Command { nsid: 1, ..cmd });
        self.ring(q);
        let c = self.reap(q);
        self.consume(q);
        assert_eq!(c.cid, cid);
        c
    }

    pub(super) fn rw(
        &mut self,
        q: usize,
        opc: u8,
        slba: u64,
        nlb: u32,
        prp1: u64,
        prp2: u64,
    ) -> Status {
        self.io(
            q,
            Command {
                opc,
                prp1,
                prp2,
                cdw10: slba as u32,
                cdw11: (slba >> 32) as u32,
                cdw12: nlb - 1,
                ..Default::default()
            },
        )
        .status
    }

    pub(super) fn identify(&mut self, cns: u32, nsid: u32) -> (Status, Vec<u8>) {
        let c = self.admin(Command {
            opc: admin::IDENTIFY,
            nsid,
            prp1: DATA,
            cdw10: cns,
            ..Default::default()
        });
        let mut b = vec![0u8; 4096];
        self.mem.read_slice(&mut b, GuestAddress(DATA)).unwrap();
        (c.status, b)
    }
}
