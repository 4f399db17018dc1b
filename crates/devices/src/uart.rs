//! 16550A uart, behaving as bhyve's `uart_emul.c` / `uart_ns16550.c`.
//!
//! Register semantics follow bhyve: a 16-byte receive FIFO once enabled
//! through FCR (one byte before that), loopback through MCR bit 4, DCD and
//! DSR always asserted outside loopback, IIR priorities RLS > RX data >
//! THRE > modem status, and a THRE interrupt that is armed when IER enables
//! it with the transmitter empty and disarmed by the IIR read that reports
//! it. Like bhyve (and QEMU), MCR.OUT2 does not gate the interrupt line:
//! guests that never set it still get interrupts.
//!
//! Where bhyve writes each byte straight to the host fd from the vCPU
//! thread, this uart never blocks: output goes into a bounded buffer that a
//! backend drains through [`CharFrontend`]. While fewer than [`FIFO_SIZE`]
//! bytes of room are left, LSR.THRE reads 0 (the guest waits, no byte is
//! lost); when the backend makes room, THRE comes back and the THRE interrupt
//! is re-armed. TEMT reads 1 only when everything went to the backend.
//!
//! The interrupt line is level-driven: high while a reason is pending.
//!
//! Wiring (done by the vmm, as bhyve's LPC does): one `Arc<Mutex<Uart>>` per
//! port, inserted on the PIO bus at [`COM_PORTS`]`[i].0` with length
//! [`UART_REG_COUNT`], its IRQ line the ISA IRQ `COM_PORTS[i].1`
//! (com1 0x3f8/4, com2 0x2f8/3, com3 0x3e8/4, com4 0x2e8/3); the same `Arc`
//! (as `Arc<dyn CharFrontend>`) goes to `bhyve_backends::attach`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::chardev::{CharFrontend, Notifier};
use crate::{BusDevice, IrqLine};

/// (I/O base, ISA IRQ) of com1..com4, as bhyve's LPC assigns them.
pub const COM_PORTS: [(u64, u32); 4] = [(0x3f8, 4), (0x2f8, 3), (0x3e8, 4), (0x2e8, 3)];
/// Number of byte registers a uart decodes.
pub const UART_REG_COUNT: u64 = 8;
/// Receive FIFO depth with FIFOs enabled (bhyve's FIFOSZ).
pub const FIFO_SIZE: usize = 16;
/// Guest output buffered for the backend before the transmitter looks busy.
pub const TX_BUFFER_SIZE: usize = 4096;

const REG_DATA: u64 = 0; // RBR / THR; DLL when DLAB
const REG_IER: u64 = 1; // DLM when DLAB
const REG_IIR: u64 = 2; // FCR on write
const REG_LCR: u64 = 3;
const REG_MCR: u64 = 4;
const REG_LSR: u64 = 5;
const REG_MSR: u64 = 6;
const REG_SCR: u64 = 7;

const IER_ERXRDY: u8 = 0x01;
const IER_ETXRDY: u8 = 0x02;
const IER_ERLS: u8 = 0x04;
const IER_EMSC: u8 = 0x08;

const IIR_NOPEND: u8 = 0x01;
const IIR_MLSC: u8 = 0x00;
const IIR_TXRDY: u8 = 0x02;
const IIR_RLS: u8 = 0x06;
const IIR_RXTOUT: u8 = 0x0c;
const IIR_FIFO_MASK: u8 = 0xc0;

const FCR_ENABLE: u8 = 0x01;
const FCR_RCV_RST: u8 = 0x02;
const FCR_DMA: u8 = 0x08;
const FCR_RX_MASK: u8 = 0xc0;

const LCR_DLAB: u8 = 0x80;

const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOPBACK: u8 = 0x10;

const LSR_RXRDY: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;
const MSR_DELTA_MASK: u8 = 0x0f;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;

const DEFAULT_RCLK: u32 = 1_843_200;
const DEFAULT_BAUD: u32 = 9600;

/// Receive FIFO; `size` is 1 in 16450 mode and [`FIFO_SIZE`] with FIFOs on.
struct RxFifo {
    buf: [u8; FIFO_SIZE],
    start: usize,
    len: usize,
    size: usize,
}

impl RxFifo {
    fn new(size: usize) -> Self {
        RxFifo {
            buf: [0; FIFO_SIZE],
            start: 0,
            len: 0,
            size: size.clamp(1, FIFO_SIZE),
        }
    }

    fn room(&self) -> usize {
        self.size - self.len
    }

    fn push(&mut self, b: u8) -> bool {
        if self.len >= self.size {
            return false;
        }
        self.buf[(self.start + self.len) % self.size] = b;
        self.len += 1;
        true
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.start];
        self.start = (self.start + 1) % self.size;
        self.len -= 1;
        Some(b)
    }
}

/// In loopback mode some MCR outputs appear as MSR inputs; otherwise DCD
/// and DSR are held asserted so a guest's tty open never waits for carrier.
fn modem_status(mcr: u8) -> u8 {
    if mcr & MCR_LOOPBACK == 0 {
        return MSR_DCD | MSR_DSR;
    }
    let mut msr = 0;
    if mcr & MCR_RTS != 0 {
        msr |= MSR_CTS;
    }
    if mcr & MCR_DTR != 0 {
        msr |= MSR_DSR;
    }
    if mcr & MCR_OUT1 != 0 {
        msr |= MSR_RI;
    }
    if mcr & MCR_OUT2 != 0 {
        msr |= MSR_DCD;
    }
    msr
}

/// One 16550A. Share it as `Arc<Mutex<Uart>>`: that is both the bus device
/// and the backend's [`CharFrontend`].
pub struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    /// Only the sticky OE bit lives here; the rest is computed on read.
    lsr: u8,
    msr: u8,
    fcr: u8,
    scr: u8,
    dll: u8,
    dlh: u8,
    rx: RxFifo,
    tx: VecDeque<u8>,
    thre_int_pending: bool,
    irq: Arc<dyn IrqLine>,
    irq_high: bool,
    notifier: Option<Notifier>,
    /// The backend was refused input and waits for room.
    host_rx_waiting: bool,
    /// Bytes lost because the guest wrote THR while THRE read 0.
    tx_overruns: u64,
}

impl Uart {
    /// A uart in its power-on state (9600 baud divisor, FIFOs off), with no
    /// backend: output is dropped until one is attached.
    pub fn new(irq: Arc<dyn IrqLine>) -> Self {
        let divisor = (DEFAULT_RCLK / DEFAULT_BAUD / 16) as u16;
        Uart {
            ier: 0,
            lcr: 0,
            mcr: 0,
            lsr: 0,
            msr: modem_status(0),
            fcr: 0,
            scr: 0,
            dll: divisor as u8,
            dlh: (divisor >> 8) as u8,
            rx: RxFifo::new(1),
            tx: VecDeque::with_capacity(TX_BUFFER_SIZE),
            thre_int_pending: false,
            irq,
            irq_high: false,
            notifier: None,
            host_rx_waiting: false,
            tx_overruns: 0,
        }
    }

    /// Bytes the guest wrote while the transmitter was reported busy.
    pub fn tx_overruns(&self) -> u64 {
        self.tx_overruns
    }

    fn thr_empty(&self) -> bool {
        TX_BUFFER_SIZE - self.tx.len() >= FIFO_SIZE
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOPBACK != 0
    }

    fn intr_reason(&self) -> u8 {
        if self.lsr & LSR_OE != 0 && self.ier & IER_ERLS != 0 {
            IIR_RLS
        } else if self.rx.len > 0 && self.ier & IER_ERXRDY != 0 {
            IIR_RXTOUT
        } else if self.thre_int_pending && self.ier & IER_ETXRDY != 0 {
            IIR_TXRDY
        } else if self.msr & MSR_DELTA_MASK != 0 && self.ier & IER_EMSC != 0 {
            IIR_MLSC
        } else {
            IIR_NOPEND
        }
    }

    fn update_irq(&mut self) {
        let high = self.intr_reason() != IIR_NOPEND;
        if high != self.irq_high {
            self.irq_high = high;
            self.irq.set_level(high);
        }
    }

    fn notify(&self) {
        if let Some(n) = &self.notifier {
            n();
        }
    }

    /// Wakes a backend that was refused input, now that there is room.
    fn rx_space_freed(&mut self) {
        if self.host_rx_waiting && self.rx.room() > 0 {
            self.host_rx_waiting = false;
            self.notify();
        }
    }

    fn reset_rx_fifo(&mut self, size: usize) {
        self.rx = RxFifo::new(size);
        self.rx_space_freed();
    }

    fn write_thr(&mut self, value: u8) {
        if self.loopback() {
            if !self.rx.push(value) {
                self.lsr |= LSR_OE;
            }
        } else if self.notifier.is_some() {
            if self.tx.len() < TX_BUFFER_SIZE {
                let was_empty = self.tx.is_empty();
                self.tx.push_back(value);
                if was_empty {
                    self.notify();
                }
            } else {
                // Only a guest ignoring THRE gets here; hardware drops too.
                if self.tx_overruns == 0 {
                    log::warn!(
                        "uart: guest wrote THR while the transmitter was busy; byte dropped"
                    );
                }
                self.tx_overruns += 1;
            }
        } // else: no backend, drop on the floor like bhyve
        self.thre_int_pending = self.thr_empty();
    }

    fn write_mcr(&mut self, value: u8) {
        self.mcr = value & 0x1f;
        let msr = modem_status(self.mcr);
        if (msr ^ self.msr) & MSR_CTS != 0 {
            self.msr |= MSR_DCTS;
        }
        if (msr ^ self.msr) & MSR_DSR != 0 {
            self.msr |= MSR_DDSR;
        }
        if (msr ^ self.msr) & MSR_DCD != 0 {
            self.msr |= MSR_DDCD;
        }
        if self.msr & MSR_RI != 0 && msr & MSR_RI == 0 {
            self.msr |= MSR_TERI;
        }
        self.msr = (self.msr & MSR_DELTA_MASK) | msr;
    }

    fn write_fcr(&mut self, value: u8) {
        // Switching between 16450 and FIFO mode empties the receive FIFO.
        if (self.fcr ^ value) & FCR_ENABLE != 0 {
            let size = if value & FCR_ENABLE != 0 {
                FIFO_SIZE
            } else {
                1
            };
            self.reset_rx_fifo(size);
        }
        if value & FCR_ENABLE == 0 {
            self.fcr = 0;
        } else {
            if value & FCR_RCV_RST != 0 {
                self.reset_rx_fifo(FIFO_SIZE);
            }
            self.fcr = value & (FCR_ENABLE | FCR_DMA | FCR_RX_MASK);
        }
    }

    /// Guest write of one register.
    pub fn write_reg(&mut self, offset: u64, value: u8) {
        if self.lcr & LCR_DLAB != 0 && offset <= REG_IER {
            if offset == REG_DATA {
                self.dll = value;
            } else {
                self.dlh = value;
            }
            self.update_irq();
            return;
        }
        match offset {
            REG_DATA => self.write_thr(value),
            REG_IER => {
                if self.ier & IER_ETXRDY == 0 && value & IER_ETXRDY != 0 && self.thr_empty() {
                    self.thre_int_pending = true;
                }
                self.ier = value & 0x0f;
            }
            REG_IIR => self.write_fcr(value),
            REG_LCR => self.lcr = value,
            REG_MCR => self.write_mcr(value),
            REG_SCR => self.scr = value,
            _ => {} // LSR and MSR are read-only
        }
        self.update_irq();
    }

    /// Guest read of one register (with its side effects).
    pub fn read_reg(&mut self, offset: u64) -> u8 {
        let value = if self.lcr & LCR_DLAB != 0 && offset <= REG_IER {
            if offset == REG_DATA {
                self.dll
            } else {
                self.dlh
            }
        } else {
            match offset {
                REG_DATA => {
                    let b = self.rx.pop().unwrap_or(0xff);
                    self.rx_space_freed();
                    b
                }
                REG_IER => self.ier,
                REG_IIR => {
                    let reason = self.intr_reason();
                    if reason == IIR_TXRDY {
                        self.thre_int_pending = false;
                    }
                    let fifo = if self.fcr & FCR_ENABLE != 0 {
                        IIR_FIFO_MASK
                    } else {
                        0
                    };
                    fifo | reason
                }
                REG_LCR => self.lcr,
                REG_MCR => self.mcr,
                REG_LSR => {
                    let mut lsr = self.lsr & LSR_OE;
                    if self.rx.len > 0 {
                        lsr |= LSR_RXRDY;
                    }
                    if self.thr_empty() {
                        lsr |= LSR_THRE;
                        if self.tx.is_empty() {
                            lsr |= LSR_TEMT;
                        }
                    }
                    self.lsr &= !LSR_OE;
                    lsr
                }
                REG_MSR => {
                    let msr = self.msr;
                    self.msr &= !MSR_DELTA_MASK;
                    msr
                }
                REG_SCR => self.scr,
                _ => 0xff,
            }
        };
        self.update_irq();
        value
    }

    /// Host side: drains pending guest output (see [`CharFrontend`]).
    pub fn take_output(&mut self, buf: &mut [u8]) -> usize {
        let was_busy = !self.thr_empty();
        let n = buf.len().min(self.tx.len());
        for (dst, src) in buf.iter_mut().zip(self.tx.drain(..n)) {
            *dst = src;
        }
        if was_busy && self.thr_empty() {
            self.thre_int_pending = true;
            self.update_irq();
        }
        n
    }

    /// Host side: offers input (see [`CharFrontend`]).
    pub fn give_input(&mut self, data: &[u8]) -> usize {
        if data.is_empty() {
            return 0;
        }
        // In loopback the receiver is cut off from the line: input is lost,
        // as on hardware and in bhyve.
        if self.loopback() {
            return data.len();
        }
        let mut n = 0;
        while n < data.len() && self.rx.push(data[n]) {
            n += 1;
        }
        if n < data.len() {
            self.host_rx_waiting = true;
        }
        if n > 0 {
            self.update_irq();
        }
        n
    }

    /// Host side: installs or removes the backend (see [`CharFrontend`]).
    pub fn set_notifier(&mut self, notifier: Option<Notifier>) {
        if notifier.is_none() {
            let was_busy = !self.thr_empty();
            self.tx.clear();
            self.host_rx_waiting = false;
            if was_busy {
                self.thre_int_pending = true;
            }
        }
        self.notifier = notifier;
        self.update_irq();
    }
}

impl BusDevice for Uart {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        // bhyve's uart decodes byte accesses only; anything wider floats.
        if data.len() != 1 || offset >= UART_REG_COUNT {
            data.fill(0xff);
            return;
        }
        data[0] = self.read_reg(offset);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if data.len() != 1 || offset >= UART_REG_COUNT {
            log::debug!(
                "uart: ignoring {}-byte write at offset {offset}",
                data.len()
            );
            return;
        }
        self.write_reg(offset, data[0]);
    }
}

fn lock(m: &Mutex<Uart>) -> std::sync::MutexGuard<'_, Uart> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CharFrontend for Mutex<Uart> {
    fn take_output(&self, buf: &mut [u8]) -> usize {
        lock(self).take_output(buf)
    }

    fn give_input(&self, data: &[u8]) -> usize {
        lock(self).give_input(data)
    }

    fn set_notifier(&self, notifier: Option<Notifier>) {
        lock(self).set_notifier(notifier)
    }
}

#[cfg(test)]
#[path = "uart_tests.rs"]
mod tests;
