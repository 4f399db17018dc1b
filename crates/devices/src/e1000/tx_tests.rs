use super::*;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const RING: u64 = 0x1000;
const BUFS: u64 = 0x4000;

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
}

fn ring() -> Ring {
    Ring {
        base: RING,
        len: 128,
    }
}

fn put_desc(m: &GuestMemoryMmap, idx: u32, d: [u8; 16]) {
    m.write_slice(&d, GuestAddress(RING + 16 * u64::from(idx)))
        .unwrap();
}

fn legacy(addr: u64, len: u16, cmd: u32, cso: u8, css: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    let lower = u32::from(len) | (u32::from(cso) << 16) | cmd;
    d[8..12].copy_from_slice(&lower.to_le_bytes());
    d[13] = css;
    d
}

fn data(addr: u64, len: u32, cmd: u32, popts: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    let lower = len | TYP_DATA | cmd;
    d[8..12].copy_from_slice(&lower.to_le_bytes());
    d[13] = popts;
    d
}

#[allow(clippy::too_many_arguments)]
fn context(
    ipcss: u8,
    ipcso: u8,
    tucss: u8,
    tucso: u8,
    cmd: u32,
    paylen: u32,
    hdr: u8,
    mss: u16,
) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0] = ipcss;
    d[1] = ipcso;
    // The IP checksum ends with the IP header (the TCP one starts there).
    d[2..4].copy_from_slice(&(u16::from(tucss).saturating_sub(1)).to_le_bytes());
    d[4] = tucss;
    d[5] = tucso;
    d[8..12].copy_from_slice(&(paylen | TYP_CONTEXT | cmd).to_le_bytes());
    d[13] = hdr;
    d[14..16].copy_from_slice(&mss.to_le_bytes());
    d
}

fn run(
    m: &GuestMemoryMmap,
    head: u32,
    tail: u32,
    ctx: &mut TxContext,
) -> (TxOutcome, Vec<Vec<u8>>) {
    let mut t = Transmitter::new();
    let mut frames = Vec::new();
    let o = t.transmit(
        m,
        ring(),
        (head, tail),
        ctx,
        TxParams::default(),
        &mut |f| frames.push(f.to_vec()),
    );
    (o, frames)
}

/// An Ethernet + IPv4 + TCP frame (20-byte headers) with `payload`.
fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 54];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
    f[18..20].copy_from_slice(&0x1234u16.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&1000u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[38..42].copy_from_slice(&7u32.to_be_bytes());
    f[46] = 5 << 4;
    f[47] = 0x18 | TH_FIN; // PSH, ACK, FIN
    f.extend_from_slice(payload);
    f
}

/// The TCP checksum a receiver computes (pseudo-header included).
fn tcp_ok(f: &[u8]) -> bool {
    let tcp = &f[34..];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&f[26..34]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(tcp);
    ones_sum(&pseudo) == 0xffff
}

fn ip_ok(f: &[u8]) -> bool {
    ones_sum(&f[14..34]) == 0xffff
}

#[test]
fn legacy_packet_across_descriptors_with_checksum() {
    let m = mem();
    let f = tcp_frame(b"hello, world");
    m.write_slice(&f[..20], GuestAddress(BUFS)).unwrap();
    m.write_slice(&f[20..], GuestAddress(BUFS + 0x800)).unwrap();
    put_desc(&m, 5, legacy(BUFS, 20, 0, 0, 0));
    // IP header checksum by the legacy CSO/CSS mechanism: start 14, at 24.
    put_desc(
        &m,
        6,
        legacy(BUFS + 0x800, (f.len() - 20) as u16, CMD_EOP | CMD_IC, 24, 0),
    );
    let mut d5 = legacy(BUFS, 20, 0, 0, 14);
    d5[13] = 14;
    put_desc(&m, 5, d5);
    let mut ctx = TxContext::default();
    let (o, frames) = run(&m, 5, 9, &mut ctx);
    assert_eq!(
        o,
        TxOutcome::Done {
            next: 7,
            tso: false
        }
    );
    assert_eq!(frames.len(), 1);
    // The sum ran to the end of the frame, so only check it is stored.
    assert_ne!(&frames[0][24..26], &[0, 0]);
    assert_eq!(&frames[0][..24], &f[..24]);
}

#[test]
fn incomplete_packet_waits_for_its_end() {
    let m = mem();
    put_desc(&m, 0, legacy(BUFS, 60, 0, 0, 0));
    let mut ctx = TxContext::default();
    let (o, frames) = run(&m, 0, 1, &mut ctx);
    assert_eq!(o, TxOutcome::Incomplete);
    assert!(frames.is_empty());
}

#[test]
fn a_packet_without_eop_is_walked_at_most_max_packet_descs() {
    // A ring far longer than a packet may span; the descriptors sit past
    // the buffers so the ring can be large.
    let m = mem();
    let big = Ring {
        base: 0x10000,
        len: 1024,
    };
    let put = |i: u32, d: [u8; 16]| {
        m.write_slice(&d, big.desc_addr(i).unwrap()).unwrap();
    };
    let cap = MAX_PACKET_DESCS;
    let mut t = Transmitter::new();
    let mut ctx = TxContext::default();
    let mut walk = |head: u32, tail: u32| {
        let mut frames = 0;
        let o = t.transmit(
            &m,
            big,
            (head, tail),
            &mut ctx,
            TxParams::default(),
            &mut |_| {
                frames += 1;
            },
        );
        (o, frames)
    };
    // 1000 descriptors without EOP: each TDT write would re-walk all of
    // them. The first MAX_PACKET_DESCS are one dropped packet, and so on.
    for i in 0..1000 {
        put(i, legacy(BUFS, 4, 0, 0, 0));
    }
    let (o, frames) = walk(0, 1000);
    assert_eq!(
        o,
        TxOutcome::Done {
            next: cap,
            tso: false
        }
    );
    assert_eq!(frames, 0);
    let (o, _) = walk(cap, 1000);
    assert_eq!(
        o,
        TxOutcome::Done {
            next: 2 * cap,
            tso: false
        }
    );
    // Fewer than that pending: still waiting for the end.
    assert_eq!(walk(0, cap - 1).0, TxOutcome::Incomplete);
    // The largest packet accepted (MAX_TXSEGS data descriptors), with
    // empty descriptors between them, ends within the bound and is sent.
    for i in 0..cap {
        let len = if i % 2 == 0 { 1 } else { 0 };
        let eop = if i == cap - 1 { CMD_EOP } else { 0 };
        put(i, legacy(BUFS, len, eop, 0, 0));
    }
    assert_eq!(
        walk(0, 1000),
        (
            TxOutcome::Done {
                next: cap,
                tso: false
            },
            1
        )
    );
}

#[test]
fn context_then_checksum_offload() {
    let m = mem();
    let f = tcp_frame(&[0xab; 100]);
    m.write_slice(&f, GuestAddress(BUFS)).unwrap();
    put_desc(&m, 0, context(14, 24, 34, 50, CTX_TCP | CTX_IP, 0, 0, 0));
    put_desc(
        &m,
        1,
        data(BUFS, f.len() as u32, CMD_EOP, POPTS_IXSM | POPTS_TXSM),
    );
    let mut ctx = TxContext::default();
    assert_eq!(
        run(&m, 0, 2, &mut ctx).0,
        TxOutcome::Done {
            next: 1,
            tso: false
        }
    );
    // The driver seeds the TCP checksum with the pseudo-header sum.
    let mut g = f.clone();
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&g[26..34]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&((g.len() - 34) as u16).to_be_bytes());
    g[50..52].copy_from_slice(&ones_sum(&pseudo).to_be_bytes());
    m.write_slice(&g, GuestAddress(BUFS)).unwrap();
    let (o, frames) = run(&m, 1, 2, &mut ctx);
    assert_eq!(
        o,
        TxOutcome::Done {
            next: 2,
            tso: false
        }
    );
    assert!(ip_ok(&frames[0]) && tcp_ok(&frames[0]));
}

#[test]
fn tso_segments_replicate_and_fix_headers() {
    let m = mem();
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let mut f = tcp_frame(&payload);
    // Linux: IP total length 0 and the pseudo-header sum without length.
    f[16..18].fill(0);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&f[26..34]);
    pseudo.extend_from_slice(&[0, 6]);
    f[50..52].copy_from_slice(&ones_sum(&pseudo).to_be_bytes());
    m.write_slice(&f[..54], GuestAddress(BUFS)).unwrap();
    m.write_slice(&f[54..], GuestAddress(BUFS + 0x1000))
        .unwrap();
    let mut ctx = TxContext::default();
    put_desc(
        &m,
        10,
        context(14, 24, 34, 50, CTX_TCP | CTX_IP, 3000, 54, 1400),
    );
    put_desc(&m, 11, data(BUFS, 54, CMD_TSE, POPTS_IXSM | POPTS_TXSM));
    put_desc(
        &m,
        12,
        data(
            BUFS + 0x1000,
            3000,
            CMD_TSE | CMD_EOP,
            POPTS_IXSM | POPTS_TXSM,
        ),
    );
    run(&m, 10, 13, &mut ctx);
    let (o, frames) = run(&m, 11, 13, &mut ctx);
    assert_eq!(
        o,
        TxOutcome::Done {
            next: 13,
            tso: true
        }
    );
    let sizes: Vec<usize> = frames.iter().map(|f| f.len() - 54).collect();
    assert_eq!(sizes, [1400, 1400, 200]);
    let mut seq = 7u32;
    for (i, s) in frames.iter().enumerate() {
        assert!(ip_ok(s), "segment {i} IP checksum");
        assert!(tcp_ok(s), "segment {i} TCP checksum");
        assert_eq!(be16(s, 16) as usize, s.len() - 14);
        assert_eq!(be16(s, 18), 0x1234 + i as u16);
        assert_eq!(be32(s, 38), seq);
        let last = i == frames.len() - 1;
        assert_eq!(s[47] & (TH_FIN | TH_PUSH) != 0, last, "segment {i} flags");
        assert_eq!(
            &s[54..],
            &payload[(seq - 7) as usize..(seq - 7) as usize + sizes[i]]
        );
        seq += sizes[i] as u32;
    }
}

#[test]
fn hostile_tso_and_descriptors_are_dropped_not_followed() {
    let m = mem();
    m.write_slice(&tcp_frame(&[1; 200]), GuestAddress(BUFS))
        .unwrap();
    let cases: [(&str, [u8; 16]); 4] = [
        (
            "mss 0",
            context(14, 24, 34, 50, CTX_TCP | CTX_IP, 200, 54, 0),
        ),
        (
            "header 241",
            context(14, 24, 34, 50, CTX_TCP | CTX_IP, 200, 241, 100),
        ),
        (
            "header too short",
            context(14, 24, 34, 50, CTX_TCP | CTX_IP, 200, 20, 100),
        ),
        (
            "checksum past header",
            context(14, 24, 34, 250, CTX_TCP | CTX_IP, 200, 54, 100),
        ),
    ];
    for (what, c) in cases {
        let mut ctx = TxContext::default();
        put_desc(&m, 0, c);
        put_desc(&m, 1, data(BUFS, 254, CMD_TSE | CMD_EOP, POPTS_TXSM));
        run(&m, 0, 2, &mut ctx);
        let (o, frames) = run(&m, 1, 2, &mut ctx);
        assert_eq!(o, TxOutcome::Done { next: 2, tso: true }, "{what}");
        assert!(frames.is_empty(), "{what}");
    }
    // Buffers outside guest RAM, mixed types, a huge length, too many
    // descriptors: each packet is consumed and dropped.
    let mut ctx = TxContext::default();
    put_desc(&m, 0, legacy(u64::MAX - 4, 60, CMD_EOP, 0, 0));
    put_desc(&m, 1, legacy(BUFS, 60, 0, 0, 0));
    put_desc(&m, 2, data(BUFS, 60, CMD_EOP, 0));
    put_desc(&m, 3, data(BUFS, 0xf_ffff, CMD_EOP, 0));
    for i in 4..4 + MAX_TXSEGS as u32 + 1 {
        put_desc(&m, i, legacy(BUFS, 1, 0, 0, 0));
    }
    let end = 4 + MAX_TXSEGS as u32;
    put_desc(&m, end, legacy(BUFS, 1, CMD_EOP, 0, 0));
    for (head, next) in [(0, 1), (1, 3), (3, 4), (4, end + 1)] {
        let (o, frames) = run(&m, head, 127, &mut ctx);
        assert_eq!(o, TxOutcome::Done { next, tso: false }, "at {head}");
        assert!(frames.is_empty(), "at {head}");
    }
    // A ring entirely outside guest memory: one descriptor at a time.
    let far = Ring {
        base: 1 << 40,
        len: 8,
    };
    let mut t = Transmitter::new();
    let o = t.transmit(&m, far, (0, 5), &mut ctx, TxParams::default(), &mut |_| {
        panic!("sent")
    });
    assert_eq!(
        o,
        TxOutcome::Done {
            next: 1,
            tso: false
        }
    );
}

#[test]
fn vlan_tag_inserted_after_checksums() {
    let m = mem();
    let f = tcp_frame(&[7; 10]);
    m.write_slice(&f, GuestAddress(BUFS)).unwrap();
    let mut d = legacy(BUFS, f.len() as u16, CMD_EOP | CMD_VLE, 0, 0);
    d[14..16].copy_from_slice(&0x0123u16.to_le_bytes());
    put_desc(&m, 0, d);
    let mut t = Transmitter::new();
    let mut frames = Vec::new();
    let p = TxParams {
        vlan_enable: true,
        vet: 0x8100,
    };
    t.transmit(&m, ring(), (0, 1), &mut TxContext::default(), p, &mut |f| {
        frames.push(f.to_vec())
    });
    let g = &frames[0];
    assert_eq!(g.len(), f.len() + 4);
    assert_eq!(&g[12..16], &[0x81, 0x00, 0x01, 0x23]);
    assert_eq!(&g[16..], &f[12..]);
}

#[test]
fn ring_arithmetic() {
    let r = Ring { base: 0, len: 8 };
    assert_eq!(r.next(7), 0);
    assert_eq!(r.distance(6, 2), 4);
    assert_eq!(r.distance(2, 2), 0);
    assert_eq!(Ring::default().distance(1, 2), 0);
}
