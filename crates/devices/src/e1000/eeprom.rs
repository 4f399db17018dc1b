//! The 64-word Microwire EEPROM behind EECD (bit-banged by drivers of
//! the 8254x, Linux's and FreeBSD's) and the EERD shortcut (iPXE's).
//!
//! Contents as bhyve's `e82545_init_eeprom`: the MAC in words 0–2, the
//! PCI IDs, and word 0x3f making the sum of all words 0xBABA, the value
//! drivers check before trusting the MAC.

use super::regs::*;

pub const WORDS: usize = 64;
const CHECKSUM_WORD: usize = 0x3f;
const NVM_SUM: u16 = 0xbaba;
const SUB_DEV_ID: usize = 0x0b;
const SUB_VEN_ID: usize = 0x0c;
const DEV_ID: usize = 0x0d;
const VEN_ID: usize = 0x0e;

/// Microwire framing: 3 opcode bits then 6 address bits, 16 data bits.
const OPADDR_BITS: u8 = 9;
const DATA_BITS: u8 = 16;
const ADDR_MASK: u16 = 0x3f;
const OP_MASK: u16 = 0x7 << 6;
const OP_READ: u16 = 0x6 << 6;
const OP_WRITE: u16 = 0x5 << 6;
const OP_EWEN: u16 = 0x4 << 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    OpAddr,
    DataIn,
    DataOut,
}

pub struct Eeprom {
    data: [u16; WORDS],
    /// EECD as the guest sees it (SK, CS, DI, REQ/GNT, DO, PRES, FWE).
    eecd: u32,
    mode: Mode,
    bits: u8,
    opaddr: u16,
    shift: u16,
}

impl Eeprom {
    pub fn new(mac: [u8; 6], vendor: u16, device: u16, subdevice: u16) -> Self {
        let mut data = [0u16; WORDS];
        for i in 0..3 {
            data[i] = u16::from_le_bytes([mac[2 * i], mac[2 * i + 1]]);
        }
        data[SUB_DEV_ID] = subdevice;
        data[SUB_VEN_ID] = vendor;
        data[DEV_ID] = device;
        data[VEN_ID] = vendor;
        let sum = data[..CHECKSUM_WORD]
            .iter()
            .fold(0u16, |a, w| a.wrapping_add(*w));
        data[CHECKSUM_WORD] = NVM_SUM.wrapping_sub(sum);
        let mut e = Eeprom {
            data,
            eecd: 0,
            mode: Mode::OpAddr,
            bits: OPADDR_BITS,
            opaddr: 0,
            shift: 0,
        };
        e.reset();
        e
    }

    /// Back to opcode mode with the EEPROM present and writable (bhyve's
    /// reset state). Words the guest wrote stay, as in a real EEPROM.
    pub fn reset(&mut self) {
        self.eecd = EECD_PRES | EECD_FWE_EN;
        self.opcode_mode();
    }

    fn opcode_mode(&mut self) {
        self.mode = Mode::OpAddr;
        self.bits = OPADDR_BITS;
        self.opaddr = 0;
    }

    pub fn word(&self, addr: usize) -> u16 {
        self.data.get(addr).copied().unwrap_or(0)
    }

    pub fn eecd(&self) -> u32 {
        self.eecd
    }

    /// A write of EECD: the guest drives SK/CS/DI and asks for the bus
    /// (REQ, granted at once); a rising SK with CS clocks one bit.
    pub fn write_eecd(&mut self, value: u32) {
        let rising = self.eecd & EECD_SK == 0 && value & EECD_SK != 0;
        let mask = EECD_SK | EECD_CS | EECD_DI | EECD_REQ;
        self.eecd = (self.eecd & !mask) | (value & mask);
        if value & EECD_REQ != 0 {
            self.eecd |= EECD_GNT;
        } else {
            self.eecd &= !EECD_GNT;
        }
        if value & EECD_CS == 0 {
            // Deselecting ends any transfer: the next one starts afresh.
            self.opcode_mode();
        } else if rising {
            self.strobe();
        }
    }

    fn strobe(&mut self) {
        if self.bits == 0 {
            return;
        }
        self.bits -= 1;
        let di = u16::from(self.eecd & EECD_DI != 0);
        match self.mode {
            Mode::DataOut => {
                if self.shift & 0x8000 != 0 {
                    self.eecd |= EECD_DO;
                } else {
                    self.eecd &= !EECD_DO;
                }
                self.shift <<= 1;
                if self.bits == 0 {
                    self.opcode_mode();
                }
            }
            Mode::DataIn => {
                self.shift = (self.shift << 1) | di;
                if self.bits == 0 {
                    let addr = usize::from(self.opaddr & ADDR_MASK);
                    if self.opaddr & OP_MASK == OP_WRITE {
                        self.data[addr] = self.shift;
                    }
                    self.opcode_mode();
                }
            }
            Mode::OpAddr => {
                self.opaddr = (self.opaddr << 1) | di;
                if self.bits == 0 {
                    match self.opaddr & OP_MASK {
                        OP_READ => {
                            self.mode = Mode::DataOut;
                            self.bits = DATA_BITS;
                            self.shift = self.data[usize::from(self.opaddr & ADDR_MASK)];
                        }
                        OP_WRITE => {
                            self.mode = Mode::DataIn;
                            self.bits = DATA_BITS;
                            self.shift = 0;
                        }
                        OP_EWEN => self.opcode_mode(),
                        _ => {
                            log::debug!("e1000: unknown EEPROM opcode {:#x}", self.opaddr);
                            self.opcode_mode();
                        }
                    }
                }
            }
        }
    }

    /// EERD: a read started by the guest completes at once.
    pub fn eerd(&self, value: u32) -> u32 {
        if value & EERD_START == 0 {
            return value & !EERD_DONE;
        }
        let addr = (value >> EERD_ADDR_SHIFT) & 0xff;
        let word = self.word(addr as usize);
        (value & 0xff00) | EERD_DONE | (u32::from(word) << EERD_DATA_SHIFT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads word `addr` the way Linux's e1000_shift_out/in_ee_bits do.
    fn microwire_read(e: &mut Eeprom, addr: u16) -> u16 {
        let cs = EECD_CS | EECD_REQ;
        e.write_eecd(EECD_REQ);
        e.write_eecd(cs);
        let op = (OP_READ | addr) as u32;
        for i in (0..9).rev() {
            let di = if op >> i & 1 != 0 { EECD_DI } else { 0 };
            e.write_eecd(cs | di);
            e.write_eecd(cs | di | EECD_SK);
            e.write_eecd(cs | di);
        }
        let mut v = 0u16;
        for _ in 0..16 {
            e.write_eecd(cs | EECD_SK);
            v = (v << 1) | u16::from(e.eecd() & EECD_DO != 0);
            e.write_eecd(cs);
        }
        e.write_eecd(0);
        v
    }

    #[test]
    fn contents_sum_to_baba_and_hold_the_mac() {
        let e = Eeprom::new([0x58, 0x9c, 0xfc, 1, 2, 3], 0x8086, 0x100f, 0x1008);
        let sum = (0..WORDS).fold(0u16, |a, i| a.wrapping_add(e.word(i)));
        assert_eq!(sum, 0xbaba);
        assert_eq!((e.word(0), e.word(1), e.word(2)), (0x9c58, 0x01fc, 0x0302));
        assert_eq!(e.word(0x40), 0, "out of range reads 0");
    }

    #[test]
    fn microwire_and_eerd_reads_agree() {
        let mut e = Eeprom::new([0x58, 0x9c, 0xfc, 0xaa, 0xbb, 0xcc], 0x8086, 0x100f, 0x1008);
        assert!(e.eecd() & EECD_PRES != 0);
        for a in [0u16, 1, 2, 0x0d, 0x3f] {
            let w = microwire_read(&mut e, a);
            assert_eq!(w, e.word(a as usize), "word {a}");
            let r = e.eerd(EERD_START | (u32::from(a) << EERD_ADDR_SHIFT));
            assert!(r & EERD_DONE != 0);
            assert_eq!((r >> EERD_DATA_SHIFT) as u16, w);
        }
        // REQ is granted at once and revoked with it.
        e.write_eecd(EECD_REQ);
        assert!(e.eecd() & EECD_GNT != 0);
        e.write_eecd(0);
        assert!(e.eecd() & EECD_GNT == 0);
    }

    #[test]
    fn microwire_write_then_read() {
        let mut e = Eeprom::new([2, 0, 0, 0, 0, 1], 0x8086, 0x100f, 0x1008);
        let cs = EECD_CS;
        e.write_eecd(cs);
        let op = u32::from(OP_WRITE | 0x20);
        let bits = (op << 16) | 0xbeef;
        for i in (0..25).rev() {
            let di = if bits >> i & 1 != 0 { EECD_DI } else { 0 };
            e.write_eecd(cs | di);
            e.write_eecd(cs | di | EECD_SK);
        }
        e.write_eecd(0);
        assert_eq!(e.word(0x20), 0xbeef);
        assert_eq!(microwire_read(&mut e, 0x20), 0xbeef);
    }
}
