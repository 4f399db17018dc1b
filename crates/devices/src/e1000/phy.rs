//! The PHY behind MDIC: an M88E1011 whose link is always up at 1000
//! Mb/s full duplex with auto-negotiation complete (bhyve's
//! `e82545_read_mdi`; like bhyve it answers at every MDIO address).
//! Control and advertisement writes are kept so a driver reads back what
//! it wrote; reset and restart bits self-clear.

const PHY_CTRL: u8 = 0;
const PHY_STATUS: u8 = 1;
const PHY_ID1: u8 = 2;
const PHY_ID2: u8 = 3;
const PHY_AUTONEG_ADV: u8 = 4;
const PHY_LP_ABILITY: u8 = 5;
const PHY_1000T_CTRL: u8 = 9;
const PHY_1000T_STATUS: u8 = 10;
/// M88's PHY specific status register.
const M88_SPEC_STATUS: u8 = 0x11;

const CTRL_RESET: u16 = 0x8000;
const CTRL_RESTART_AN: u16 = 0x0200;
const SR_LINK_STATUS: u16 = 0x0004;
const SR_AUTONEG_CAPS: u16 = 0x0008;
const SR_AUTONEG_COMPLETE: u16 = 0x0020;
const NWAY_AR_SELECTOR_FIELD: u16 = 0x0001;
const SR_1000T_LP_FD_CAPS: u16 = 0x0800;
const SR_1000T_REMOTE_RX_STATUS: u16 = 0x1000;
const SR_1000T_LOCAL_RX_STATUS: u16 = 0x2000;
/// 1000 Mb/s, full duplex, speed/duplex resolved, link up.
const M88_STATUS_1000_FD_LINK: u16 = 0x8000 | 0x2000 | 0x0800 | 0x0400;
const M88E1011_I_PHY_ID: u32 = 0x0141_0c20;
const PHY_REVISION: u32 = 4;

#[derive(Default)]
pub struct Phy {
    ctrl: u16,
    adv: Option<u16>,
    ctrl_1000t: u16,
}

impl Phy {
    pub fn reset(&mut self) {
        *self = Phy::default();
    }

    pub fn read(&self, reg: u8) -> u16 {
        match reg {
            PHY_CTRL => self.ctrl,
            PHY_STATUS => SR_LINK_STATUS | SR_AUTONEG_CAPS | SR_AUTONEG_COMPLETE,
            PHY_ID1 => (M88E1011_I_PHY_ID >> 16) as u16,
            PHY_ID2 => ((M88E1011_I_PHY_ID | PHY_REVISION) & 0xffff) as u16,
            PHY_AUTONEG_ADV => self.adv.unwrap_or(NWAY_AR_SELECTOR_FIELD),
            PHY_LP_ABILITY => 0,
            PHY_1000T_CTRL => self.ctrl_1000t,
            PHY_1000T_STATUS => {
                SR_1000T_LP_FD_CAPS | SR_1000T_REMOTE_RX_STATUS | SR_1000T_LOCAL_RX_STATUS
            }
            M88_SPEC_STATUS => M88_STATUS_1000_FD_LINK,
            _ => 0,
        }
    }

    pub fn write(&mut self, reg: u8, value: u16) {
        match reg {
            PHY_CTRL => {
                // Reset and auto-negotiation restart complete at once.
                self.ctrl = value & !(CTRL_RESET | CTRL_RESTART_AN);
            }
            PHY_AUTONEG_ADV => self.adv = Some(value),
            PHY_1000T_CTRL => self.ctrl_1000t = value,
            _ => log::trace!("e1000: PHY write {reg:#x} = {value:#x} ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_is_up_and_reset_self_clears() {
        let mut p = Phy::default();
        let st = p.read(PHY_STATUS);
        assert!(st & SR_LINK_STATUS != 0 && st & SR_AUTONEG_COMPLETE != 0);
        assert_eq!(p.read(PHY_ID1), 0x0141);
        assert_eq!(p.read(PHY_ID2), 0x0c24);
        p.write(PHY_CTRL, CTRL_RESET | 0x1140);
        assert_eq!(p.read(PHY_CTRL), 0x1140);
        p.write(PHY_AUTONEG_ADV, 0x01e1);
        assert_eq!(p.read(PHY_AUTONEG_ADV), 0x01e1);
        p.reset();
        assert_eq!(p.read(PHY_AUTONEG_ADV), NWAY_AR_SELECTOR_FIELD);
    }
}
