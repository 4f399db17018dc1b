//! Adapter between a COM port's uart and H2's character backends.
//! (Filled in when bhyve-backends lands.)

use std::sync::{Arc, Mutex};

use bhyve_devices::Uart;

pub struct SerialBackend {
    _uart: Arc<Mutex<Uart>>,
}

impl SerialBackend {
    pub fn open(_path: &str, _uart: Arc<Mutex<Uart>>) -> std::io::Result<Self> {
        Err(std::io::Error::other("character backends are not available yet"))
    }

    pub fn close(self) {}
}
