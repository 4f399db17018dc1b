//! The control socket of a running bhyve (`<vm dir>/ctl.sock`): how
//! bhyvectl reaches the VM, where FreeBSD's bhyvectl uses /dev/vmm ioctls.
//!
//! Protocol: one request line per connection, then reply lines.
//! Requests: `reset`, `poweroff`, `nmi <vcpu>`, `stats`.
//! Replies end with `ok` or `error <message>`; `stats` first sends
//! `stat <vcpu> <value> <name to the end of the line>` lines.
//!
//! Clients are untrusted: request lines are bounded, each connection has
//! an overall deadline, and connections are served one at a time so none
//! can pile up threads or memory in bhyve.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest request line the server reads.
const MAX_REQUEST: u64 = 128;
/// Longest reply the client accepts (stats of many vCPUs fit easily).
const MAX_REPLY: u64 = 4 << 20;
/// The server gives a connection this long in all (a client dripping one
/// byte at a time cannot hold it longer); the client waits longer, since
/// it may queue behind another (slow) client.
const SERVER_DEADLINE: Duration = Duration::from_secs(2);
/// How long dropping the server waits for its thread to finish.
const STOP_WAIT: Duration = Duration::from_secs(3);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-vCPU statistics: `(vcpu, [(counter name, value)])`.
pub type Stats = Vec<(u32, Vec<(String, u64)>)>;

/// What the running VM offers bhyvectl. Implemented by the vmm.
pub trait ControlHandler: Send + Sync {
    /// Like a reset through port 0xcf9: bhyve exits 0 (reboot).
    fn force_reset(&self);
    /// Like ACPI power-off: bhyve exits 1.
    fn force_poweroff(&self);
    fn inject_nmi(&self, vcpu: u32) -> Result<(), String>;
    fn stats(&self) -> Stats;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    ForceReset,
    ForcePoweroff,
    InjectNmi(u32),
    Stats,
}

impl Request {
    fn line(&self) -> String {
        match self {
            Request::ForceReset => "reset".into(),
            Request::ForcePoweroff => "poweroff".into(),
            Request::InjectNmi(v) => format!("nmi {v}"),
            Request::Stats => "stats".into(),
        }
    }

    fn parse(line: &str) -> Result<Self, String> {
        let mut w = line.split_ascii_whitespace();
        let req = match (w.next(), w.next()) {
            (Some("reset"), None) => Request::ForceReset,
            (Some("poweroff"), None) => Request::ForcePoweroff,
            (Some("stats"), None) => Request::Stats,
            (Some("nmi"), Some(v)) => {
                Request::InjectNmi(v.parse().map_err(|_| format!("bad vcpu '{v}'"))?)
            }
            _ => return Err("unknown request".into()),
        };
        if w.next().is_some() {
            return Err("unknown request".into());
        }
        Ok(req)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Ok,
    Stats(Stats),
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nobody listens on the socket: the VM is not running.
    #[error("VM is not running")]
    NotRunning,
    /// The VM refused the request.
    #[error("{0}")]
    Remote(String),
    #[error("bad reply from bhyve: {0}")]
    Protocol(String),
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A name ends its line: keep it on that line.
fn stat_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect()
}

/// Reads from a stream, each read bounded by what is left until `until`.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

fn remaining(until: Instant) -> io::Result<Duration> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection deadline",
        ))
    } else {
        Ok(left)
    }
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(remaining(self.until)?))?;
        (&mut &*self.stream).read(buf)
    }
}

/// One-line, control-free error text.
fn one_line(msg: &str) -> String {
    msg.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn serve_one(stream: UnixStream, handler: &dyn ControlHandler, limit: Duration) -> io::Result<()> {
    let until = Instant::now() + limit;
    let mut line = Vec::new();
    let reader = DeadlineReader {
        stream: &stream,
        until,
    };
    BufReader::new(reader.take(MAX_REQUEST)).read_until(b'\n', &mut line)?;
    let mut out = Vec::new();
    let reply = match std::str::from_utf8(&line) {
        Ok(s) if line.ends_with(b"\n") => Request::parse(s.trim_end()),
        _ => Err("malformed request".into()),
    };
    match reply {
        Ok(Request::ForceReset) => handler.force_reset(),
        Ok(Request::ForcePoweroff) => handler.force_poweroff(),
        Ok(Request::InjectNmi(v)) => {
            if let Err(e) = handler.inject_nmi(v) {
                writeln!(out, "error {}", one_line(&e))?;
            }
        }
        Ok(Request::Stats) => {
            for (vcpu, counters) in handler.stats() {
                for (name, value) in counters {
                    writeln!(out, "stat {vcpu} {value} {}", stat_name(&name))?;
                }
            }
        }
        Err(e) => writeln!(out, "error {e}")?,
    }
    if !out.starts_with(b"error") {
        out.extend_from_slice(b"ok\n");
    }
    // The reply is small; a client that will not take it within the
    // deadline loses it.
    stream.set_write_timeout(Some(remaining(until)?))?;
    (&stream).write_all(&out)
}

/// The listening side, run by bhyve on a thread of its own. Dropping it
/// stops the thread and removes the socket.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    /// Shared with the thread so the descriptor stays valid for Drop's
    /// shutdown(2) however the thread ends.
    listener: Arc<UnixListener>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket: the caller holds the VM's run
    /// lock, so no live bhyve owns it) and starts serving.
    pub fn start(path: &Path, handler: Arc<dyn ControlHandler>) -> Result<Self, ControlError> {
        Self::start_with_deadline(path, handler, SERVER_DEADLINE)
    }

    fn start_with_deadline(
        path: &Path,
        handler: Arc<dyn ControlHandler>,
        deadline: Duration,
    ) -> Result<Self, ControlError> {
        let io_err = |source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let listener = Arc::new(UnixListener::bind(path).map_err(io_err)?);
        let listener2 = Arc::clone(&listener);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bhyve-ctl".into())
            .spawn(move || {
                for conn in listener2.incoming() {
                    if stop2.load(Ordering::Acquire) {
                        break;
                    }
                    match conn {
                        Ok(s) => {
                            if let Err(e) = serve_one(s, handler.as_ref(), deadline) {
                                log::debug!("control connection: {e}");
                            }
                        }
                        Err(e) => {
                            log::warn!("control socket accept: {e}");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
            .map_err(io_err)?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            listener,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the blocking accept (it fails from now on), even if the
        // socket file was removed behind our back.
        // SAFETY: shutdown on a descriptor kept open by self.listener.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        let _ = std::fs::remove_file(&self.path);
        if let Some(t) = self.thread.take() {
            // A connection in service ends by its deadline; never hang
            // bhyve's exit on it beyond that.
            let start = Instant::now();
            while !t.is_finished() && start.elapsed() < STOP_WAIT {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                log::warn!("control thread did not stop; leaving it");
            }
        }
    }
}

/// bhyvectl's side: sends one request to the VM behind `path`.
pub fn request(path: &Path, req: &Request) -> Result<Response, ControlError> {
    let io_err = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning)
        }
        Err(e) => return Err(io_err(e)),
    };
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(io_err)?;
    stream
        .set_write_timeout(Some(CLIENT_TIMEOUT))
        .map_err(io_err)?;
    (&stream)
        .write_all(format!("{}\n", req.line()).as_bytes())
        .map_err(io_err)?;
    let mut text = String::new();
    (&stream)
        .take(MAX_REPLY)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    match (req, parse_reply(&text)?) {
        // A VM without counters answers a bare "ok".
        (Request::Stats, Response::Ok) => Ok(Response::Stats(Vec::new())),
        (_, r) => Ok(r),
    }
}

fn parse_reply(text: &str) -> Result<Response, ControlError> {
    let proto = |m: &str| ControlError::Protocol(m.to_string());
    let mut stats: Stats = Vec::new();
    let mut saw_stats = false;
    for line in text.lines() {
        if line == "ok" {
            return Ok(if saw_stats {
                Response::Stats(stats)
            } else {
                Response::Ok
            });
        }
        if let Some(msg) = line.strip_prefix("error ") {
            return Err(ControlError::Remote(msg.to_string()));
        }
        let w: Vec<&str> = line.splitn(4, ' ').collect();
        let ["stat", vcpu, value, name] = w[..] else {
            return Err(proto(line));
        };
        let vcpu: u32 = vcpu.parse().map_err(|_| proto(line))?;
        let value: u64 = value.parse().map_err(|_| proto(line))?;
        saw_stats = true;
        match stats.last_mut() {
            Some((v, c)) if *v == vcpu => c.push((name.to_string(), value)),
            _ => stats.push((vcpu, vec![(name.to_string(), value)])),
        }
    }
    Err(proto("reply ended early"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl ControlHandler for Recorder {
        fn force_reset(&self) {
            self.0.lock().unwrap().push("reset".into());
        }
        fn force_poweroff(&self) {
            self.0.lock().unwrap().push("poweroff".into());
        }
        fn inject_nmi(&self, vcpu: u32) -> Result<(), String> {
            if vcpu >= 2 {
                return Err(format!("no vcpu {vcpu}\nsecond line"));
            }
            self.0.lock().unwrap().push(format!("nmi {vcpu}"));
            Ok(())
        }
        fn stats(&self) -> Stats {
            vec![
                (0, vec![("io exits".into(), 5), ("hlt".into(), 1)]),
                (1, vec![("io exits".into(), 0)]),
            ]
        }
    }

    fn sock(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("bhyve-ctl-{tag}-{}.sock", std::process::id()))
    }

    #[test]
    fn requests_reach_the_handler() {
        let path = sock("req");
        let rec = Arc::new(Recorder::default());
        let srv = ControlServer::start(&path, rec.clone()).unwrap();
        assert_eq!(request(&path, &Request::ForceReset).unwrap(), Response::Ok);
        assert_eq!(
            request(&path, &Request::ForcePoweroff).unwrap(),
            Response::Ok
        );
        assert_eq!(
            request(&path, &Request::InjectNmi(1)).unwrap(),
            Response::Ok
        );
        match request(&path, &Request::InjectNmi(7)) {
            Err(ControlError::Remote(m)) => assert_eq!(m, "no vcpu 7 second line"),
            r => panic!("{r:?}"),
        }
        assert_eq!(
            request(&path, &Request::Stats).unwrap(),
            Response::Stats(vec![
                (0, vec![("io exits".into(), 5), ("hlt".into(), 1)]),
                (1, vec![("io exits".into(), 0)]),
            ])
        );
        assert_eq!(*rec.0.lock().unwrap(), ["reset", "poweroff", "nmi 1"]);
        drop(srv);
        assert!(!path.exists());
        assert!(matches!(
            request(&path, &Request::Stats),
            Err(ControlError::NotRunning)
        ));
    }

    #[test]
    fn survives_hostile_clients() {
        let path = sock("hostile");
        let rec = Arc::new(Recorder::default());
        let srv = ControlServer::start(&path, rec.clone()).unwrap();
        let raw = |bytes: &[u8]| {
            let mut s = UnixStream::connect(&path).unwrap();
            let _ = s.write_all(bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        };
        assert!(raw(b"reboot\n").starts_with("error"));
        assert!(raw(b"nmi x\n").starts_with("error"));
        assert!(raw(b"nmi 99999999999\n").starts_with("error"));
        assert!(raw(b"reset").starts_with("error"), "no newline");
        assert!(raw(b"\xff\xfe\n").starts_with("error"));
        assert!(raw(&vec![b'a'; 100_000]).starts_with("error"));
        assert!(raw(b"").starts_with("error"));
        // A client that connects and says nothing only delays others.
        let idle = UnixStream::connect(&path).unwrap();
        assert_eq!(
            request(&path, &Request::InjectNmi(0)).unwrap(),
            Response::Ok
        );
        drop(idle);
        assert_eq!(*rec.0.lock().unwrap(), ["nmi 0"]);
        drop(srv);
    }

    #[test]
    fn reply_parsing() {
        assert_eq!(parse_reply("ok\n").unwrap(), Response::Ok);
        assert!(matches!(parse_reply(""), Err(ControlError::Protocol(_))));
        assert!(matches!(
            parse_reply("stat 0 a\nok\n"),
            Err(ControlError::Protocol(_))
        ));
        assert_eq!(
            parse_reply("stat 0 7 a b  c\nok\n").unwrap(),
            Response::Stats(vec![(0, vec![("a b  c".into(), 7)])])
        );
        assert!(matches!(
            parse_reply("stat 0 a 1\nok\n"),
            Err(ControlError::Protocol(_))
        ));
        assert!(matches!(
            parse_reply("stat 0 1 a\n"),
            Err(ControlError::Protocol(_))
        ));
        assert!(matches!(
            parse_reply("garbage\nok\n"),
            Err(ControlError::Protocol(_))
        ));
    }

    #[test]
    fn slow_drip_client_cannot_hold_the_server() {
        let path = sock("drip");
        let rec = Arc::new(Recorder::default());
        let srv =
            ControlServer::start_with_deadline(&path, rec.clone(), Duration::from_millis(500))
                .unwrap();
        // One byte every 100 ms: each read is quick, the whole never ends.
        let mut drip = UnixStream::connect(&path).unwrap();
        let dripper = std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(4) {
                if drip.write_all(b"x").is_err() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        });
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        assert_eq!(
            request(&path, &Request::InjectNmi(0)).unwrap(),
            Response::Ok
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(dripper.join().unwrap(), "server hung up on the dripper");
        drop(srv);
    }

    #[test]
    fn drop_stops_the_thread_without_the_socket_file() {
        let path = sock("drop");
        let rec = Arc::new(Recorder::default());
        let srv = ControlServer::start(&path, rec.clone()).unwrap();
        std::fs::remove_file(&path).unwrap();
        let start = Instant::now();
        drop(srv);
        assert!(start.elapsed() < Duration::from_secs(1));
        // The thread ended and dropped its handle on the handler.
        assert_eq!(Arc::strong_count(&rec), 1);
    }
}
