//! The e1000 and the PCI uart driven by the C test guests `e1000_io` and
//! `uart_pci_io`, every byte checked on the host side, under our bhyve
//! and under QEMU (its e1000 / e1000-82545em and pci-serial are
//! independent implementations of the same hardware).
//!
//! e1000: the guest's frames are captured on a tap in a private network
//! namespace (AF_PACKET) and compared byte for byte with the frames the
//! rules say it sent, including the UDP datagram whose checksums the
//! device inserted and the TCP segments it cut from one TSO frame, which
//! the test rebuilds with its own checksum code. Frames injected on the
//! tap must reach the guest intact; one for another MAC must not.
//!
//! uart: the test connects to the port's `tcp=` backend (QEMU: a socket
//! chardev), sends bytes the guest checks, and checks the bytes it sends.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bhyve_testguests::{fnv1a, PASS_STATUS};
use common::net::*;
use common::vm::*;
use common::*;

const GUEST_MAC: [u8; 6] = [0x02, 0x62, 0x68, 0x79, 0x76, 0x65];
/// A unicast address the guest's filter must drop.
const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const HOST_IP: [u8; 4] = [10, 0, 2, 2];
const UDP_SEQ: u32 = 0x2000;
const TSO_SEQ: u32 = 0x3000;
const UDP_PAYLOAD: usize = 999;
const TSO_PAYLOAD: usize = 5000;
const TSO_MSS: usize = 1448;
const TCP_SEQ: u32 = 0x0102_0304;
const TCP_ACK: u32 = 0x0a0b_0c0d;

/// e1000_io's payload rule for the offloaded frames.
fn payload(seq: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (seq.wrapping_mul(7) + i * 13 + (i >> 8)) as u8)
        .collect()
}

/// The Internet checksum (RFC 1071) of the concatenated parts.
fn inet_checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 header from the guest to the host, checksum filled.
fn eth_ip(proto: u8, ip_len: usize, id: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(ip_len as u16).to_be_bytes());
    ip.extend_from_slice(&id.to_be_bytes());
    ip.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&GUEST_IP);
    ip.extend_from_slice(&HOST_IP);
    let ck = inet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    f.extend_from_slice(&ip);
    f
}

fn pseudo_header(proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&GUEST_IP);
    p.extend_from_slice(&HOST_IP);
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

/// The UDP datagram as it must leave the device (both checksums in).
fn expected_udp() -> Vec<u8> {
    let data = payload(UDP_SEQ, UDP_PAYLOAD);
    let ulen = 8 + data.len();
    let mut udp = Vec::new();
    udp.extend_from_slice(&5555u16.to_be_bytes());
    udp.extend_from_slice(&4444u16.to_be_bytes());
    udp.extend_from_slice(&(ulen as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&data);
    let ck = match inet_checksum(&[&pseudo_header(17, ulen), &udp]) {
        0 => 0xffff, // RFC 768: a computed 0 is sent as all ones
        c => c,
    };
    udp[6..8].copy_from_slice(&ck.to_be_bytes());
    let mut f = eth_ip(17, 20 + ulen, 0x1234);
    f.extend_from_slice(&udp);
    f
}

/// The TCP segments the device must cut from the TSO frame: the IP
/// length and ID, the sequence number, FIN/PSH only on the last, both
/// checksums per segment.
fn expected_tso() -> Vec<Vec<u8>> {
    let data = payload(TSO_SEQ, TSO_PAYLOAD);
    data.chunks(TSO_MSS)
        .enumerate()
        .map(|(k, chunk)| {
            let last = (k + 1) * TSO_MSS >= TSO_PAYLOAD;
            let mut tcp = Vec::new();
            tcp.extend_from_slice(&5555u16.to_be_bytes());
            tcp.extend_from_slice(&4444u16.to_be_bytes());
            tcp.extend_from_slice(&(TCP_SEQ + (k * TSO_MSS) as u32).to_be_bytes());
            tcp.extend_from_slice(&TCP_ACK.to_be_bytes());
            tcp.push(0x50);
            tcp.push(if last { 0x19 } else { 0x10 });
            tcp.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
            tcp.extend_from_slice(chunk);
            let ck = inet_checksum(&[&pseudo_header(6, tcp.len()), &tcp]);
            tcp[16..18].copy_from_slice(&ck.to_be_bytes());
            let mut f = eth_ip(6, 20 + tcp.len(), 0x4321 + k as u16);
            f.extend_from_slice(&tcp);
            f
        })
        .collect()
}

/// QEMU's models of the e1000 family.
#[derive(Clone, Copy)]
enum Model {
    /// Ours: `-s N,e1000` (82545EM, 8086:100f).
    Bhyve,
    /// QEMU `-device e1000` (82540EM, 8086:100e).
    Qemu82540,
    /// QEMU `-device e1000-82545em` (8086:100f).
    Qemu82545,
}

struct E1000Run {
    frames: u32,
    rxframes: u32,
    rxbuf: u32,
    offload: bool,
    /// Checksum options in the first data descriptor only.
    popts_first: bool,
}

fn e1000_run(tag: &str, r: E1000Run, model: Model) {
    assert!(
        is_root(),
        "this test creates a network namespace and a tap: run it as root"
    );
    let s = Scratch::new(tag);
    let guest = s.guest("e1000_io");
    let ns = Netns::new(tag);
    let sock = ns.packet_socket("tap0");
    let mut cmdline = format!(
        "frames={} rxframes={} rxbuf={} offload={} poptsfirst={}",
        r.frames,
        r.rxframes,
        r.rxbuf,
        u8::from(r.offload),
        u8::from(r.popts_first)
    );
    let mac = mac_text(&GUEST_MAC);
    let cmd = match model {
        Model::Bhyve => {
            // QEMU's I/O window is a dummy; ours must work.
            cmdline += " iowindow=1";
            let slot = format!("5,e1000,tap0,mac={mac}");
            let mut cmd = ns.cmd(&[BHYVE]);
            cmd.args(bhyve_args(&guest, &slot, &cmdline))
                .env("BHYVE_RUNDIR", s.rundir());
            cmd
        }
        Model::Qemu82540 | Model::Qemu82545 => {
            let dev = match model {
                Model::Qemu82540 => "e1000",
                _ => "e1000-82545em",
            };
            let mut cmd = ns.cmd(&["qemu-system-x86_64"]);
            cmd.args(qemu_args(&guest, &cmdline)).args([
                "-netdev",
                "tap,id=n0,ifname=tap0,script=no,downscript=no",
                "-device",
                &format!("{dev},netdev=n0,mac={mac}"),
            ]);
            cmd
        }
    };
    let mut vm = Running::spawn(cmd);

    let ours = |f: &[u8]| f.len() >= 14 && f[6..12] == GUEST_MAC;
    let mut captured = Vec::new();
    let mut injected = false;
    let t0 = Instant::now();
    let status = loop {
        if let Some(f) = recv_frame(&sock) {
            if ours(&f) {
                captured.push(f);
            }
        }
        if !injected && vm.stdout().contains("e1000_io: receiving") {
            injected = true;
            // First what the filter must drop, then a broadcast the guest
            // counts as foreign, then the frames it checks.
            send_frame(&sock, &frame(0x999, 100, OTHER_MAC, HOST_MAC));
            let mut bcast = frame(0x998, 80, [0xff; 6], HOST_MAC);
            bcast[12..14].copy_from_slice(&0x88b6u16.to_be_bytes());
            send_frame(&sock, &bcast);
            for i in 0..r.rxframes {
                let seq = RX_SEQ0 + i;
                send_frame(
                    &sock,
                    &frame(seq, frame_len(seq, MAX_FRAME), GUEST_MAC, HOST_MAC),
                );
            }
        }
        if let Some(st) = vm.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "e1000_io did not finish within {DEADLINE:?}\n{}",
            vm.report()
        );
    };
    while let Some(f) = recv_frame(&sock) {
        if ours(&f) {
            captured.push(f);
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    let report = vm.report();
    assert_eq!(status.code(), Some(PASS_STATUS), "{report}");
    let out = guest_lines(&vm.stdout(), "e1000_io");
    let has = |l: &str| assert!(out.contains(l), "missing {l:?}\n{report}");

    let id = match model {
        Model::Qemu82540 => "8086:100e",
        _ => "8086:100f",
    };
    has(&format!(" id {id}\n"));
    has(&format!("e1000_io: eeprom mac {mac}\n"));
    has("e1000_io: eeprom checksum ok\n");
    has(&format!("e1000_io: ral mac {mac} valid "));
    has("e1000_io: link up 1000 Mb/s full duplex\n");
    if matches!(model, Model::Bhyve) {
        has("e1000_io: io window agrees\n");
    }

    // Guest → host: the plain frames in order, then the offloaded ones.
    let plain: Vec<&Vec<u8>> = captured
        .iter()
        .filter(|f| f[12..14] == ETHERTYPE.to_be_bytes())
        .collect();
    assert_eq!(
        plain.len(),
        r.frames as usize,
        "frames captured on the tap\n{report}"
    );
    for (seq, got) in plain.iter().enumerate() {
        let seq = seq as u32;
        let want = frame(seq, frame_len(seq, MAX_FRAME), [0xff; 6], GUEST_MAC);
        assert!(**got == want, "tx frame {seq} differs on the tap\n{report}");
        has(&format!(
            "e1000_io: tx {seq} len {} fnv1a {:x}\n",
            want.len(),
            fnv1a(&want)
        ));
    }
    if r.frames > 0 {
        has("e1000_io: icr txdw set, then clear\n");
    }
    let ip: Vec<&Vec<u8>> = captured.iter().filter(|f| f[12..14] == [8, 0]).collect();
    if r.offload {
        let mut want = vec![expected_udp()];
        want.extend(expected_tso());
        assert_eq!(ip.len(), want.len(), "IPv4 frames on the tap\n{report}");
        for (i, (got, want)) in ip.iter().zip(&want).enumerate() {
            assert!(
                **got == *want,
                "offloaded frame {i} differs on the tap:\n got  {got:02x?}\n want {want:02x?}\n{report}"
            );
        }
        has(&format!(
            "e1000_io: udp checksum offload len {} payload fnv1a {:x}\n",
            14 + 20 + 8 + UDP_PAYLOAD,
            fnv1a(&payload(UDP_SEQ, UDP_PAYLOAD))
        ));
        has(&format!(
            "e1000_io: tso paylen {TSO_PAYLOAD} mss {TSO_MSS} payload fnv1a {:x}\n",
            fnv1a(&payload(TSO_SEQ, TSO_PAYLOAD))
        ));
    } else {
        assert!(ip.is_empty(), "IPv4 frames without offload\n{report}");
    }

    // Host → guest: the guest compared them; its hashes must be ours.
    for i in 0..r.rxframes {
        let seq = RX_SEQ0 + i;
        let want = frame(seq, frame_len(seq, MAX_FRAME), GUEST_MAC, HOST_MAC);
        has(&format!(
            "e1000_io: rx {seq:x} len {} fnv1a {:x}\n",
            want.len(),
            fnv1a(&want)
        ));
    }
    if r.rxframes > 0 {
        has("e1000_io: icr rxt0 set, then clear\n");
        // The broadcast of another EtherType at least.
        assert!(
            !out.contains("e1000_io: ignored 0 foreign frames\n"),
            "the broadcast did not arrive\n{report}"
        );
    }
    has("e1000_io: done\n");
}

#[test]
fn e1000_frames_both_ways_with_offloads() {
    e1000_run(
        "e1k",
        E1000Run {
            frames: 12,
            rxframes: 6,
            rxbuf: 2048,
            offload: true,
            popts_first: false,
        },
        Model::Bhyve,
    );
}

#[test]
fn e1000_checksum_options_from_the_first_data_descriptor() {
    // illumos' e1000g sets POPTS in a packet's first data descriptor only.
    e1000_run(
        "e1k-popts",
        E1000Run {
            frames: 2,
            rxframes: 1,
            rxbuf: 1024,
            offload: true,
            popts_first: true,
        },
        Model::Bhyve,
    );
}

#[test]
fn e1000_small_receive_buffers_span_descriptors() {
    // 256-byte buffers: a full frame takes six descriptors, and 40 frames
    // each way wrap both 64-descriptor rings.
    e1000_run(
        "e1k-small",
        E1000Run {
            frames: 40,
            rxframes: 40,
            rxbuf: 256,
            offload: false,
            popts_first: false,
        },
        Model::Bhyve,
    );
}

#[test]
fn e1000_io_under_qemu() {
    if !qemu_available() {
        return;
    }
    for (tag, model) in [("e1k-q40", Model::Qemu82540), ("e1k-q45", Model::Qemu82545)] {
        e1000_run(
            tag,
            E1000Run {
                frames: 12,
                rxframes: 6,
                rxbuf: 512,
                offload: true,
                popts_first: true,
            },
            model,
        );
    }
}

/// What the host sends (`uart_pci_io`'s host rule) and expects back.
fn host_bytes(n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(7) + (i >> 8) + 3) as u8)
        .collect()
}

fn guest_bytes(n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(11) + (i >> 8) + 5) as u8)
        .collect()
}

/// A free local TCP port (bound and released; the VMM binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One uart run at a time: [`free_port`] releases the port it found, so
/// two runs in parallel could be handed the same one, and the second
/// connection to a `tcp=` backend is refused (one client per port).
static UART_RUNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn uart_run(tag: &str, rxlen: usize, txlen: usize, vmm: Vmm) {
    let _one_at_a_time = UART_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(tag);
    let guest = s.guest("uart_pci_io");
    let port = free_port();
    let cmdline = format!("rxlen={rxlen} txlen={txlen}");
    let cmd = match vmm {
        Vmm::Bhyve => {
            let mut cmd = s.command(&[]);
            cmd.args(bhyve_args(
                &guest,
                &format!("6,uart,tcp=127.0.0.1:{port}"),
                &cmdline,
            ));
            cmd
        }
        Vmm::Qemu => {
            let mut cmd = std::process::Command::new("qemu-system-x86_64");
            cmd.args(qemu_args(&guest, &cmdline)).args([
                "-chardev",
                &format!("socket,id=u0,host=127.0.0.1,port={port},server=on,wait=off"),
                "-device",
                "pci-serial,chardev=u0",
            ]);
            cmd
        }
    };
    let mut vm = Running::spawn(cmd);
    let t0 = Instant::now();
    let alive = |vm: &mut Running, what: &str| {
        if let Some(st) = vm.child.try_wait().unwrap() {
            panic!("the VM exited ({st}) {what}\n{}", vm.report());
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "uart_pci_io: no progress within {DEADLINE:?} {what}\n{}",
            vm.report()
        );
    };
    let mut conn = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(_) => {
                alive(&mut vm, "before the port listened");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while !vm.stdout().contains("uart_pci_io: receiving") {
        alive(&mut vm, "before the guest was receiving");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing of the loopback test reached the line.
    let mut early = [0u8; 64];
    match conn.read(&mut early) {
        Ok(0) => panic!(
            "the backend closed the connection before any byte\n{}",
            vm.report()
        ),
        Ok(n) => panic!(
            "bytes {:02x?} before the guest sent any\n{}",
            &early[..n],
            vm.report()
        ),
        Err(_) => {} // the read timed out: nothing on the line
    }
    conn.write_all(&host_bytes(rxlen)).unwrap();
    let mut got = Vec::new();
    while got.len() < txlen {
        let mut buf = [0u8; 4096];
        match conn.read(&mut buf) {
            Ok(0) => panic!("the backend closed the connection\n{}", vm.report()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => alive(&mut vm, "while the guest was sending"),
        }
    }
    conn.write_all(b"!").unwrap();
    let status = loop {
        if let Some(st) = vm.child.try_wait().unwrap() {
            break st;
        }
        alive(&mut vm, "after the acknowledgement");
        std::thread::sleep(Duration::from_millis(20));
    };
    let report = vm.report();
    assert_eq!(status.code(), Some(PASS_STATUS), "{report}");
    assert!(
        got == guest_bytes(txlen),
        "the guest's bytes differ\n{report}"
    );
    let out = guest_lines(&vm.stdout(), "uart_pci_io");
    let has = |l: &str| assert!(out.contains(l), "missing {l:?}\n{report}");
    let id = match vmm {
        Vmm::Bhyve => "131f:2000",
        Vmm::Qemu => "1b36:0002",
    };
    has(&format!(" id {id}\n"));
    has("uart_pci_io: 115200 8n1, fifo enabled, scratch ok\n");
    has("uart_pci_io: loopback ok\n");
    has(&format!(
        "uart_pci_io: received {rxlen} bytes fnv1a {:x}\n",
        fnv1a(&host_bytes(rxlen))
    ));
    has(&format!(
        "uart_pci_io: sent {txlen} bytes fnv1a {:x}\n",
        fnv1a(&got)
    ));
    has("uart_pci_io: host acknowledged\n");
    has("uart_pci_io: done\n");
}

#[test]
fn uart_pci_bytes_both_ways_over_tcp() {
    uart_run("uartpci", 4096, 4096, Vmm::Bhyve);
}

#[test]
fn uart_pci_io_under_qemu() {
    if !qemu_available() {
        return;
    }
    // QEMU is the reference here (the guest's expectations are not ours
    // alone), so one failure of it is retried; bhyve's run never is. In
    // one CI run QEMU's pci-serial delivered none of the 4096 bytes the
    // test had written to its socket within the guest's 15 s (a loaded
    // host; 15 runs beside two CPU hogs did not repeat it).
    if std::panic::catch_unwind(|| uart_run("uartpci-q", 4096, 4096, Vmm::Qemu)).is_err() {
        let _ = writeln!(
            std::io::stderr(),
            "uart_pci_io under QEMU failed (above); running it once more"
        );
        uart_run("uartpci-q2", 4096, 4096, Vmm::Qemu);
    }
}

/// The test's own checksum code against a known IPv4 header.
#[test]
fn inet_checksum_known_header() {
    let hdr = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(inet_checksum(&[&hdr]), 0xb861);
}
