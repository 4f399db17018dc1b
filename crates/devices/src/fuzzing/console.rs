//! virtio-console: arbitrary control messages from the driver (queue 3),
//! buffers for the device's own (queue 2), and port data both ways with
//! a client connected to port 0's socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use super::driver::Machine;
use super::{Cursor, TmpDir};
use crate::virtio::console::{PortSpec, VirtioConsole, F_MULTIPORT};

const PORT0_TX: usize = 1;
const CTRL_TX: usize = 3;

/// Input: flags (1: a client connects to port 0 and sends the next
/// `u16`-counted bytes; 2: port 1 exists too), then the driver program
/// of [`Machine`] (queues 0/1 port 0, 2/3 control, then two per port).
pub fn virtio_console(data: &[u8]) {
    let mut c = Cursor(data);
    let (Some(flags), Some(len)) = (c.u8(), c.u16()) else {
        return;
    };
    let host_data = c.take(len.into()).to_vec();
    let Some(tmp) = TmpDir::new("vtcon") else {
        return;
    };
    let mut specs = vec![PortSpec {
        id: 0,
        name: "port0".into(),
        path: tmp.0.join("p0.sock"),
    }];
    if flags & 2 != 0 {
        specs.push(PortSpec {
            id: 1,
            name: "org.fuzz.one".into(),
            path: tmp.0.join("p1.sock"),
        });
    }
    let Ok(dev) = VirtioConsole::new(&specs) else {
        return;
    };
    let client = if flags & 1 != 0 {
        UnixStream::connect(&specs[0].path).ok()
    } else {
        None
    };
    if let Some(mut s) = client.as_ref() {
        let _ = s.set_nonblocking(true);
        let _ = s.write(&host_data);
    }
    let Some(mut m) = Machine::start(Box::new(dev), &mut c) else {
        return;
    };
    if m.is_active() {
        m.post_chains(&mut c);
        let mut buf = vec![0u8; 1 << 16];
        // Without MULTIPORT only port 0's queues are served.
        let mut waits = Vec::new();
        if m.features & F_MULTIPORT != 0 {
            waits.push(CTRL_TX);
        }
        if client.is_some() {
            waits.push(PORT0_TX);
        }
        m.wait_answered(&waits, || {
            if let Some(mut s) = client.as_ref() {
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            }
        });
    }
    m.finish();
    drop(client);
}
