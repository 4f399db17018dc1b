//! The statistics block (0x4000–0x40ff): read-to-clear counters, as on
//! the hardware (drivers add each read to their totals). bhyve keeps
//! counting across reads, which makes Linux's totals grow quadratically;
//! QEMU clears them, as here. A 64-bit counter (GORC, GOTC, TOR, TOT) is
//! read low then high; reading the high half clears it.

use super::regs::stat::*;

#[derive(Clone)]
pub struct Stats {
    c: [u64; 64],
}

impl Default for Stats {
    fn default() -> Self {
        Stats { c: [0; 64] }
    }
}

/// PRC64…PRC1522 / PTC64…PTC1522 bucket of a frame length.
fn size_bucket(len: usize) -> usize {
    match len {
        0..=64 => 0,
        65..=127 => 1,
        128..=255 => 2,
        256..=511 => 3,
        512..=1023 => 4,
        _ => 5,
    }
}

impl Stats {
    pub fn add(&mut self, idx: usize, v: u64) {
        if let Some(c) = self.c.get_mut(idx) {
            *c = c.wrapping_add(v);
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.c.iter_mut().zip(other.c.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    pub fn clear(&mut self) {
        self.c = [0; 64];
    }

    /// A guest read of counter `idx` (a word index in the block).
    pub fn read(&mut self, idx: usize) -> u32 {
        if let Some(&lo) = PAIRS.iter().find(|&&p| p == idx) {
            return self.c[lo] as u32;
        }
        if let Some(&lo) = PAIRS.iter().find(|&&p| p + 1 == idx) {
            let v = (self.c[lo] >> 32) as u32;
            self.c[lo] = 0;
            return v;
        }
        let Some(c) = self.c.get_mut(idx) else {
            return 0;
        };
        let v = (*c).min(u64::from(u32::MAX)) as u32;
        *c = 0;
        v
    }

    /// One good frame received (length as the guest sees it, with FCS).
    pub fn count_rx(&mut self, frame: &[u8], len: usize) {
        self.add(GPRC, 1);
        self.add(TPR, 1);
        self.add(GORCL, len as u64);
        self.add(TORL, len as u64);
        self.add(PRC64 + size_bucket(len), 1);
        match frame.first() {
            Some(_) if frame[..6.min(frame.len())] == [0xff; 6] => self.add(BPRC, 1),
            Some(b) if b & 1 != 0 => self.add(MPRC, 1),
            _ => {}
        }
    }

    /// One frame sent (`len` without the FCS the wire adds).
    pub fn count_tx(&mut self, frame: &[u8]) {
        let len = frame.len().max(60) + 4;
        self.add(GPTC, 1);
        self.add(TPT, 1);
        self.add(GOTCL, len as u64);
        self.add(TOTL, len as u64);
        self.add(PTC64 + size_bucket(len), 1);
        match frame.first() {
            Some(_) if frame[..6.min(frame.len())] == [0xff; 6] => self.add(BPTC, 1),
            Some(b) if b & 1 != 0 => self.add(MPTC, 1),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_clear_on_read_and_pairs_on_the_high_half() {
        let mut s = Stats::default();
        s.count_tx(&[0xff; 100]);
        s.count_tx(&[0x01; 2000]);
        s.count_tx(&[0x02; 10]);
        assert_eq!(s.read(GPTC), 3);
        assert_eq!(s.read(GPTC), 0);
        assert_eq!(s.read(BPTC), 1);
        assert_eq!(s.read(MPTC), 1);
        assert_eq!(s.read(PTC64), 1);
        assert_eq!(s.read(PTC64 + 1), 1);
        assert_eq!(s.read(PTC64 + 5), 1);
        let mut big = Stats::default();
        big.add(GORCL, (5u64 << 32) | 7);
        s.merge(&big);
        assert_eq!(s.read(GORCL), 7);
        assert_eq!(s.read(GORCL + 1), 5);
        assert_eq!(s.read(GORCL), 0);
        assert_eq!(s.read(64), 0, "outside the block");
    }
}
