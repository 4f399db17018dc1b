//! Recording fakes for device unit tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::{ExitRequest, IrqLine, VmControl};

/// An interrupt line that remembers every level it was driven to.
#[derive(Default)]
pub struct RecIrq {
    pub levels: Mutex<Vec<bool>>,
    pub high: AtomicBool,
}

impl RecIrq {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn is_high(&self) -> bool {
        self.high.load(Ordering::SeqCst)
    }
    pub fn history(&self) -> Vec<bool> {
        self.levels.lock().unwrap().clone()
    }
}

impl IrqLine for RecIrq {
    fn set_level(&self, high: bool) {
        self.levels.lock().unwrap().push(high);
        self.high.store(high, Ordering::SeqCst);
    }
}

/// A VM that records exit requests.
#[derive(Default)]
pub struct RecVm {
    pub exits: Mutex<Vec<ExitRequest>>,
}

impl RecVm {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn exits(&self) -> Vec<ExitRequest> {
        self.exits.lock().unwrap().clone()
    }
}

impl VmControl for RecVm {
    fn request_exit(&self, req: ExitRequest) {
        self.exits.lock().unwrap().push(req);
    }
}
