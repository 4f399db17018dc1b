use super::*;
use crate::testutil::RecIrq;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex as StdMutex};
use std::thread;
use std::time::Duration;

const DATA: u64 = 0;
const IER: u64 = 1;
const IIR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const MSR: u64 = 6;
const SCR: u64 = 7;

fn uart() -> (Uart, Arc<RecIrq>) {
    let irq = RecIrq::new();
    (Uart::new(irq.clone()), irq)
}

fn counting_notifier() -> (Notifier, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    (
        Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }),
        count,
    )
}

#[test]
fn power_on_state_and_dlab() {
    let (mut u, irq) = uart();
    assert_eq!(u.read_reg(LSR), LSR_THRE | LSR_TEMT);
    assert_eq!(u.read_reg(IIR), IIR_NOPEND);
    assert_eq!(u.read_reg(MSR), MSR_DCD | MSR_DSR);
    assert_eq!(u.read_reg(MCR), 0);
    u.write_reg(SCR, 0x5a);
    assert_eq!(u.read_reg(SCR), 0x5a);

    u.write_reg(LCR, LCR_DLAB | 0x03);
    assert_eq!(u.read_reg(DATA), 12, "1843200 / 9600 / 16");
    assert_eq!(u.read_reg(IER), 0);
    u.write_reg(DATA, 0x01);
    u.write_reg(IER, 0x02);
    assert_eq!((u.read_reg(DATA), u.read_reg(IER)), (0x01, 0x02));
    u.write_reg(LCR, 0x03);
    // The divisor writes did not reach IER or THR.
    assert_eq!(u.read_reg(IER), 0);
    assert_eq!(u.read_reg(LCR), 0x03);
    u.write_reg(LCR, LCR_DLAB);
    assert_eq!((u.read_reg(DATA), u.read_reg(IER)), (0x01, 0x02));
    assert!(irq.history().is_empty(), "no interrupt was ever enabled");
}

#[test]
fn loopback_echo_fifo_and_overrun() {
    let (mut u, _irq) = uart();
    u.write_reg(MCR, MCR_LOOPBACK);
    // 16450 mode: a one-byte receiver.
    u.write_reg(DATA, b'A');
    assert_eq!(u.read_reg(LSR) & LSR_RXRDY, LSR_RXRDY);
    u.write_reg(DATA, b'B');
    assert_eq!(u.read_reg(LSR) & LSR_OE, LSR_OE);
    assert_eq!(u.read_reg(LSR) & LSR_OE, 0, "OE clears on LSR read");
    assert_eq!(u.read_reg(DATA), b'A');
    assert_eq!(u.read_reg(LSR) & LSR_RXRDY, 0);
    assert_eq!(u.read_reg(DATA), 0xff, "empty receiver");

    // FIFO mode: 16 bytes fit, the 17th overruns.
    u.write_reg(IIR, FCR_ENABLE);
    assert_eq!(u.read_reg(IIR) & IIR_FIFO_MASK, IIR_FIFO_MASK);
    for i in 0..17u8 {
        u.write_reg(DATA, i);
    }
    assert_eq!(u.read_reg(LSR) & (LSR_OE | LSR_RXRDY), LSR_OE | LSR_RXRDY);
    for i in 0..16u8 {
        assert_eq!(u.read_reg(DATA), i);
    }
    assert_eq!(u.read_reg(LSR) & LSR_RXRDY, 0);

    // Receiver reset empties the FIFO.
    u.write_reg(DATA, 1);
    u.write_reg(IIR, FCR_ENABLE | FCR_RCV_RST);
    assert_eq!(u.read_reg(LSR) & LSR_RXRDY, 0);
    // Leaving FIFO mode too.
    u.write_reg(DATA, 1);
    u.write_reg(IIR, 0);
    assert_eq!(u.read_reg(LSR) & LSR_RXRDY, 0);
    assert_eq!(u.read_reg(IIR) & IIR_FIFO_MASK, 0);
}

#[test]
fn loopback_modem_lines() {
    let (mut u, _irq) = uart();
    u.write_reg(MCR, MCR_LOOPBACK | MCR_RTS | MCR_OUT1);
    let msr = u.read_reg(MSR);
    assert_eq!(msr & 0xf0, MSR_CTS | MSR_RI);
    // DSR and DCD dropped (were forced on outside loopback), CTS rose.
    assert_eq!(msr & MSR_DELTA_MASK, MSR_DCTS | MSR_DDSR | MSR_DDCD);
    assert_eq!(u.read_reg(MSR) & MSR_DELTA_MASK, 0, "deltas clear on read");
    u.write_reg(MCR, MCR_LOOPBACK | MCR_DTR | MCR_OUT2);
    let msr = u.read_reg(MSR);
    assert_eq!(msr & 0xf0, MSR_DSR | MSR_DCD);
    assert_eq!(msr & MSR_TERI, MSR_TERI, "RI trailing edge");
    assert_eq!(u.read_reg(MCR), MCR_LOOPBACK | MCR_DTR | MCR_OUT2);
    u.write_reg(MCR, 0xff);
    assert_eq!(u.read_reg(MCR), 0x1f, "bits 5-7 read as zero");
}

#[test]
fn iir_priorities_and_irq_level() {
    let (mut u, irq) = uart();
    u.write_reg(IIR, FCR_ENABLE);
    u.write_reg(MCR, MCR_LOOPBACK);
    for i in 0..17u8 {
        u.write_reg(DATA, i); // leaves data and an overrun
    }
    u.write_reg(MCR, MCR_LOOPBACK | MCR_RTS); // CTS delta
    assert!(!irq.is_high());
    u.write_reg(IER, IER_ERXRDY | IER_ETXRDY | IER_ERLS | IER_EMSC);
    assert!(irq.is_high());
    assert_eq!(u.read_reg(IIR), IIR_FIFO_MASK | IIR_RLS);
    u.read_reg(LSR);
    assert_eq!(u.read_reg(IIR), IIR_FIFO_MASK | IIR_RXTOUT);
    for _ in 0..16 {
        u.read_reg(DATA);
    }
    assert_eq!(u.read_reg(IIR), IIR_FIFO_MASK | IIR_TXRDY);
    // Reading IIR reported THRE and so disarmed it.
    assert_eq!(u.read_reg(IIR), IIR_FIFO_MASK | IIR_MLSC);
    assert!(irq.is_high());
    u.read_reg(MSR);
    assert_eq!(u.read_reg(IIR), IIR_FIFO_MASK | IIR_NOPEND);
    assert!(!irq.is_high());
    assert_eq!(
        irq.history(),
        vec![true, false],
        "one assertion, one release"
    );
}

#[test]
fn thre_interrupt_semantics() {
    let (mut u, irq) = uart();
    u.write_reg(IER, IER_ETXRDY);
    assert!(irq.is_high(), "enabling ETXRDY with THR empty raises THRE");
    assert_eq!(u.read_reg(IIR), IIR_TXRDY);
    assert!(!irq.is_high(), "IIR read cleared it");
    u.write_reg(DATA, b'x');
    assert!(irq.is_high(), "THR write: byte gone at once, THRE again");
    u.write_reg(IER, 0);
    assert!(!irq.is_high(), "masked");
    u.write_reg(IER, IER_ETXRDY);
    assert!(irq.is_high());
    // Re-writing IER with ETXRDY already set does not re-arm.
    assert_eq!(u.read_reg(IIR), IIR_TXRDY);
    u.write_reg(IER, IER_ETXRDY);
    assert!(!irq.is_high());
    assert_eq!(u.read_reg(IER), IER_ETXRDY);
    u.write_reg(IER, 0xff);
    assert_eq!(u.read_reg(IER), 0x0f);
}

#[test]
fn no_backend_drops_output() {
    let (mut u, _irq) = uart();
    for _ in 0..3 * TX_BUFFER_SIZE {
        u.write_reg(DATA, b'z');
    }
    assert_eq!(u.read_reg(LSR), LSR_THRE | LSR_TEMT);
    let mut buf = [0u8; 8];
    assert_eq!(u.take_output(&mut buf), 0);
    assert_eq!(u.tx_overruns(), 0);
}

#[test]
fn tx_backpressure_and_thre_rearm() {
    let (mut u, irq) = uart();
    let (n, wakes) = counting_notifier();
    u.set_notifier(Some(n));
    u.write_reg(IER, IER_ETXRDY);
    assert_eq!(u.read_reg(IIR), IIR_TXRDY);
    let mut written = 0usize;
    while u.read_reg(LSR) & LSR_THRE != 0 {
        u.write_reg(DATA, written as u8);
        written += 1;
        // Only the first byte into an empty buffer wakes the backend.
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert!(written <= TX_BUFFER_SIZE);
    }
    assert_eq!(written, TX_BUFFER_SIZE - FIFO_SIZE + 1);
    assert_eq!(u.read_reg(LSR) & (LSR_THRE | LSR_TEMT), 0);
    // THR writes with THRE=0 left no THRE interrupt pending.
    assert_eq!(u.read_reg(IIR), IIR_NOPEND);
    assert!(!irq.is_high());

    let mut buf = vec![0u8; 100];
    assert_eq!(u.take_output(&mut buf), 100);
    for (i, b) in buf.iter().enumerate() {
        assert_eq!(*b, i as u8);
    }
    assert!(irq.is_high(), "room again: THRE interrupt re-armed");
    assert_eq!(
        u.read_reg(LSR) & (LSR_THRE | LSR_TEMT),
        LSR_THRE,
        "not yet empty"
    );
    assert_eq!(u.read_reg(IIR), IIR_TXRDY);
    let mut rest = vec![0u8; TX_BUFFER_SIZE];
    assert_eq!(u.take_output(&mut rest), written - 100);
    assert_eq!(u.read_reg(LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    assert_eq!(u.tx_overruns(), 0);

    // Detaching frees the buffer and lets the guest go on.
    while u.read_reg(LSR) & LSR_THRE != 0 {
        u.write_reg(DATA, 0);
    }
    u.set_notifier(None);
    assert_eq!(u.read_reg(LSR), LSR_THRE | LSR_TEMT);
}

#[test]
fn rx_flow_control() {
    let (mut u, irq) = uart();
    let (n, wakes) = counting_notifier();
    u.set_notifier(Some(n));
    u.write_reg(IIR, FCR_ENABLE);
    u.write_reg(IER, IER_ERXRDY);
    let input: Vec<u8> = (0..40).collect();
    assert_eq!(u.give_input(&input), 16);
    assert!(irq.is_high());
    assert_eq!(u.read_reg(IIR), IIR_FIFO_MASK | IIR_RXTOUT);
    assert_eq!(u.give_input(&input[16..]), 0);
    assert_eq!(wakes.load(Ordering::SeqCst), 0);
    assert_eq!(u.read_reg(DATA), 0);
    assert_eq!(
        wakes.load(Ordering::SeqCst),
        1,
        "room again wakes the backend"
    );
    assert_eq!(u.read_reg(DATA), 1);
    assert_eq!(wakes.load(Ordering::SeqCst), 1, "one wake per refusal");
    assert_eq!(u.give_input(&input[16..]), 2);
    for i in 2..18 {
        assert_eq!(u.read_reg(DATA), i);
    }
    assert!(!irq.is_high());
    assert_eq!(u.read_reg(LSR) & LSR_OE, 0, "host input never overruns");

    // In loopback the line input is disconnected and consumed.
    u.write_reg(MCR, MCR_LOOPBACK);
    assert_eq!(u.give_input(b"abc"), 3);
    assert_eq!(u.read_reg(LSR) & LSR_RXRDY, 0);
}

#[test]
fn wide_and_out_of_range_accesses_are_inert() {
    let (mut u, irq) = uart();
    u.write_reg(MCR, MCR_LOOPBACK);
    u.write_reg(DATA, 7);
    let mut w = [0u8; 2];
    u.read(0x3f8, 0, &mut w);
    assert_eq!(w, [0xff, 0xff]);
    let mut b = [0u8; 1];
    u.read(0x3f8, 9, &mut b);
    assert_eq!(b, [0xff]);
    u.write(0x3f8, 1, &[0x0f, 0x0f]);
    u.write(0x3f8, 100, &[0x0f]);
    assert_eq!(u.read_reg(IER), 0);
    u.read(0x3f8, 0, &mut b);
    assert_eq!(b, [7], "the byte was still there");
    assert!(irq.history().is_empty());
}

/// A guest that honours THRE against a slow backend loses nothing.
#[test]
fn slow_sink_loses_no_byte() {
    const TOTAL: usize = 50_000;
    let irq = RecIrq::new();
    let dev = Arc::new(Mutex::new(Uart::new(irq)));
    let front: Arc<dyn CharFrontend> = dev.clone();
    let wake = Arc::new((StdMutex::new(false), Condvar::new()));
    let w = wake.clone();
    front.set_notifier(Some(Arc::new(move || {
        *w.0.lock().unwrap() = true;
        w.1.notify_one();
    })));

    let sink = {
        let front = front.clone();
        let wake = wake.clone();
        thread::spawn(move || {
            let mut got = Vec::with_capacity(TOTAL);
            let mut buf = [0u8; 97];
            let mut rounds = 0u32;
            while got.len() < TOTAL {
                let n = front.take_output(&mut buf);
                if n == 0 {
                    let g = wake.0.lock().unwrap();
                    let mut g = wake
                        .1
                        .wait_timeout_while(g, Duration::from_millis(50), |f| !*f)
                        .unwrap()
                        .0;
                    *g = false;
                    continue;
                }
                got.extend_from_slice(&buf[..n]);
                rounds += 1;
                if rounds == 16 {
                    rounds = 0;
                    thread::sleep(Duration::from_millis(1)); // slow consumer
                }
            }
            got
        })
    };

    let mut busy_seen = 0usize;
    let mut i = 0usize;
    while i < TOTAL {
        let mut d = dev.lock().unwrap();
        if d.read_reg(LSR) & LSR_THRE == 0 {
            busy_seen += 1;
            drop(d);
            thread::yield_now();
            continue;
        }
        // A 16550 driver refills a whole FIFO per THRE.
        for _ in 0..FIFO_SIZE.min(TOTAL - i) {
            d.write_reg(DATA, (i % 251) as u8);
            i += 1;
        }
    }
    let got = sink.join().unwrap();
    assert_eq!(got.len(), TOTAL);
    for (k, b) in got.iter().enumerate() {
        assert_eq!(*b, (k % 251) as u8, "byte {k}");
    }
    assert_eq!(dev.lock().unwrap().tx_overruns(), 0);
    assert!(busy_seen > 0, "the sink was slow enough to push back");
}

/// A host that retries on the notifier against a slow guest loses nothing.
#[test]
fn rx_pushback_loses_no_byte() {
    const TOTAL: usize = 20_000;
    let irq = RecIrq::new();
    let dev = Arc::new(Mutex::new(Uart::new(irq)));
    dev.lock().unwrap().write_reg(IIR, FCR_ENABLE);
    let front: Arc<dyn CharFrontend> = dev.clone();
    let wake = Arc::new((StdMutex::new(false), Condvar::new()));
    let w = wake.clone();
    front.set_notifier(Some(Arc::new(move || {
        *w.0.lock().unwrap() = true;
        w.1.notify_one();
    })));
    let host = {
        let front = front.clone();
        thread::spawn(move || {
            let data: Vec<u8> = (0..TOTAL).map(|k| (k % 253) as u8).collect();
            let mut off = 0;
            let mut refusals = 0;
            while off < TOTAL {
                let n = front.give_input(&data[off..(off + 64).min(TOTAL)]);
                off += n;
                if n == 0 {
                    refusals += 1;
                    let g = wake.0.lock().unwrap();
                    let mut g = wake
                        .1
                        .wait_timeout_while(g, Duration::from_millis(50), |f| !*f)
                        .unwrap()
                        .0;
                    *g = false;
                }
            }
            refusals
        })
    };
    let mut got = Vec::with_capacity(TOTAL);
    let mut next_pause = 1000;
    while got.len() < TOTAL {
        let mut d = dev.lock().unwrap();
        if d.read_reg(LSR) & LSR_RXRDY != 0 {
            got.push(d.read_reg(DATA));
        } else {
            drop(d);
            thread::yield_now();
        }
        if got.len() == next_pause {
            next_pause += 1000;
            thread::sleep(Duration::from_millis(2)); // slow guest
        }
    }
    let refusals = host.join().unwrap();
    for (k, b) in got.iter().enumerate() {
        assert_eq!(*b, (k % 253) as u8, "byte {k}");
    }
    assert!(refusals > 0, "the guest was slow enough to push back");
}
