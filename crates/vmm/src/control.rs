//! The control socket of a running bhyve (`<vm dir>/ctl.sock`): how
//! bhyvectl reaches the VM, where FreeBSD's bhyvectl uses /dev/vmm ioctls.
//!
//! Protocol: one request line per connection, then reply lines.
//! Requests: `reset`, `poweroff`, `nmi <vcpu>`, `stats`.
//! Replies end with `ok` or `error <message>`; `stats` first sends
//! `stat <vcpu> <name> <value>` lines.
//!
//! Clients are untrusted: request lines are bounded, reads and writes time
//! out, and connections are served one at a time so none can pile up
//! threads or memory in bhyve.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest request line the server reads.
const MAX_REQUEST: u64 = 128;
/// Longest reply the client accepts (stats of many vCPUs fit easily).
const MAX_REPLY: u64 = 4 << 20;
/// The server gives a client this long per read/write; the client waits
/// longer, since it may queue behind another (slow) client.
const SERVER_TIMEOUT: Duration = Duration::from_secs(1);
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

/// Names go on a whitespace-separated line: keep them one token.
fn token(name: &str) -> String {
    let t: String = name
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

/// One-line, control-free error text.
fn one_line(msg: &str) -> String {
    msg.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn serve_one(stream: UnixStream, handler: &dyn ControlHandler) -> io::Result<()> {
    stream.set_read_timeout(Some(SERVER_TIMEOUT))?;
    stream.set_write_timeout(Some(SERVER_TIMEOUT))?;
    let mut line = Vec::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_until(b'\n', &mut line)?;
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
                    writeln!(out, "stat {vcpu} {} {value}", token(&name))?;
                }
            }
        }
        Err(e) => writeln!(out, "error {e}")?,
    }
    if !out.starts_with(b"error") {
        out.extend_from_slice(b"ok\n");
    }
    (&stream).write_all(&out)
}

/// The listening side, run by bhyve on a thread of its own. Dropping it
/// stops the thread and removes the socket.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket: the caller holds the VM's run
    /// lock, so no live bhyve owns it) and starts serving.
    pub fn start(path: &Path, handler: Arc<dyn ControlHandler>) -> Result<Self, ControlError> {
        let io_err = |source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let listener = UnixListener::bind(path).map_err(io_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bhyve-ctl".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::Acquire) {
                        break;
                    }
                    match conn {
                        Ok(s) => {
                            if let Err(e) = serve_one(s, handler.as_ref()) {
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
        // Wake the blocking accept with a connection of our own.
        let woke = UnixStream::connect(&self.path).is_ok();
        let _ = std::fs::remove_file(&self.path);
        if let Some(t) = self.thread.take() {
            if woke {
                let _ = t.join();
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
        let w: Vec<&str> = line.split(' ').collect();
        let ["stat", vcpu, name, value] = w[..] else {
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
                (0, vec![("io_exits".into(), 5), ("hlt".into(), 1)]),
                (1, vec![("io_exits".into(), 0)]),
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
        assert!(matches!(
            parse_reply("stat 0 a 1\n"),
            Err(ControlError::Protocol(_))
        ));
        assert!(matches!(
            parse_reply("garbage\nok\n"),
            Err(ControlError::Protocol(_))
        ));
    }
}
