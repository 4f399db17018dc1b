//! The command set without a transport: CDBs in, actions out.

use super::*;

fn lun(size: u64, ro: bool, can_delete: bool) -> LunInfo {
    LunInfo {
        info: BlockInfo {
            size,
            sector_size: 512,
            physical_sector_size: 4096,
            physical_sector_offset: 0,
            read_only: ro,
            can_delete,
        },
        serial: "SER123".into(),
    }
}

fn data_of(a: Action) -> Vec<u8> {
    match a {
        Action::Data(v) => v,
        other => panic!("expected data, got {other:?}"),
    }
}

const MIB: u64 = 1 << 20;

#[test]
fn reads_and_writes_are_range_checked() {
    let l = lun(MIB, false, true); // 2048 blocks
    let read10 = [op::READ_10, 0, 0, 0, 0x07, 0xff, 0, 0, 1, 0];
    assert_eq!(
        decode(&read10, Some(&l), &[0]),
        Action::Io {
            op: BlockOp::Read,
            offset: 2047 * 512,
            len: 512,
            fua: false
        }
    );
    let past = [op::READ_10, 0, 0, 0, 0x07, 0xff, 0, 0, 2, 0];
    assert_eq!(
        decode(&past, Some(&l), &[0]),
        Action::Check(Sense::LBA_OUT_OF_RANGE)
    );
    // An LBA near 2^64 must not wrap around the range check.
    let mut r16 = [0u8; 16];
    r16[0] = op::READ_16;
    r16[2..10].copy_from_slice(&u64::MAX.to_be_bytes());
    r16[13] = 2;
    assert_eq!(
        decode(&r16, Some(&l), &[0]),
        Action::Check(Sense::LBA_OUT_OF_RANGE)
    );
    // WRITE(16) with FUA.
    let mut w16 = [0u8; 16];
    w16[0] = op::WRITE_16;
    w16[1] = 0x08;
    w16[9] = 8;
    w16[13] = 8;
    assert_eq!(
        decode(&w16, Some(&l), &[0]),
        Action::Io {
            op: BlockOp::Write,
            offset: 8 * 512,
            len: 8 * 512,
            fua: true
        }
    );
    // READ(6): a length of 0 means 256 blocks.
    let r6 = [op::READ_6, 0, 0, 16, 0, 0];
    assert!(matches!(
        decode(&r6, Some(&l), &[0]),
        Action::Io {
            offset: 8192,
            len: 131072,
            ..
        }
    ));
    // Zero-length READ(10) is GOOD without I/O.
    let r0 = [op::READ_10, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(decode(&r0, Some(&l), &[0]), Action::Good);
    // Longer than max_sectors.
    let big = lun(1 << 30, false, true);
    let mut r12 = [0u8; 12];
    r12[0] = op::READ_12;
    r12[6..10].copy_from_slice(&0x10000u32.to_be_bytes());
    assert_eq!(
        decode(&r12, Some(&big), &[0]),
        Action::Check(Sense::INVALID_FIELD_IN_CDB)
    );
    // Read-only units refuse writes of every kind.
    let ro = lun(MIB, true, false);
    let w10 = [op::WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    assert_eq!(
        decode(&w10, Some(&ro), &[0]),
        Action::Check(Sense::WRITE_PROTECTED)
    );
    let unmap = [op::UNMAP, 0, 0, 0, 0, 0, 0, 0, 24, 0];
    assert_eq!(
        decode(&unmap, Some(&ro), &[0]),
        Action::Check(Sense::WRITE_PROTECTED)
    );
    assert!(matches!(
        decode(&read10, Some(&ro), &[0]),
        Action::Io {
            op: BlockOp::Read,
            ..
        }
    ));
}

#[test]
fn unknown_short_and_absent() {
    let l = lun(MIB, false, true);
    assert_eq!(
        decode(&[0xc0, 0, 0, 0, 0, 0], Some(&l), &[0]),
        Action::Check(Sense::INVALID_OPCODE)
    );
    assert_eq!(
        decode(&[op::READ_10, 0, 0], Some(&l), &[0]),
        Action::Check(Sense::INVALID_FIELD_IN_CDB)
    );
    assert_eq!(
        decode(&[], Some(&l), &[0]),
        Action::Check(Sense::INVALID_OPCODE)
    );
    // An absent LUN: INQUIRY says "no unit", REPORT LUNS lists peers,
    // everything else is LOGICAL UNIT NOT SUPPORTED.
    let inq = data_of(decode(&[op::INQUIRY, 0, 0, 0, 36, 0], None, &[0, 3]));
    assert_eq!(inq[0], 0x7f);
    assert_eq!(
        decode(&[op::TEST_UNIT_READY, 0, 0, 0, 0, 0], None, &[0]),
        Action::Check(Sense::LUN_NOT_SUPPORTED)
    );
    let mut rl = [0u8; 12];
    rl[0] = op::REPORT_LUNS;
    rl[9] = 255;
    let r = data_of(decode(&rl, None, &[0, 3, 300]));
    assert_eq!(&r[0..4], &24u32.to_be_bytes());
    assert_eq!(&r[8..16], &[0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&r[16..18], &[0, 3]);
    assert_eq!(&r[24..26], &[0x41, 0x2c]);
    // An allocation length below 16 is invalid (SPC-4).
    rl[9] = 8;
    assert_eq!(
        decode(&rl, None, &[0]),
        Action::Check(Sense::INVALID_FIELD_IN_CDB)
    );
}

#[test]
fn inquiry_and_vpd() {
    let l = lun(MIB, false, true);
    let std = data_of(decode(&[op::INQUIRY, 0, 0, 0, 96, 0], Some(&l), &[0]));
    assert_eq!(std.len(), 36);
    assert_eq!(std[0], 0);
    assert_eq!(&std[8..16], b"BHYVE   ");
    assert_eq!(&std[16..32], b"VIRTUAL DISK    ");
    // Cut to the allocation length.
    let short = data_of(decode(&[op::INQUIRY, 0, 0, 0, 5, 0], Some(&l), &[0]));
    assert_eq!(short.len(), 5);
    // A page code without EVPD.
    assert_eq!(
        decode(&[op::INQUIRY, 0, 0x80, 0, 96, 0], Some(&l), &[0]),
        Action::Check(Sense::INVALID_FIELD_IN_CDB)
    );
    let vpd =
        |page: u8, l: &LunInfo| data_of(decode(&[op::INQUIRY, 1, page, 1, 0, 0], Some(l), &[0]));
    assert_eq!(vpd(0, &l)[4..], [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
    assert_eq!(&vpd(0x80, &l)[4..], b"SER123");
    let id = vpd(0x83, &l);
    assert_eq!(&id[4..8], &[2, 1, 0, 14]);
    assert_eq!(&id[8..], b"BHYVE   SER123");
    let bl = vpd(0xb0, &l);
    assert_eq!(bl.len(), 64);
    assert_eq!(u16::from_be_bytes([bl[6], bl[7]]), 8); // 4096/512
    assert_eq!(u32::from_be_bytes(bl[8..12].try_into().unwrap()), 0xffff);
    assert_eq!(u32::from_be_bytes(bl[20..24].try_into().unwrap()), 32768);
    assert_eq!(u32::from_be_bytes(bl[24..28].try_into().unwrap()), 16);
    assert_eq!(vpd(0xb1, &l)[5], 1);
    assert_eq!(vpd(0xb2, &l)[5] & 0xe0, 0xe0);
    let nodelete = lun(MIB, false, false);
    assert_eq!(vpd(0xb2, &nodelete)[5], 0);
    assert_eq!(vpd(0xb0, &nodelete)[20..28], [0; 8]);
    assert_eq!(
        decode(&[op::INQUIRY, 1, 0x89, 1, 0, 0], Some(&l), &[0]),
        Action::Check(Sense::INVALID_FIELD_IN_CDB)
    );
}

#[test]
fn capacity_and_mode_pages() {
    let l = lun(MIB, false, true);
    let rc10 = data_of(decode(
        &[op::READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        Some(&l),
        &[0],
    ));
    assert_eq!(rc10, [0, 0, 7, 0xff, 0, 0, 2, 0]);
    let huge = lun(4 << 40, false, false);
    let rc10 = data_of(decode(
        &[op::READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        Some(&huge),
        &[0],
    ));
    assert_eq!(&rc10[0..4], &[0xff; 4]);
    let mut rc16 = [0u8; 16];
    rc16[0] = op::SERVICE_ACTION_IN_16;
    rc16[1] = op::SAI_READ_CAPACITY_16;
    rc16[13] = 32;
    let d = data_of(decode(&rc16, Some(&huge), &[0]));
    assert_eq!(
        u64::from_be_bytes(d[0..8].try_into().unwrap()),
        (4u64 << 40) / 512 - 1
    );
    assert_eq!(d[13], 3); // 8 logical blocks per physical one
    assert_eq!(d[14] & 0xc0, 0); // no LBPME without discard
    assert_eq!(data_of(decode(&rc16, Some(&l), &[0]))[14] & 0xc0, 0xc0);
    // MODE SENSE(6), caching page: WCE, no write protection.
    let ms = data_of(decode(
        &[op::MODE_SENSE_6, 0, 0x08, 0, 255, 0],
        Some(&l),
        &[0],
    ));
    assert_eq!(ms[0] as usize, ms.len() - 1);
    assert_eq!(ms[2], 0x10);
    assert_eq!(ms[3], 8);
    assert_eq!(&ms[4..12], &[0, 0, 8, 0, 0, 0, 2, 0]);
    assert_eq!(&ms[12..15], &[0x08, 0x12, 0x04]);
    // Read-only: WP; DBD drops the block descriptor; all pages.
    let ro = lun(MIB, true, false);
    let ms = data_of(decode(
        &[op::MODE_SENSE_6, 0x08, 0x3f, 0, 255, 0],
        Some(&ro),
        &[0],
    ));
    assert_eq!(ms[2], 0x90);
    assert_eq!(ms[3], 0);
    assert_eq!((ms[4], ms[24]), (0x08, 0x0a));
    // MODE SENSE(10): 8-byte header.
    let ms = data_of(decode(
        &[op::MODE_SENSE_10, 0, 0x0a, 0, 0, 0, 0, 1, 0, 0],
        Some(&l),
        &[0],
    ));
    assert_eq!(u16::from_be_bytes([ms[0], ms[1]]) as usize, ms.len() - 2);
    assert_eq!(&ms[6..8], &[0, 8]);
    assert_eq!(ms[16], 0x0a);
    // Saved values and unknown pages.
    assert_eq!(
        decode(&[op::MODE_SENSE_6, 0, 0xc8, 0, 255, 0], Some(&l), &[0]),
        Action::Check(Sense::SAVING_NOT_SUPPORTED)
    );
    assert_eq!(
        decode(&[op::MODE_SENSE_6, 0, 0x1c, 0, 255, 0], Some(&l), &[0]),
        Action::Check(Sense::INVALID_FIELD_IN_CDB)
    );
}

#[test]
fn unmap_and_write_same() {
    let l = lun(MIB, false, true);
    let mut p = vec![0u8, 22, 0, 16, 0, 0, 0, 0];
    p.extend_from_slice(&10u64.to_be_bytes());
    p.extend_from_slice(&4u32.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    assert_eq!(unmap_ranges(&l, &p), Ok(vec![(5120, 2048)]));
    assert_eq!(unmap_ranges(&l, &p[..20]), Err(Sense::PARAM_LIST_LENGTH));
    assert_eq!(unmap_ranges(&l, &p[..4]), Err(Sense::PARAM_LIST_LENGTH));
    p[8..16].copy_from_slice(&2046u64.to_be_bytes());
    assert_eq!(unmap_ranges(&l, &p), Err(Sense::LBA_OUT_OF_RANGE));
    p[2..4].copy_from_slice(&(17u16 * 16).to_be_bytes());
    assert_eq!(unmap_ranges(&l, &p), Err(Sense::INVALID_FIELD_IN_PARAM));
    // UNMAP is an invalid opcode without discard; ANCHOR is refused.
    let cdb = [op::UNMAP, 0, 0, 0, 0, 0, 0, 0, 24, 0];
    assert_eq!(
        decode(&cdb, Some(&l), &[0]),
        Action::Unmap { param_len: 24 }
    );
    assert_eq!(
        decode(&cdb, Some(&lun(MIB, false, false)), &[0]),
        Action::Check(Sense::INVALID_OPCODE)
    );
    let anchor = [op::UNMAP, 1, 0, 0, 0, 0, 0, 0, 24, 0];
    assert_eq!(
        decode(&anchor, Some(&l), &[0]),
        Action::Check(Sense::INVALID_FIELD_IN_CDB)
    );
    let mut ws = [0u8; 16];
    ws[0] = op::WRITE_SAME_16;
    ws[1] = 0x08;
    ws[9] = 2;
    ws[13] = 4;
    assert_eq!(
        decode(&ws, Some(&l), &[0]),
        Action::WriteSame {
            offset: 1024,
            len: 2048,
            unmap: true,
            ndob: false
        }
    );
    ws[13] = 0;
    assert_eq!(
        decode(&ws, Some(&l), &[0]),
        Action::Check(Sense::INVALID_FIELD_IN_CDB)
    );
}

#[test]
fn sense_is_fixed_format() {
    let s = Sense::LBA_OUT_OF_RANGE.fixed();
    assert_eq!((s[0], s[2], s[7], s[12], s[13]), (0x70, 5, 10, 0x21, 0));
    let rs = data_of(decode(
        &[op::REQUEST_SENSE, 0, 0, 0, 252, 0],
        Some(&lun(MIB, false, false)),
        &[0],
    ));
    assert_eq!(rs.len(), 18);
    assert_eq!(rs[2], 0);
}
