//! The controller registers at the start of BAR 0 (NVMe 1.4 §3.1): what
//! the guest reads, and which writes change the controller's state.
//! Doorbells (from 0x1000) are handled by the controller, not here.

/// Register offsets.
pub const CAP: u64 = 0x00;
pub const VS: u64 = 0x08;
pub const INTMS: u64 = 0x0c;
pub const INTMC: u64 = 0x10;
pub const CC: u64 = 0x14;
pub const CSTS: u64 = 0x1c;
pub const NSSR: u64 = 0x20;
pub const AQA: u64 = 0x24;
pub const ASQ: u64 = 0x28;
pub const ACQ: u64 = 0x30;
/// Where the doorbells start (CAP.DSTRD = 0: 4 bytes apart, SQ tail
/// then CQ head for each queue).
pub const DOORBELLS: u64 = 0x1000;
/// Bytes of the register block that read as registers.
const REG_BYTES: usize = 0x40;

pub const CC_EN: u32 = 1;
pub const CSTS_RDY: u32 = 1;
pub const CSTS_CFS: u32 = 1 << 1;
pub const SHST_SHIFT: u32 = 2;
pub const SHST_MASK: u32 = 3 << SHST_SHIFT;
pub const SHST_PROCESSING: u32 = 1;
pub const SHST_COMPLETE: u32 = 2;

/// NVMe 1.4.
pub const VERSION: u32 = 0x0001_0400;

fn cc_css(cc: u32) -> u32 {
    (cc >> 4) & 7
}
fn cc_mps(cc: u32) -> u32 {
    (cc >> 7) & 0xf
}
pub fn cc_shn(cc: u32) -> u32 {
    (cc >> 14) & 3
}
pub fn cc_iosqes(cc: u32) -> u32 {
    (cc >> 16) & 0xf
}
pub fn cc_iocqes(cc: u32) -> u32 {
    (cc >> 20) & 0xf
}

/// What a register write asks of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegEffect {
    None,
    /// CC.EN 0 → 1 with a valid configuration: the admin queues start
    /// (CSTS.RDY is set by the controller).
    Enable,
    /// CC.EN 1 → 0: controller reset.
    Disable,
    /// CC.SHN set: flush, then report SHST complete.
    Shutdown,
}

#[derive(Debug, Clone)]
pub struct Regs {
    pub cap: u64,
    pub cc: u32,
    pub csts: u32,
    pub aqa: u32,
    pub asq: u64,
    pub acq: u64,
    pub intms: u32,
}

impl Regs {
    /// `mqes`: entries per queue the controller takes (qsz, 2–65536).
    pub fn new(mqes: u32) -> Self {
        let mqes = u64::from(mqes.clamp(2, 65536) - 1);
        // Contiguous queues required, 30 s ready timeout (units of
        // 500 ms), doorbell stride 4, NVM command set, 4 KiB pages only.
        let cap = mqes | (1 << 16) | (60 << 24) | (1 << 37);
        Regs {
            cap,
            cc: 0,
            csts: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
            intms: 0,
        }
    }

    /// Back to the power-on values (CAP is fixed).
    pub fn reset(&mut self) {
        *self = Regs {
            cap: self.cap,
            ..Regs::new(0)
        };
    }

    /// Admin submission and completion queue sizes (entries).
    pub fn admin_sizes(&self) -> (u32, u32) {
        ((self.aqa & 0xfff) + 1, ((self.aqa >> 16) & 0xfff) + 1)
    }

    /// Entries a queue may have (CAP.MQES + 1).
    pub fn admin_mqes(&self) -> u32 {
        (self.cap & 0xffff) as u32 + 1
    }

    pub fn enabled(&self) -> bool {
        self.cc & CC_EN != 0
    }

    pub fn ready(&self) -> bool {
        self.csts & CSTS_RDY != 0
    }

    fn image(&self) -> [u8; REG_BYTES] {
        let mut b = [0u8; REG_BYTES];
        let mut put = |at: u64, v: &[u8]| b[at as usize..at as usize + v.len()].copy_from_slice(v);
        put(CAP, &self.cap.to_le_bytes());
        put(VS, &VERSION.to_le_bytes());
        put(INTMS, &self.intms.to_le_bytes());
        put(INTMC, &self.intms.to_le_bytes());
        put(CC, &self.cc.to_le_bytes());
        put(CSTS, &self.csts.to_le_bytes());
        put(AQA, &self.aqa.to_le_bytes());
        put(ASQ, &self.asq.to_le_bytes());
        put(ACQ, &self.acq.to_le_bytes());
        b
    }

    /// A read of any size and alignment below the doorbells.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        let img = self.image();
        for (i, d) in data.iter_mut().enumerate() {
            *d = usize::try_from(offset + i as u64)
                .ok()
                .and_then(|o| img.get(o).copied())
                .unwrap_or(0);
        }
    }

    /// A 32-bit register write (8-byte writes arrive as two of these;
    /// other sizes are ignored by the caller, as bhyve does).
    pub fn write32(&mut self, offset: u64, v: u32) -> RegEffect {
        match offset {
            INTMS => self.intms |= v,
            INTMC => self.intms &= !v,
            CC => return self.write_cc(v),
            AQA => self.aqa = v & 0x0fff_0fff,
            ASQ => self.asq = (self.asq & !0xffff_ffff) | u64::from(v & !0xfff),
            0x2c => self.asq = (self.asq & 0xffff_ffff) | (u64::from(v) << 32),
            ACQ => self.acq = (self.acq & !0xffff_ffff) | u64::from(v & !0xfff),
            0x34 => self.acq = (self.acq & 0xffff_ffff) | (u64::from(v) << 32),
            // CAP, VS, CSTS are read-only; NSSR is not supported.
            _ => {}
        }
        RegEffect::None
    }

    fn write_cc(&mut self, v: u32) -> RegEffect {
        let was_en = self.enabled();
        let old_shn = cc_shn(self.cc);
        // CSS, MPS and AMS only change while disabled.
        let fixed = if was_en { 0x0000_3ff0 } else { 0 };
        self.cc = (self.cc & fixed) | (v & !fixed & 0x00ff_fff1);
        let en = v & CC_EN != 0;
        match (was_en, en) {
            (false, true) => {
                let (sq, cq) = self.admin_sizes();
                let ok = cc_css(self.cc) == 0
                    && cc_mps(self.cc) == 0
                    && sq >= 2
                    && cq >= 2
                    && self.asq != 0
                    && self.acq != 0;
                if !ok {
                    // Controller Fatal Status: the driver resets us.
                    self.csts |= CSTS_CFS;
                    return RegEffect::None;
                }
                RegEffect::Enable
            }
            (true, false) => RegEffect::Disable,
            (true, true) if cc_shn(self.cc) != 0 && old_shn == 0 => {
                self.csts = (self.csts & !SHST_MASK) | (SHST_PROCESSING << SHST_SHIFT);
                RegEffect::Shutdown
            }
            _ => RegEffect::None,
        }
    }

    pub fn set_shst(&mut self, shst: u32) {
        self.csts = (self.csts & !SHST_MASK) | (shst << SHST_SHIFT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r32(r: &Regs, off: u64) -> u32 {
        let mut b = [0u8; 4];
        r.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn capabilities_and_version() {
        let r = Regs::new(2048);
        let mut b = [0u8; 8];
        r.read(CAP, &mut b);
        let cap = u64::from_le_bytes(b);
        assert_eq!(cap & 0xffff, 2047, "MQES");
        assert_eq!((cap >> 16) & 1, 1, "CQR");
        assert_eq!((cap >> 24) & 0xff, 60, "TO");
        assert_eq!((cap >> 32) & 0xf, 0, "DSTRD");
        assert_eq!((cap >> 37) & 0xff, 1, "CSS: NVM");
        assert_eq!((cap >> 48) & 0xff, 0, "MPSMIN/MPSMAX");
        assert_eq!(r32(&r, VS), 0x10400);
        // Odd sizes and offsets read the same bytes.
        let mut one = [0u8; 1];
        r.read(VS + 1, &mut one);
        assert_eq!(one[0], 0x04);
        r.read(0x3ff, &mut one);
        assert_eq!(one[0], 0);
    }

    #[test]
    fn enable_needs_a_valid_configuration() {
        let mut r = Regs::new(64);
        assert_eq!(r.write32(CC, 1), RegEffect::None, "no admin queues");
        assert_ne!(r32(&r, CSTS) & CSTS_CFS, 0);
        r.reset();
        assert_eq!(r32(&r, CSTS), 0);
        r.write32(AQA, 0x001f_001f);
        r.write32(ASQ, 0x1234_5678);
        r.write32(ASQ + 4, 1);
        r.write32(ACQ, 0x2000);
        assert_eq!(r.asq, 0x1_1234_5000, "low 12 bits are reserved");
        assert_eq!(r.admin_sizes(), (32, 32));
        // 8 KiB pages are beyond MPSMAX.
        assert_eq!(r.write32(CC, 1 | (1 << 7)), RegEffect::None);
        r.reset();
        r.write32(AQA, 0x001f_001f);
        r.write32(ASQ, 0x1000);
        r.write32(ACQ, 0x2000);
        assert_eq!(r.write32(CC, 1 | (6 << 16) | (4 << 20)), RegEffect::Enable);
        assert_eq!(cc_iosqes(r.cc), 6);
        // CSS cannot change while enabled; shutdown is reported once.
        assert_eq!(
            r.write32(CC, r.cc | (1 << 14) | (7 << 4)),
            RegEffect::Shutdown
        );
        assert_eq!((r.cc >> 4) & 7, 0);
        assert_eq!((r32(&r, CSTS) >> 2) & 3, SHST_PROCESSING);
        assert_eq!(r.write32(CC, r.cc), RegEffect::None);
        assert_eq!(r.write32(CC, 0), RegEffect::Disable);
    }

    #[test]
    fn interrupt_mask_set_and_clear() {
        let mut r = Regs::new(64);
        r.write32(INTMS, 0b101);
        assert_eq!(r32(&r, INTMS), 0b101);
        r.write32(INTMC, 0b001);
        assert_eq!(r32(&r, INTMC), 0b100);
        // Read-only registers ignore writes.
        r.write32(VS, 0);
        r.write32(CAP, 0);
        assert_eq!(r32(&r, VS), VERSION);
        assert_eq!(r32(&r, CAP) & 0xffff, 63);
    }
}
