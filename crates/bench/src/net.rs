//! virtio-net: the `virtio_net_bench` guest under our bhyve and QEMU's
//! `virtio-net-pci`, both on one tap the bench creates. Transmit: the
//! guest sends, the tap's `rx_packets` confirms every frame left.
//! Receive: once the guest prints its marker, a thread of the bench sends
//! 60-byte frames out of the tap's interface (an AF_PACKET socket), which
//! the VMM reads from its tap file; the guest times what reaches it.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::ramdir::{Ram, RunDir};
use crate::virtio::{
    bhyve_cmd, check_lines, first_then_second, parse, qemu_cmd, run_guest, tsc_hz, BenchLine, Table,
};

const RX_MARKER: &str = "virtio_net_bench: receiving";

/// A tap the bench creates (and removes on drop), up, so frames the
/// guests send are taken by the host stack and counted.
struct Tap {
    name: String,
}

impl Tap {
    fn create() -> Result<Tap> {
        let name = format!("bbench{}", std::process::id() % 100_000);
        ip(&["tuntap", "add", "dev", &name, "mode", "tap"])?;
        let tap = Tap { name };
        ip(&["link", "set", &tap.name, "up"])?;
        Ok(tap)
    }

    /// Frames the host received from the guest side.
    fn rx_packets(&self) -> Result<u64> {
        let p = format!("/sys/class/net/{}/statistics/rx_packets", self.name);
        let s = std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?;
        s.trim().parse().with_context(|| format!("parsing {p}"))
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = ip(&["tuntap", "del", "dev", &self.name, "mode", "tap"]);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let st = Command::new("ip")
        .args(args)
        .status()
        .with_context(|| "running ip(8) (install iproute2)")?;
    if !st.success() {
        bail!("ip {} failed: {st}", args.join(" "));
    }
    Ok(())
}

/// Runs one net guest and checks the tap saw every frame it reported.
fn net_once(
    tap: &Tap,
    cmd: &mut Command,
    who: &str,
    frames: u64,
    rxframes: u64,
) -> Result<Vec<BenchLine>> {
    let before = tap.rx_packets()?;
    let go = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = Sender::start(&tap.name, go.clone(), stop.clone())?;
    let out = run_guest(cmd, who, Some((RX_MARKER, go)));
    stop.store(true, Ordering::Release);
    sender.join();
    let out = out?;
    let got = tap.rx_packets()? - before;
    let lines = parse(&out)?;
    check_lines(who, &lines, &["tx-60b", "rx-60b"])?;
    if got < frames {
        bail!("{who}: the guest sent {frames} frames, the tap received {got}");
    }
    if lines[1].count != rxframes {
        bail!(
            "{who}: the guest received {} of {rxframes} frames before ~3 s without one",
            lines[1].count
        );
    }
    Ok(lines)
}

/// The host side of the receive test: sends one 60-byte broadcast frame
/// after another out of the tap's interface from `go` until `stop`.
/// Frames the VMM does not read in time are dropped by the tap's queue:
/// the guest's rate is what its VMM delivers.
struct Sender {
    thread: JoinHandle<()>,
}

impl Sender {
    fn start(ifname: &str, go: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> Result<Sender> {
        let fd = packet_socket(ifname)?;
        let thread = std::thread::spawn(move || {
            // The whole Fd moves in (not just its field), so the socket
            // lives as long as the thread.
            let fd = fd;
            let mut frame = [0u8; 60];
            frame[..6].fill(0xff);
            frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 3]);
            frame[12..14].copy_from_slice(&[0x88, 0xb5]);
            while !go.load(Ordering::Acquire) {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            while !stop.load(Ordering::Acquire) {
                // SAFETY: fd is our socket, frame a live buffer; errors
                // (ENOBUFS when the queue is full) only drop the frame.
                unsafe { libc::send(fd.0, frame.as_ptr().cast(), frame.len(), 0) };
            }
        });
        Ok(Sender { thread })
    }

    fn join(self) {
        let _ = self.thread.join();
    }
}

struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

/// An AF_PACKET socket bound to `ifname` (protocol 0: it receives nothing).
fn packet_socket(ifname: &str) -> Result<Fd> {
    let name = std::ffi::CString::new(ifname).context("interface name")?;
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("{ifname}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    let fd = Fd(fd);
    // SAFETY: sockaddr_ll is plain data.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = index as i32;
    // SAFETY: sa is a valid sockaddr_ll of the given size.
    let r = unsafe {
        libc::bind(
            fd.0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        bail!("binding to {ifname}: {}", std::io::Error::last_os_error());
    }
    Ok(fd)
}

pub fn run_net(
    bhyve: &Path,
    qemu: &str,
    work: &Path,
    ram: Ram,
    runs: usize,
    frames: u64,
    rxframes: u64,
) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/net/tun").exists() {
        println!("net: skipped: needs root and /dev/net/tun (a tap device)");
        return Ok(());
    }
    let guest = bhyve_testguests::write_guest("virtio_net_bench", work)?;
    let rundir = RunDir::new(work, ram);
    let tap = Tap::create()?;
    net_runs(bhyve, qemu, &guest, &rundir, &tap, runs, (frames, rxframes))
}

fn net_runs(
    bhyve: &Path,
    qemu: &str,
    guest: &Path,
    rundir: &RunDir,
    tap: &Tap,
    runs: usize,
    (frames, rxframes): (u64, u64),
) -> Result<()> {
    let cmdline = format!("frames={frames} rxframes={rxframes}");
    let hz = tsc_hz();
    let mut t = Table::default();
    let slot = format!("5,virtio-net,{}", tap.name);
    let dev = [
        "-netdev".to_string(),
        format!("tap,id=n,ifname={},script=no,downscript=no", tap.name),
        "-device".to_string(),
        "virtio-net-pci,netdev=n".to_string(),
    ];
    for run in 0..runs.max(1) {
        for ours in first_then_second(run) {
            let (mut c, who) = if ours {
                (
                    bhyve_cmd(bhyve, rundir.path(), guest, &cmdline, &slot),
                    "bhyve",
                )
            } else {
                (qemu_cmd(qemu, guest, &cmdline, &dev), "qemu")
            };
            t.add(&net_once(tap, &mut c, who, frames, rxframes)?, hz, ours);
        }
    }
    println!(
        "net: `virtio_net_bench` ({cmdline}), 60-byte frames to a tap (up, frames \
         counted by the host) and from it (sent by the host as fast as it can), \
         {}, TSC {:.0} MHz, median of {} runs",
        rundir.describe(),
        hz / 1e6,
        runs.max(1)
    );
    t.print();
    Ok(())
}
