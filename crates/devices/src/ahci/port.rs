//! One AHCI port: its registers (AHCI 1.3.1 §3.3), the command-list
//! engine (PxCI/PxSACT scanned from PxCMD.CCS, one non-queued command at
//! a time, up to 32 NCQ commands), the received-FIS area, and the
//! completion of commands the backend finished.
//!
//! The command decoding lives in `ata` and `atapi`; this file owns the
//! state machine they drive.

use std::io;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::prdt::{set_prdbc, CmdHeader, PrdtCursor};
use super::{ata, atapi, Drive, Link};
use crate::blockif::{BlockBuffers, BlockOp, BlockRequest};

// Port register offsets.
pub const P_CLB: u64 = 0x00;
pub const P_CLBU: u64 = 0x04;
pub const P_FB: u64 = 0x08;
pub const P_FBU: u64 = 0x0c;
pub const P_IS: u64 = 0x10;
pub const P_IE: u64 = 0x14;
pub const P_CMD: u64 = 0x18;
pub const P_TFD: u64 = 0x20;
pub const P_SIG: u64 = 0x24;
pub const P_SSTS: u64 = 0x28;
pub const P_SCTL: u64 = 0x2c;
pub const P_SERR: u64 = 0x30;
pub const P_SACT: u64 = 0x34;
pub const P_CI: u64 = 0x38;
pub const P_SNTF: u64 = 0x3c;
pub const P_FBS: u64 = 0x40;

// PxCMD bits.
pub const CMD_ST: u32 = 1 << 0;
pub const CMD_SUD: u32 = 1 << 1;
pub const CMD_POD: u32 = 1 << 2;
pub const CMD_CLO: u32 = 1 << 3;
pub const CMD_FRE: u32 = 1 << 4;
const CMD_CCS_SHIFT: u32 = 8;
const CMD_CCS_MASK: u32 = 0x1f << CMD_CCS_SHIFT;
pub const CMD_FR: u32 = 1 << 14;
pub const CMD_CR: u32 = 1 << 15;
pub const CMD_CPS: u32 = 1 << 16;
const CMD_APSTE: u32 = 1 << 23;
const CMD_ATAPI: u32 = 1 << 24;
const CMD_DLAE: u32 = 1 << 25;
const CMD_ALPE: u32 = 1 << 26;
const CMD_ASP: u32 = 1 << 27;
const CMD_ICC_MASK: u32 = 0xf << 28;
/// What a guest may set in PxCMD.
const CMD_WRITABLE: u32 = CMD_ST
    | CMD_SUD
    | CMD_POD
    | CMD_CLO
    | CMD_FRE
    | CMD_APSTE
    | CMD_ATAPI
    | CMD_DLAE
    | CMD_ALPE
    | CMD_ASP
    | CMD_ICC_MASK;

// PxIS bits.
pub const IS_DHRS: u32 = 1 << 0;
pub const IS_PSS: u32 = 1 << 1;
pub const IS_SDBS: u32 = 1 << 3;
/// Overflow: the device sent more data than the PRDT describes.
pub const IS_OFS: u32 = 1 << 24;
pub const IS_TFES: u32 = 1 << 30;
/// PxIE bits that exist.
const IE_MASK: u32 = 0xfdc0_00ff;

// ATA status and error bits.
pub const S_ERR: u32 = 0x01;
pub const S_DRQ: u32 = 0x08;
pub const S_DSC: u32 = 0x10;
const S_DMA: u32 = 0x20;
pub const S_READY: u32 = 0x40;
pub const S_BUSY: u32 = 0x80;
pub const E_ABORT: u32 = 0x04;
pub const E_IDNF: u32 = 0x10;
/// A successful command's status.
pub const OK: u32 = S_READY | S_DSC;
/// Aborted command.
pub const ABORT: u32 = (E_ABORT << 8) | S_READY | S_ERR;

// FIS types.
pub const FIS_H2D: u8 = 0x27;
const FIS_D2H: u8 = 0x34;
const FIS_SDB: u8 = 0xa1;
const FIS_PIO_SETUP: u8 = 0x5f;

pub const SIG_ATA: u32 = 0x0000_0101;
pub const SIG_ATAPI: u32 = 0xeb14_0101;
/// PxSSTS of a present device: PHY online, Gen3, interface active.
const SSTS_ONLINE: u32 = 0x3 | 0x30 | 0x100;
const SCTL_DET_RESET: u32 = 1;
const SCTL_SPD_MASK: u32 = 0xf0;

/// Command FIS plus ATAPI command: what a command table starts with.
pub const CFIS_LEN: usize = 0x50;

/// What a slot's in-flight command still has to do.
pub(super) enum Op {
    /// Data moved through the backend, chunk by chunk.
    Rw {
        write: bool,
        /// Forced Unit Access: every chunk is stable before it completes.
        fua: bool,
        ncq: bool,
        atapi: bool,
        cur: PrdtCursor,
        /// Disk offset of the next chunk.
        offset: u64,
        /// Bytes still to transfer, and transferred so far.
        left: u64,
        done: u64,
        /// The chunk being transferred.
        chunk: u64,
    },
    Flush,
    /// Discards submitted together; the command completes with the last.
    Trim {
        outstanding: u32,
        failed: bool,
        ncq: bool,
    },
}

pub(super) struct Inflight {
    pub cfis: [u8; 20],
    pub op: Op,
    /// PxCLB when the command was fetched: its byte count goes back to
    /// that header even if the guest moves the list meanwhile.
    pub clb: u64,
}

/// Why a transfer's PRDT cannot take its next chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PrdtError {
    /// Unreadable, or entries too small to make a sector.
    Unusable,
    /// The table ends before the data does.
    Overflow,
}

/// A backend completion on its way back to the port.
pub(super) struct Completion {
    pub port: u8,
    pub slot: u8,
    pub gen: u64,
    pub result: io::Result<u64>,
}

pub(super) struct Port {
    pub num: u8,
    pub drive: Option<Drive>,
    clb: u32,
    clbu: u32,
    fb: u32,
    fbu: u32,
    pub is: u32,
    pub ie: u32,
    pub cmd: u32,
    pub tfd: u32,
    sig: u32,
    ssts: u32,
    sctl: u32,
    serr: u32,
    pub sact: u32,
    pub ci: u32,
    ccs: u8,
    /// Slots whose command went to the backend.
    pub pending: u32,
    /// An error was reported: no new command until the driver recovers.
    waitforclear: bool,
    /// Backend requests submitted and not completed, of any generation.
    outstanding: u32,
    /// A reset waits for `outstanding` to drain: requests of the old
    /// generation cannot be recalled and still move data, so the device
    /// stays busy and no new command can race them.
    resetting: bool,
    /// Commands aborted by an error still have requests at the backend:
    /// the port keeps running (PxCMD.CR) and issues nothing until they
    /// drained, so that no buffer is reused under their DMA.
    draining: bool,
    /// SRST seen in a control FIS (the reset happens when it clears).
    srst: bool,
    pub mult_sectors: u8,
    pub xfermode: u8,
    /// NCQ Command Error log (page 10h) contents.
    pub err_cfis: [u8; 20],
    pub sense_key: u8,
    pub asc: u8,
    /// A "new media" event is due (GET EVENT STATUS NOTIFICATION).
    pub media_event: bool,
    /// Bumped by resets: completions of older commands are dropped.
    pub gen: u64,
    inflight: Vec<Option<Inflight>>,
}

/// Everything a command handler reaches.
pub(super) struct Ctx<'a> {
    pub mem: &'a GuestMemoryMmap,
    pub link: &'a Link,
}

impl Port {
    pub fn new(num: u8, drive: Option<Drive>, mem: &GuestMemoryMmap) -> Port {
        let mut p = Port {
            num,
            drive,
            clb: 0,
            clbu: 0,
            fb: 0,
            fbu: 0,
            is: 0,
            ie: 0,
            cmd: 0,
            tfd: 0,
            sig: 0,
            ssts: 0,
            sctl: 0,
            serr: 0,
            sact: 0,
            ci: 0,
            ccs: 0,
            pending: 0,
            waitforclear: false,
            outstanding: 0,
            resetting: false,
            draining: false,
            srst: false,
            mult_sectors: 128,
            xfermode: 0,
            err_cfis: [0; 20],
            sense_key: 0,
            asc: 0,
            media_event: true,
            gen: 0,
            inflight: (0..32).map(|_| None).collect(),
        };
        p.hba_reset(mem);
        p
    }

    pub fn atapi(&self) -> bool {
        self.drive.as_ref().is_some_and(|d| d.atapi)
    }

    fn clb(&self) -> u64 {
        (u64::from(self.clbu) << 32) | u64::from(self.clb)
    }

    fn fb(&self) -> u64 {
        (u64::from(self.fbu) << 32) | u64::from(self.fb)
    }

    /// The HBA reset's part for this port (GHC.HR, function reset).
    pub fn hba_reset(&mut self, mem: &GuestMemoryMmap) {
        self.ie = 0;
        self.is = 0;
        self.cmd = CMD_SUD | CMD_POD;
        if self.drive.is_some() {
            self.cmd |= CMD_CPS;
        }
        self.sctl = 0;
        self.ci = 0;
        self.ccs = 0;
        self.port_reset(mem);
    }

    /// COMRESET: the device comes back with its signature.
    fn port_reset(&mut self, mem: &GuestMemoryMmap) {
        self.gen += 1;
        // The reset ended the commands in flight: they leave PxCI rather
        // than being issued again (SRST while the port runs).
        self.ci &= !self.pending;
        self.inflight.iter_mut().for_each(|s| *s = None);
        self.pending = 0;
        // The reset's own wait (`resetting`) covers aborted requests.
        self.draining = false;
        self.serr = 0;
        self.sact = 0;
        self.waitforclear = false;
        self.xfermode = 0x46; // UDMA6, as bhyve
        self.mult_sectors = 128;
        self.sense_key = 0;
        self.asc = 0;
        self.media_event = true;
        self.check_stopped();
        if self.drive.is_none() {
            self.ssts = 0;
            self.sig = 0xffff_ffff;
            self.tfd = 0x7f;
            return;
        }
        self.ssts = SSTS_ONLINE & !SCTL_SPD_MASK;
        self.ssts |= match self.sctl & SCTL_SPD_MASK {
            0 => 0x30,
            s => s,
        };
        if self.outstanding > 0 {
            // The link is up, the device not yet ready (no signature).
            self.resetting = true;
            self.sig = 0xffff_ffff;
            self.tfd = S_BUSY;
            return;
        }
        self.device_ready(mem);
    }

    /// The device comes back from a reset with its signature.
    fn device_ready(&mut self, mem: &GuestMemoryMmap) {
        self.resetting = false;
        self.tfd = (1 << 8) | S_DSC | S_DMA;
        if self.atapi() {
            self.sig = SIG_ATAPI;
        } else {
            self.sig = SIG_ATA;
            self.tfd |= S_READY;
        }
        let mut fis = [0u8; 20];
        fis[0] = FIS_D2H;
        fis[3] = 1;
        fis[4] = 1;
        if self.atapi() {
            fis[5] = 0x14;
            fis[6] = 0xeb;
        }
        fis[12] = 1;
        self.write_fis(mem, &fis);
    }

    pub fn read(&self, off: u64) -> u32 {
        match off {
            P_CLB => self.clb,
            P_CLBU => self.clbu,
            P_FB => self.fb,
            P_FBU => self.fbu,
            P_IS => self.is,
            P_IE => self.ie,
            P_CMD => self.cmd,
            P_TFD => self.tfd,
            P_SIG => self.sig,
            P_SSTS => self.ssts,
            P_SCTL => self.sctl,
            P_SERR => self.serr,
            P_SACT => self.sact,
            P_CI => self.ci,
            // No notification or FIS-based switching state to report.
            P_SNTF | P_FBS => 0,
            _ => 0,
        }
    }

    pub fn write(&mut self, ctx: &Ctx, off: u64, v: u32) {
        match off {
            // The command list is 1 KiB aligned, the FIS area 256 bytes.
            P_CLB => self.clb = v & !0x3ff,
            P_CLBU => self.clbu = v,
            P_FB => self.fb = v & !0xff,
            P_FBU => self.fbu = v,
            P_IS => self.is &= !v,
            P_IE => self.ie = v & IE_MASK,
            P_CMD => self.write_cmd(ctx, v),
            P_SCTL => {
                self.sctl = v & 0xfff;
                if self.cmd & CMD_ST == 0 && v & 0xf == SCTL_DET_RESET {
                    self.port_reset(ctx.mem);
                }
            }
            P_SERR => self.serr &= !v,
            P_SACT if self.cmd & CMD_ST != 0 => self.sact |= v,
            P_CI if self.cmd & CMD_ST != 0 => {
                self.ci |= v;
                self.handle_port(ctx);
            }
            _ => {}
        }
    }

    fn write_cmd(&mut self, ctx: &Ctx, v: u32) {
        self.cmd = (self.cmd & !CMD_WRITABLE) | (v & CMD_WRITABLE);
        if v & CMD_ST == 0 {
            // In-flight requests cannot be recalled: CR stays set until
            // they complete (check_stopped).
            self.check_stopped();
        } else {
            self.cmd |= CMD_CR;
        }
        if v & CMD_FRE != 0 {
            self.cmd |= CMD_FR;
        } else {
            self.cmd &= !CMD_FR;
        }
        if v & CMD_CLO != 0 && !self.resetting {
            self.tfd &= !(S_BUSY | S_DRQ);
            self.cmd &= !CMD_CLO;
        }
        self.cmd &= !CMD_ICC_MASK;
        self.handle_port(ctx);
    }

    fn check_stopped(&mut self) {
        if self.cmd & CMD_ST == 0 && self.pending == 0 && !self.draining {
            self.ccs = 0;
            self.cmd &= !(CMD_CR | CMD_CCS_MASK);
            self.ci = 0;
            self.sact = 0;
            self.waitforclear = false;
        }
    }

    /// Issues the commands the guest posted, from the current slot on,
    /// until the device is busy (a non-queued command in flight) or in
    /// error. Each pass handles a slot at most once: every handled slot
    /// leaves PxCI, goes pending, or stops the scan.
    pub fn handle_port(&mut self, ctx: &Ctx) {
        if self.cmd & CMD_ST == 0 || self.drive.is_none() {
            return;
        }
        for _ in 0..64 {
            if self.ci & !self.pending == 0
                || self.tfd & (S_BUSY | S_DRQ) != 0
                || self.waitforclear
                || self.resetting
                || self.draining
            {
                break;
            }
            let slot = self.ccs;
            if self.ci & !self.pending & (1 << slot) != 0 {
                self.cmd = (self.cmd & !CMD_CCS_MASK) | (u32::from(slot) << CMD_CCS_SHIFT);
                self.handle_slot(ctx, slot);
            }
            self.ccs = (self.ccs + 1) & 31;
        }
    }

    fn handle_slot(&mut self, ctx: &Ctx, slot: u8) {
        let mut cfis = [0u8; CFIS_LEN];
        let hdr = CmdHeader::read(ctx.mem, self.clb(), slot);
        let ok = hdr.is_some_and(|h| ctx.mem.read_slice(&mut cfis, GuestAddress(h.ctba)).is_ok());
        let hdr = match hdr {
            Some(h) if ok && cfis[0] == FIS_H2D => h,
            _ => {
                log::debug!("ahci port {}: slot {slot}: unreadable command", self.num);
                return self.d2h(ctx.mem, slot, &cfis, ABORT);
            }
        };
        if cfis[1] & 0x80 == 0 {
            // A control FIS: SRST set, then cleared, resets the device.
            if cfis[15] & (1 << 2) != 0 {
                self.srst = true;
            } else if self.srst {
                self.srst = false;
                self.port_reset(ctx.mem);
            }
            self.ci &= !(1 << slot);
            return;
        }
        self.tfd |= S_BUSY;
        if self.atapi() {
            atapi::command(self, ctx, slot, &hdr, &mut cfis);
        } else {
            ata::command(self, ctx, slot, &hdr, &mut cfis);
        }
    }

    // ---- FISes ------------------------------------------------------

    fn write_fis(&mut self, mem: &GuestMemoryMmap, fis: &[u8]) {
        // An error stops the port even when no FIS is received (FRE
        // off): otherwise the failed slot, still in PxCI and no longer
        // pending, would be issued again and again.
        let mut irq = 0;
        if u32::from(fis[2]) & S_ERR != 0 {
            self.waitforclear = true;
            irq |= IS_TFES;
        }
        if self.cmd & CMD_FRE != 0 {
            let (off, bit) = match fis[0] {
                FIS_D2H => (0x40, IS_DHRS),
                FIS_SDB => (0x58, IS_SDBS),
                _ => (0x20, IS_PSS),
            };
            if fis[1] & 0x40 != 0 {
                irq |= bit;
            }
            if let Some(a) = self.fb().checked_add(off) {
                let _ = mem.write_slice(fis, GuestAddress(a));
            }
        }
        self.is |= irq;
    }

    pub fn pio_setup(&mut self, mem: &GuestMemoryMmap) {
        let mut fis = [0u8; 20];
        fis[0] = FIS_PIO_SETUP;
        self.write_fis(mem, &fis);
    }

    /// Ends a non-queued command (or any command in error) with a
    /// Register D2H FIS.
    pub fn d2h(&mut self, mem: &GuestMemoryMmap, slot: u8, cfis: &[u8], tfd: u32) {
        let mut fis = [0u8; 20];
        fis[0] = FIS_D2H;
        fis[1] = 0x40;
        fis[2] = tfd as u8;
        fis[3] = (tfd >> 8) as u8;
        fis[4..14].copy_from_slice(&cfis[4..14]);
        if tfd & S_ERR != 0 {
            self.abort_outstanding(slot);
            // NQ: the error is not a queued command's.
            self.err_cfis = [0; 20];
            self.err_cfis[0] = 0x80;
            self.err_cfis[2] = tfd as u8;
            self.err_cfis[3] = (tfd >> 8) as u8;
            self.err_cfis[4..20].copy_from_slice(&cfis[4..20]);
        } else {
            self.ci &= !(1 << slot);
        }
        self.tfd = tfd;
        self.write_fis(mem, &fis);
    }

    /// An NCQ command was accepted: BSY clears, the slot leaves PxCI,
    /// no interrupt.
    pub fn d2h_ncq(&mut self, mem: &GuestMemoryMmap, slot: u8) {
        self.tfd = OK;
        let mut fis = [0u8; 20];
        fis[0] = FIS_D2H;
        fis[2] = self.tfd as u8;
        self.ci &= !(1 << slot);
        self.write_fis(mem, &fis);
    }

    /// Ends an NCQ command with a Set Device Bits FIS. A failed one
    /// stays in PxSACT (drivers take a cleared bit for success) with the
    /// commands the error aborted.
    pub fn sdb(&mut self, mem: &GuestMemoryMmap, slot: u8, cfis: &[u8], tfd: u32) {
        let error = (tfd >> 8) as u8;
        let status = tfd & 0x77;
        let mut fis = [0u8; 8];
        fis[0] = FIS_SDB;
        fis[1] = 0x40;
        fis[2] = status as u8;
        fis[3] = error;
        if status & S_ERR != 0 {
            self.abort_outstanding(slot);
            self.err_cfis = [0; 20];
            self.err_cfis[0] = slot;
            self.err_cfis[2] = status as u8;
            self.err_cfis[3] = error;
            self.err_cfis[4..20].copy_from_slice(&cfis[4..20]);
        } else {
            fis[4..8].copy_from_slice(&(1u32 << slot).to_le_bytes());
            self.sact &= !(1 << slot);
        }
        self.tfd = (u32::from(error) << 8) | (self.tfd & !0xff77) | status;
        self.write_fis(mem, &fis);
    }

    /// An error ends every other command the device holds (ATA8-ACS: a
    /// failed NCQ command, or a non-queued one issued among them, aborts
    /// all queued commands). They are not completed: their PxSACT bits
    /// stay until software stops the port (AHCI 1.3.1 §6.2.2.1). Their
    /// requests at the backend cannot be recalled: a new generation drops
    /// the completions, and `draining` waits for the data to have moved.
    fn abort_outstanding(&mut self, failed: u8) {
        let aborted = self.pending & !(1u32 << (failed & 31));
        if aborted == 0 {
            return;
        }
        self.gen += 1;
        for (i, s) in self.inflight.iter_mut().enumerate() {
            if aborted & (1 << i) != 0 {
                *s = None;
            }
        }
        self.pending &= !aborted;
        self.draining = self.outstanding > 0;
    }
    /// Whether queued (NCQ) commands are outstanding.
    pub fn queued_outstanding(&self) -> bool {
        self.inflight.iter().flatten().any(|i| match i.op {
            Op::Rw { ncq, .. } | Op::Trim { ncq, .. } => ncq,
            Op::Flush => false,
        })
    }

    /// A command answered from memory: copies `data` into its PRDT and
    /// completes it.
    pub fn reply(&mut self, ctx: &Ctx, slot: u8, hdr: &CmdHeader, cfis: &[u8], data: &[u8]) {
        let n = super::prdt::write_prdt(ctx.mem, hdr, data);
        set_prdbc(ctx.mem, self.clb(), slot, n);
        self.d2h(ctx.mem, slot, cfis, OK);
    }

    // ---- backend requests ---------------------------------------------

    /// Starts `op` for `slot`: the first chunk (or discards) go to the
    /// backend. `reqs` are the requests to submit now.
    pub fn start(&mut self, ctx: &Ctx, slot: u8, cfis: &[u8], op: Op, reqs: Vec<BlockRequest>) {
        let mut c = [0u8; 20];
        c.copy_from_slice(&cfis[..20]);
        self.pending |= 1 << slot;
        self.inflight[usize::from(slot)] = Some(Inflight {
            cfis: c,
            op,
            clb: self.clb(),
        });
        self.submit_all(ctx, slot, reqs);
    }

    fn submit_all(&mut self, ctx: &Ctx, slot: u8, reqs: Vec<BlockRequest>) {
        let Some(d) = &self.drive else { return };
        let n = u32::try_from(reqs.len()).unwrap_or(u32::MAX);
        self.outstanding = self.outstanding.saturating_add(n);
        for r in reqs {
            ctx.link.submit(&d.backend, r, self.num, slot, self.gen);
        }
    }

    /// The next chunk of a transfer of `left` bytes. A table that ends
    /// before the data is an overflow, found at its last chunk, before
    /// that chunk moves anything.
    pub fn chunk_request(
        mem: &GuestMemoryMmap,
        write: bool,
        fua: bool,
        cur: &mut PrdtCursor,
        offset: u64,
        left: u64,
        unit: u64,
    ) -> Result<BlockRequest, PrdtError> {
        if cur.exhausted() {
            return Err(PrdtError::Overflow);
        }
        let segs = cur.next_chunk(mem, left, unit).ok_or(PrdtError::Unusable)?;
        let len: u64 = segs.iter().map(|s| s.1).sum();
        if segs.is_empty() {
            return Err(PrdtError::Unusable);
        }
        if cur.exhausted() && len < left {
            return Err(PrdtError::Overflow);
        }
        Ok(BlockRequest {
            op: if write { BlockOp::Write } else { BlockOp::Read },
            offset,
            len: 0,
            buffers: BlockBuffers::Guest {
                mem: mem.clone(),
                segs,
            },
            fua,
        })
    }

    /// A transfer's PRDT failed it: an overflow of a read is reported
    /// (PxIS.OFS; AHCI has no such bit for the other direction).
    pub fn prdt_error(&mut self, e: PrdtError, write: bool) {
        if e == PrdtError::Overflow && !write {
            self.is |= IS_OFS;
        }
    }

    fn unit(&self) -> u64 {
        self.drive.as_ref().map_or(512, |d| d.unit())
    }

    /// A backend request of `slot` finished.
    pub fn complete(&mut self, ctx: &Ctx, c: Completion) {
        let slot = c.slot;
        self.outstanding = self.outstanding.saturating_sub(1);
        if c.gen != self.gen || slot >= 32 {
            if self.outstanding == 0 {
                if self.resetting {
                    self.device_ready(ctx.mem);
                } else if self.draining {
                    self.draining = false;
                    self.check_stopped();
                }
                self.handle_port(ctx);
            }
            return;
        }
        let Some(mut inf) = self.inflight[usize::from(slot)].take() else {
            return;
        };
        let ok = match &c.result {
            Ok(_) => true,
            Err(e) => {
                log::debug!("ahci port {}: slot {slot}: {e}", self.num);
                false
            }
        };
        let unit = self.unit();
        let (ncq, atapi, ok) = match &mut inf.op {
            Op::Rw {
                write,
                fua,
                ncq,
                atapi,
                cur,
                offset,
                left,
                done,
                chunk,
            } => {
                let mut ok = ok;
                if ok {
                    *done += *chunk;
                    *offset += *chunk;
                    *left -= *chunk;
                    if *left > 0 {
                        match Self::chunk_request(ctx.mem, *write, *fua, cur, *offset, *left, unit)
                        {
                            Ok(r) => {
                                *chunk = r.buffers.len();
                                self.inflight[usize::from(slot)] = Some(inf);
                                self.submit_all(ctx, slot, vec![r]);
                                return;
                            }
                            Err(e) => {
                                self.prdt_error(e, *write);
                                ok = false;
                            }
                        }
                    }
                    set_prdbc(ctx.mem, inf.clb, slot, *done as u32);
                }
                (*ncq, *atapi, ok)
            }
            Op::Flush => (false, false, ok),
            Op::Trim {
                outstanding,
                failed,
                ncq,
            } => {
                *failed |= !ok;
                *outstanding = outstanding.saturating_sub(1);
                if *outstanding > 0 {
                    self.inflight[usize::from(slot)] = Some(inf);
                    return;
                }
                (*ncq, false, !*failed)
            }
        };
        let cfis = inf.cfis;
        if atapi {
            atapi::finish_read(self, ctx, slot, &cfis, ok);
        } else {
            let tfd = if ok { OK } else { ABORT };
            if ncq {
                self.sdb(ctx.mem, slot, &cfis, tfd);
            } else {
                self.d2h(ctx.mem, slot, &cfis, tfd);
            }
        }
        self.pending &= !(1 << slot);
        self.check_stopped();
        self.handle_port(ctx);
    }
}
