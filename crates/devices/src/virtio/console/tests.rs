//! virtio-console driven as Linux's virtio_console does, with real
//! sockets on the host side.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::pci::PciDevice;
use crate::virtio::test_driver::Driver;
use vm_memory::Bytes;

fn tmpdir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "vtcon-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn spec(id: usize, name: &str, path: &std::path::Path) -> PortSpec {
    PortSpec {
        id,
        name: name.into(),
        path: path.into(),
    }
}

/// A console with ports 0 ("port1") and 1 ("org.test.two").
fn two_ports() -> (Driver, PathBuf, PathBuf) {
    let d = tmpdir();
    let (p0, p1) = (d.join("p1.sock"), d.join("p2.sock"));
    let dev = VirtioConsole::new(&[spec(0, "port1", &p0), spec(1, "org.test.two", &p1)]).unwrap();
    (Driver::new(Box::new(dev)), p0, p1)
}

/// Control messages the device sent (queue 2), waiting for `n`.
fn control_msgs(drv: &mut Driver, bufs: &[u64], n: usize) -> Vec<(u32, u16, u16, Vec<u8>)> {
    let mut v = Vec::new();
    for _ in 0..n {
        let (head, len) = drv.used(CTRL_RX);
        let a = bufs[usize::from(head)];
        let b = drv.read(a, len as usize);
        assert!(len >= 8, "short control message");
        let id = u32::from_le_bytes(b[0..4].try_into().unwrap());
        let ev = u16::from_le_bytes(b[4..6].try_into().unwrap());
        let val = u16::from_le_bytes(b[6..8].try_into().unwrap());
        v.push((id, ev, val, b[8..].to_vec()));
    }
    v
}

/// Starts the driver with MULTIPORT, posts 8 control buffers (indexed by
/// head) and sends DEVICE_READY.
fn handshake(drv: &mut Driver) -> Vec<u64> {
    assert_eq!(
        drv.device_features() & (F_SIZE | F_MULTIPORT),
        F_SIZE | F_MULTIPORT
    );
    drv.start(F_MULTIPORT, NUM_QUEUES);
    let mut bufs = vec![0u64; 16];
    for _ in 0..8 {
        let a = drv.alloc(128);
        let h = drv.post(CTRL_RX, &[(a, 128, true)]);
        bufs[usize::from(h)] = a;
    }
    drv.kick(CTRL_RX);
    drv.post_out(CTRL_TX, &control(0, event::DEVICE_READY, 1, &[]));
    drv.kick(CTRL_TX);
    drv.used(CTRL_TX);
    bufs
}

fn connect(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[test]
fn configuration_space_and_queues() {
    let (drv, _, _) = two_ports();
    assert_eq!(drv.cfg_read(0, 2), 80);
    assert_eq!(drv.cfg_read(2, 2), 25);
    assert_eq!(drv.cfg_read(4, 4), MAX_PORTS as u64);
    assert_eq!(drv.cfg_read(8, 4), 0);
    assert_eq!(drv.cfg_read(12, 4), 0, "past the end reads 0");
    assert_eq!(drv.r(crate::virtio::transport::common::NUM_QUEUES, 2), 34);
    // Device ID 0x1003, class "other communications".
    let f = drv.f.lock().unwrap();
    let mut b = [0u8; 4];
    f.config().read(0, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x1003_1af4);
    f.config().read(8, &mut b);
    assert_eq!(&b[1..], &[0x00, 0x80, 0x07]);
}

#[test]
fn ports_announced_named_and_opened() {
    let (mut drv, p0, _) = two_ports();
    let bufs = handshake(&mut drv);
    let m = control_msgs(&mut drv, &bufs, 4);
    assert_eq!(m[0], (0, event::DEVICE_ADD, 1, vec![]));
    assert_eq!(m[1], (0, event::PORT_NAME, 1, b"port1".to_vec()));
    assert_eq!(m[2], (1, event::DEVICE_ADD, 1, vec![]));
    assert_eq!(m[3], (1, event::PORT_NAME, 1, b"org.test.two".to_vec()));
    // The guest acknowledges; no console port in bhyve, so nothing back.
    drv.post_out(CTRL_TX, &control(0, event::PORT_READY, 1, &[]));
    drv.kick(CTRL_TX);
    drv.used(CTRL_TX);
    // A client connects: PORT_OPEN 1; it leaves: PORT_OPEN 0.
    let c = connect(&p0);
    let m = control_msgs(&mut drv, &bufs, 1);
    assert_eq!(m[0], (0, event::PORT_OPEN, 1, vec![]));
    drop(c);
    let m = control_msgs(&mut drv, &bufs, 1);
    assert_eq!(m[0], (0, event::PORT_OPEN, 0, vec![]));
}

#[test]
fn client_connected_before_ready_is_announced_open() {
    let (mut drv, _, p1) = two_ports();
    let _c = connect(&p1);
    drv.start(F_MULTIPORT, NUM_QUEUES);
    std::thread::sleep(Duration::from_millis(50));
    drv.reset();
    let bufs = handshake(&mut drv);
    let m = control_msgs(&mut drv, &bufs, 5);
    assert_eq!(m[4], (1, event::PORT_OPEN, 1, vec![]));
}

#[test]
fn bytes_both_ways_on_two_ports() {
    let (mut drv, p0, p1) = two_ports();
    let bufs = handshake(&mut drv);
    control_msgs(&mut drv, &bufs, 4);
    let mut c0 = connect(&p0);
    let mut c1 = connect(&p1);
    control_msgs(&mut drv, &bufs, 2);
    // Host → guest, port 0 (queue 0) and port 1 (queue 4).
    let rx0 = drv.post_in(0, 64);
    drv.kick(0);
    let rx1 = drv.post_in(4, 64);
    drv.kick(4);
    c0.write_all(b"hello zero").unwrap();
    c1.write_all(b"hello one").unwrap();
    let (_, n) = drv.used(0);
    assert_eq!(drv.read(rx0, n as usize), b"hello zero");
    let (_, n) = drv.used(4);
    assert_eq!(drv.read(rx1, n as usize), b"hello one");
    // Guest → host, port 0 (queue 1, a two-buffer chain) and port 1
    // (queue 5).
    let (a, b) = (drv.alloc(3), drv.alloc(4));
    drv.mem.write_slice(b"abc", GuestAddress(a)).unwrap();
    drv.mem.write_slice(b"defg", GuestAddress(b)).unwrap();
    drv.post(1, &[(a, 3, false), (b, 4, false)]);
    drv.kick(1);
    assert_eq!(drv.used(1).1, 0);
    let mut got = [0u8; 7];
    c0.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"abcdefg");
    drv.post_out(5, b"to one");
    drv.kick(5);
    drv.used(5);
    let mut got = [0u8; 6];
    c1.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"to one");
}

#[test]
fn host_bytes_wait_for_guest_buffers() {
    let (mut drv, p0, _) = two_ports();
    let bufs = handshake(&mut drv);
    control_msgs(&mut drv, &bufs, 4);
    let mut c = connect(&p0);
    control_msgs(&mut drv, &bufs, 1);
    // 100 bytes before any buffer: nothing is lost, they arrive in
    // 32-byte pieces as buffers are posted.
    let data: Vec<u8> = (0..100u8).collect();
    c.write_all(&data).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(drv.used_within(0, Duration::from_millis(50)).is_none());
    let mut got = Vec::new();
    while got.len() < data.len() {
        let a = drv.post_in(0, 32);
        drv.kick(0);
        let (_, n) = drv.used(0);
        assert!(n <= 32);
        got.extend(drv.read(a, n as usize));
    }
    assert_eq!(got, data);
}

#[test]
fn one_client_at_a_time_and_drops_without_client() {
    let (mut drv, p0, _) = two_ports();
    let bufs = handshake(&mut drv);
    control_msgs(&mut drv, &bufs, 4);
    // No client: guest bytes are dropped, the buffer completed.
    drv.post_out(1, b"nobody");
    drv.kick(1);
    assert_eq!(drv.used(1).1, 0);
    let mut c = connect(&p0);
    control_msgs(&mut drv, &bufs, 1);
    let mut second = connect(&p0);
    let mut b = [0u8; 1];
    assert_eq!(second.read(&mut b).unwrap_or(0), 0, "second client closed");
    // The first still works, and never saw the dropped bytes.
    drv.post_out(1, b"x");
    drv.kick(1);
    drv.used(1);
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"x");
}

#[test]
fn slow_client_holds_the_transmit_ring() {
    let (mut drv, p0, _) = two_ports();
    let bufs = handshake(&mut drv);
    control_msgs(&mut drv, &bufs, 4);
    let mut c = connect(&p0);
    control_msgs(&mut drv, &bufs, 1);
    // More than a socket buffer: the device must wait, not drop.
    let big = 512 * 1024u32;
    let a = drv.alloc(big);
    let data: Vec<u8> = (0..big).map(|i| (i % 251) as u8).collect();
    drv.mem.write_slice(&data, GuestAddress(a)).unwrap();
    drv.post(1, &[(a, big, false)]);
    drv.kick(1);
    assert!(
        drv.used_within(1, Duration::from_millis(100)).is_none(),
        "completed before the client read"
    );
    let mut got = vec![0u8; big as usize];
    c.read_exact(&mut got).unwrap();
    assert!(got == data, "stream corrupted");
    drv.used(1);
}

#[test]
fn without_multiport_port_zero_is_a_plain_stream() {
    let (mut drv, p0, _) = two_ports();
    drv.start(0, 2);
    let mut c = connect(&p0);
    let a = drv.post_in(0, 16);
    drv.kick(0);
    c.write_all(b"plain").unwrap();
    let (_, n) = drv.used(0);
    assert_eq!(drv.read(a, n as usize), b"plain");
    drv.post_out(1, b"back");
    drv.kick(1);
    drv.used(1);
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"back");
}

#[test]
fn survives_reset_and_restarts() {
    let (mut drv, p0, _) = two_ports();
    let bufs = handshake(&mut drv);
    control_msgs(&mut drv, &bufs, 4);
    let mut c = connect(&p0);
    control_msgs(&mut drv, &bufs, 1);
    drv.reset();
    assert!(!drv.f.lock().unwrap().is_active());
    let bufs = handshake(&mut drv);
    let m = control_msgs(&mut drv, &bufs, 5);
    assert!(m.contains(&(0, event::PORT_OPEN, 1, vec![])), "{m:?}");
    let a = drv.post_in(0, 16);
    drv.kick(0);
    c.write_all(b"again").unwrap();
    let (_, n) = drv.used(0);
    assert_eq!(drv.read(a, n as usize), b"again");
}

#[test]
fn hostile_driver_is_contained() {
    let (mut drv, p0, _) = two_ports();
    let bufs = handshake(&mut drv);
    control_msgs(&mut drv, &bufs, 4);
    let mut c = connect(&p0);
    control_msgs(&mut drv, &bufs, 1);
    // A client that reads everything (a 4 GiB buffer streams guest RAM
    // until its end).
    let reader = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    });
    // Short, unknown and out-of-range control messages.
    drv.post_out(CTRL_TX, &[1, 2, 3]);
    drv.post_out(CTRL_TX, &control(999, event::PORT_READY, 1, &[]));
    drv.post_out(CTRL_TX, &control(0, 0xffff, 7, &[]));
    drv.post(CTRL_TX, &[(0xffff_0000_0000, 8, false)]);
    drv.kick(CTRL_TX);
    for _ in 0..4 {
        drv.used(CTRL_TX);
    }
    // Transmit buffers outside memory or 4 GiB long; receive buffers of
    // no bytes; queues of ports that do not exist.
    drv.post(1, &[(0xffff_0000_0000, 64, false)]);
    drv.post(1, &[(0x300000, u32::MAX, false)]);
    drv.kick(1);
    drv.used(1);
    drv.used(1);
    drv.post_out(7, b"port 2 does not exist");
    drv.kick(7);
    drv.used(7);
    drv.post(0, &[(0xffff_0000_0000, 16, true)]);
    drv.kick(0);
    drv.kick(33);
    drv.w(0x3000 + 4 * 200, 2, 200);
    std::thread::sleep(Duration::from_millis(50));
    drv.reset();
    assert_eq!(drv.r(crate::virtio::transport::common::DEVICE_STATUS, 1), 0);
    drop(drv);
    reader.join().unwrap();
}

#[test]
fn socket_errors_and_cleanup() {
    let d = tmpdir();
    let p = d.join("taken.sock");
    std::fs::write(&p, b"").unwrap();
    let e = VirtioConsole::new(&[spec(0, "a", &p)]).err().unwrap();
    assert!(e.to_string().starts_with("cannot create port a:"), "{e}");
    let e = VirtioConsole::new(&[spec(0, "a", &d.join("no/such/dir.sock"))])
        .err()
        .unwrap();
    assert!(e.to_string().contains("No such file"), "{e}");
    let e = VirtioConsole::new(&[spec(16, "a", &d.join("x.sock"))])
        .err()
        .unwrap();
    assert_eq!(e.to_string(), "vtcon: Invalid port 16");
    let ok = d.join("ok.sock");
    let e = VirtioConsole::new(&[spec(0, "a", &ok), spec(0, "b", &d.join("y.sock"))])
        .err()
        .unwrap();
    assert!(matches!(e, ConsoleError::Duplicate(0)));
    assert!(!ok.exists(), "a failed device leaves no socket behind");
    let dev = VirtioConsole::new(&[spec(3, "three", &ok)]).unwrap();
    assert!(ok.exists());
    drop(dev);
    assert!(!ok.exists(), "socket removed with the device");
}

/// A driver that enables only some queues: a client's bytes for a port
/// whose receive queue is off wait in the socket (the worker does not
/// spin on them), and the other ports still work.
#[test]
fn disabled_receive_queue_does_not_spin() {
    let (mut drv, p0, p1) = two_ports();
    // Queues 0..4: port 0 and control, not port 1's (4, 5).
    drv.start(F_MULTIPORT, 4);
    let mut bufs = vec![0u64; 16];
    for _ in 0..8 {
        let a = drv.alloc(128);
        let h = drv.post(CTRL_RX, &[(a, 128, true)]);
        bufs[usize::from(h)] = a;
    }
    drv.post_out(CTRL_TX, &control(0, event::DEVICE_READY, 1, &[]));
    drv.kick(CTRL_TX);
    control_msgs(&mut drv, &bufs, 4);
    let mut c1 = connect(&p1);
    control_msgs(&mut drv, &bufs, 1);
    c1.write_all(b"nowhere to go").unwrap();
    let mut c0 = connect(&p0);
    control_msgs(&mut drv, &bufs, 1);
    let t0 = cpu_time();
    std::thread::sleep(Duration::from_millis(500));
    assert!(cpu_time() - t0 < 0.1, "the worker spins");
    let a = drv.post_in(0, 16);
    drv.kick(0);
    c0.write_all(b"ok").unwrap();
    let (_, n) = drv.used(0);
    assert_eq!(drv.read(a, n as usize), b"ok");
}

/// CPU seconds used so far by every virtio-console worker thread of
/// this process (idle ones block in poll and use none).
fn cpu_time() -> f64 {
    let mut ticks = 0u64;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != "virtio-console" {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the ")" closing the name: state is field 3, utime
        // and stime fields 14 and 15.
        let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        for i in [11, 12] {
            ticks += f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// A driver sending a bogus control event in a loop gets one warning and
/// then a summary per second, not a line per event (found in review).
#[test]
fn bogus_control_events_are_not_logged_one_by_one() {
    crate::virtio::test_log::init();
    let (mut drv, _p0, _p1) = two_ports();
    handshake(&mut drv);
    // An id of its own, so other tests' lines do not count.
    let bogus = control(4321, event::PORT_READY, 1, &[]);
    for _ in 0..40 {
        for _ in 0..8 {
            drv.post_out(CTRL_TX, &bogus);
        }
        drv.kick(CTRL_TX);
        for _ in 0..8 {
            drv.used(CTRL_TX);
        }
    }
    let n = crate::virtio::test_log::count("PORT_READY event for unknown port 4321");
    assert!((1..=3).contains(&n), "{n} warnings for 320 events");
}
