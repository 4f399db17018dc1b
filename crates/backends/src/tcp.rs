//! `tcp=ip:port` / `tcp=[ipv6]:port`: a listening socket serving one client
//! at a time, as bhyve's uart_tcp_backend. A second client gets
//! "Socket already connected" and is closed; after the client leaves the
//! next one is accepted. With no client, guest output is discarded.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

use crate::pump::Host;
use crate::{sys, BackendError};

const BUSY_MSG: &[u8] = b"Socket already connected\n";

/// Parses the part after `tcp=`; `spec` is the whole option for messages.
pub(crate) fn parse_addr(spec: &str, rest: &str) -> Result<SocketAddr, BackendError> {
    let bad = |reason: &str| BackendError::BadAddress {
        spec: spec.to_owned(),
        reason: reason.to_owned(),
    };
    let (ip, port): (IpAddr, &str) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, port) = v6
            .split_once("]:")
            .ok_or_else(|| bad("expected [ipv6]:port"))?;
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| bad("not a numeric IPv6 address"))?;
        (ip.into(), port)
    } else {
        let (host, port) = rest
            .split_once(':')
            .ok_or_else(|| bad("expected ip:port"))?;
        let ip: Ipv4Addr = host
            .parse()
            .map_err(|_| bad("not a numeric IPv4 address"))?;
        (ip.into(), port)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("port is not a number"));
    }
    let port: u16 = port.parse().map_err(|_| bad("port out of range"))?;
    Ok(SocketAddr::new(ip, port))
}

pub(crate) struct TcpHost {
    listener: TcpListener,
    client: Option<TcpStream>,
}

impl TcpHost {
    pub(crate) fn bind(addr: SocketAddr) -> Result<Self, BackendError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| BackendError::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| BackendError::Bind { addr, source })?;
        Ok(TcpHost {
            listener,
            client: None,
        })
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    fn disconnect(&mut self) {
        if let Some(c) = self.client.take() {
            log::info!("tcp console: client {:?} disconnected", c.peer_addr().ok());
        }
    }
}

impl Host for TcpHost {
    fn input_fd(&self) -> Option<RawFd> {
        self.client.as_ref().map(|c| c.as_raw_fd())
    }

    fn output_fd(&self) -> Option<RawFd> {
        self.input_fd()
    }

    fn extra_fd(&self) -> Option<RawFd> {
        Some(self.listener.as_raw_fd())
    }

    fn on_extra_ready(&mut self) {
        let (conn, peer) = match self.listener.accept() {
            Ok(c) => c,
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    log::debug!("tcp console: accept: {e}");
                }
                return;
            }
        };
        if self.client.is_some() {
            let _ = sys::send(conn.as_raw_fd(), BUSY_MSG);
            log::info!("tcp console: refused {peer}: a client is already connected");
            return; // dropping `conn` closes it
        }
        if conn.set_nonblocking(true).is_err() {
            return;
        }
        let _ = conn.set_nodelay(true);
        log::info!("tcp console: client {peer} connected");
        self.client = Some(conn);
    }

    fn on_input_closed(&mut self) {
        self.disconnect();
    }

    fn on_output_error(&mut self, _err: &io::Error) {
        self.disconnect();
    }

    fn write(&mut self, fd: RawFd, buf: &[u8]) -> io::Result<usize> {
        sys::send(fd, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{guest_read_all, guest_wait_drained, guest_write_all, uart};
    use crate::{open_char_backend, BackendError};
    use std::io::{Read, Write};
    use std::time::Duration;

    #[test]
    fn parse() {
        let p = |s: &str| parse_addr(s, s.strip_prefix("tcp=").unwrap());
        assert_eq!(
            p("tcp=127.0.0.1:4444").unwrap(),
            "127.0.0.1:4444".parse().unwrap()
        );
        assert_eq!(p("tcp=[::1]:23").unwrap(), "[::1]:23".parse().unwrap());
        for bad in [
            "tcp=127.0.0.1",
            "tcp=localhost:1",
            "tcp=1.2.3.4:x",
            "tcp=1.2.3.4:70000",
            "tcp=[::1]",
            "tcp=[::1]:",
            "tcp=::1:5",
        ] {
            assert!(
                matches!(p(bad), Err(BackendError::BadAddress { .. })),
                "{bad}"
            );
        }
        let e = open_char_backend("tcp=1.2.3:5").err().unwrap();
        assert_eq!(
            e.to_string(),
            "invalid tcp backend 'tcp=1.2.3:5': not a numeric IPv4 address"
        );
    }

    fn read_timeout(s: &mut TcpStream, n: usize) -> Vec<u8> {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut v = vec![0u8; n];
        s.read_exact(&mut v).unwrap();
        v
    }

    #[test]
    fn one_client_at_a_time() {
        let backend = open_char_backend("tcp=127.0.0.1:0").unwrap();
        let addr = backend.local_addr().unwrap();
        let e = open_char_backend(&format!("tcp=127.0.0.1:{}", addr.port()))
            .err()
            .unwrap();
        assert!(e.to_string().contains("Address already in use"), "{e}");

        let (dev, _irq) = uart();
        let handle = backend.attach(dev.clone()).unwrap();
        assert_eq!(handle.local_addr(), Some(addr));
        // Output with nobody connected is dropped, not queued.
        guest_write_all(&dev, b"lost");
        guest_wait_drained(&dev);

        let mut c1 = TcpStream::connect(addr).unwrap();
        c1.write_all(b"hi").unwrap();
        assert_eq!(guest_read_all(&dev, 2), b"hi");
        guest_write_all(&dev, b"welcome");
        assert_eq!(read_timeout(&mut c1, 7), b"welcome");

        let mut c2 = TcpStream::connect(addr).unwrap();
        c2.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut refused = Vec::new();
        c2.read_to_end(&mut refused).unwrap();
        assert_eq!(refused, BUSY_MSG, "second client told and closed");

        // The first client is unaffected.
        guest_write_all(&dev, b"still yours");
        assert_eq!(read_timeout(&mut c1, 11), b"still yours");
        drop(c1);

        // The next client is accepted once the first one left.
        let mut c3 = 'accepted: loop {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            for _ in 0..100 {
                guest_write_all(&dev, b"!");
                let mut b = [0u8; 1];
                match c.read(&mut b) {
                    Ok(1) if b[0] == b'!' => break 'accepted c,
                    Ok(_) => break, // refused: the old client was not reaped yet
                    Err(_) => {}    // not accepted yet: output was discarded
                }
            }
        };
        c3.write_all(b"x").unwrap();
        assert_eq!(guest_read_all(&dev, 1), b"x");
        drop(handle);
        let mut rest = Vec::new();
        c3.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c3.read_to_end(&mut rest).unwrap();
        assert!(
            rest.iter().all(|b| *b == b'!'),
            "closed on shutdown: {rest:?}"
        );
    }

    #[test]
    fn ipv6_loopback() {
        let Ok(backend) = open_char_backend("tcp=[::1]:0") else {
            eprintln!("no IPv6 loopback here; skipped");
            return;
        };
        let addr = backend.local_addr().unwrap();
        let (dev, _irq) = uart();
        let _h = backend.attach(dev.clone()).unwrap();
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"6").unwrap();
        assert_eq!(guest_read_all(&dev, 1), b"6");
    }
}
