//! e1000 transmit: arbitrary descriptor rings (legacy, context and data
//! descriptors, TSO headers, lengths and addresses) walked as the
//! transmit worker walks them, every frame produced checked for size.

use super::{ram, Cursor};
use crate::e1000::tx::{Ring, Transmitter, TxContext, TxOutcome, TxParams, MAX_FRAME};

pub fn e1000(data: &[u8]) {
    let mut c = Cursor(data);
    let (Some(base), Some(len), Some(tail), Some(flags), Some(vet)) =
        (c.u16(), c.u8(), c.u8(), c.u8(), c.u16())
    else {
        return;
    };
    let mem = ram(data);
    let ring = Ring {
        base: u64::from(base),
        len: u32::from(len.max(1)),
    };
    let tail = u32::from(tail) % ring.len;
    let params = TxParams {
        vlan_enable: flags & 1 != 0,
        vet,
    };
    let mut t = Transmitter::new();
    let mut ctx = TxContext::default();
    let mut head = u32::from(flags >> 1) % ring.len;
    // Each call consumes at least one descriptor, so a lap ends it.
    for _ in 0..ring.len {
        let o = t.transmit(&mem, ring, (head, tail), &mut ctx, params, &mut |f| {
            assert!(f.len() <= MAX_FRAME, "frame of {} bytes", f.len());
        });
        match o {
            TxOutcome::Incomplete => break,
            TxOutcome::Done { next, .. } => {
                assert!(next < ring.len);
                if next == tail {
                    break;
                }
                head = next;
            }
        }
    }
}
