//! virtio-input driven as Linux's virtio_input does, over a fake evdev
//! (this machine has no /dev/uinput to create a real one).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::pci::PciDevice;
use crate::virtio::test_driver::Driver;
use vmm_sys_util::eventfd::EFD_NONBLOCK;

#[derive(Default)]
struct Fake {
    events: Mutex<VecDeque<InputEvent>>,
    written: Mutex<Vec<InputEvent>>,
    ready: Option<EventFd>,
}

impl Fake {
    fn new() -> Arc<Self> {
        Arc::new(Fake {
            ready: Some(EventFd::new(EFD_NONBLOCK).unwrap()),
            ..Default::default()
        })
    }

    fn push(&self, evs: &[(u16, u16, u32)]) {
        let mut q = self.events.lock().unwrap();
        for &(ty, code, value) in evs {
            q.push_back(InputEvent { ty, code, value });
        }
        self.ready.as_ref().unwrap().write(1).unwrap();
    }
}

fn set_bits(buf: &mut [u8], bits: &[usize]) {
    for &b in bits {
        if b / 8 < buf.len() {
            buf[b / 8] |= 1 << (b % 8);
        }
    }
}

impl EvdevSource for Fake {
    fn poll_fd(&self) -> RawFd {
        self.ready.as_ref().unwrap().as_raw_fd()
    }
    fn name(&self) -> std::io::Result<Vec<u8>> {
        Ok(b"Fake Tablet".to_vec())
    }
    fn ids(&self) -> std::io::Result<[u16; 4]> {
        Ok([0x03, 0x1234, 0x5678, 0x0111])
    }
    fn prop_bits(&self, buf: &mut [u8]) -> std::io::Result<()> {
        buf.fill(0);
        set_bits(buf, &[1]); // INPUT_PROP_DIRECT
        Ok(())
    }
    fn event_bits(&self, ty: u8, buf: &mut [u8]) -> std::io::Result<()> {
        buf.fill(0);
        match u16::from(ty) {
            ev::KEY => set_bits(buf, &[0x110, 0x14a]), // BTN_LEFT, BTN_TOUCH
            ev::ABS => set_bits(buf, &[0, 1]),
            ev::LED => set_bits(buf, &[0, 1]),
            _ => {}
        }
        Ok(())
    }
    fn abs_info(&self, axis: u8) -> std::io::Result<AbsInfo> {
        Ok(AbsInfo {
            min: 0,
            max: 32767 - i32::from(axis),
            fuzz: 1,
            flat: 2,
            res: 3,
        })
    }
    fn read_event(&self) -> std::io::Result<Option<InputEvent>> {
        let mut q = self.events.lock().unwrap();
        if q.is_empty() {
            let _ = self.ready.as_ref().unwrap().read();
        }
        Ok(q.pop_front())
    }
    fn write_event(&self, e: InputEvent) -> std::io::Result<()> {
        self.written.lock().unwrap().push(e);
        Ok(())
    }
}

fn select(drv: &Driver, sel: u8, sub: u8) -> Vec<u8> {
    drv.cfg_write(0, 1, sel.into());
    drv.cfg_write(1, 1, sub.into());
    let size = drv.cfg_read(2, 1) as usize;
    (0..size)
        .map(|i| drv.cfg_read(8 + i as u64, 1) as u8)
        .collect()
}

#[test]
fn configuration_selects() {
    let fake = Fake::new();
    let drv = Driver::new(Box::new(VirtioInput::new(fake)));
    // Modern-only device 0x1052, class "other input".
    let f = drv.f.lock().unwrap();
    let mut b = [0u8; 4];
    f.config().read(0, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x1052_1af4);
    f.config().read(8, &mut b);
    assert_eq!(b, [1, 0x00, 0x80, 0x09]);
    drop(f);
    assert_eq!(select(&drv, select::ID_NAME, 0), b"Fake Tablet");
    assert_eq!(select(&drv, select::ID_SERIAL, 0), b"");
    assert_eq!(
        select(&drv, select::ID_DEVIDS, 0),
        [0x03, 0, 0x34, 0x12, 0x78, 0x56, 0x11, 0x01]
    );
    assert_eq!(select(&drv, select::PROP_BITS, 0), [2]);
    let keys = select(&drv, select::EV_BITS, ev::KEY as u8);
    assert_eq!(keys.len(), 0x14a / 8 + 1);
    assert_eq!(keys[0x110 / 8], 1);
    assert_eq!(select(&drv, select::EV_BITS, ev::ABS as u8), [3]);
    assert_eq!(select(&drv, select::EV_BITS, ev::REL as u8), b"", "no REL");
    assert_eq!(select(&drv, select::EV_BITS, 0x1f), b"", "not a type");
    let abs = select(&drv, select::ABS_INFO, 1);
    assert_eq!(abs.len(), 20);
    assert_eq!(i32::from_le_bytes(abs[4..8].try_into().unwrap()), 32766);
    assert_eq!(select(&drv, select::ABS_INFO, 5), b"", "axis not present");
    assert_eq!(select(&drv, select::ABS_INFO, 200), b"");
    assert_eq!(select(&drv, 0x77, 0), b"");
    // Only select/subsel are writable; reads past the end are 0.
    drv.cfg_write(0, 1, select::ID_NAME.into());
    drv.cfg_write(2, 1, 99);
    drv.cfg_write(8, 4, 0xdead_beef);
    assert_eq!(drv.cfg_read(2, 1), 11);
    assert_eq!(drv.cfg_read(8, 4), u64::from(u32::from_le_bytes(*b"Fake")));
    assert_eq!(drv.cfg_read(136, 4), 0);
}

#[test]
fn events_go_to_the_guest_a_frame_at_a_time() {
    let fake = Fake::new();
    let mut drv = Driver::new(Box::new(VirtioInput::new(fake.clone())));
    // Stale events from before DRIVER_OK are not delivered.
    fake.push(&[(ev::KEY, 30, 1), (ev::SYN, 0, 0)]);
    drv.start(0, 2);
    std::thread::sleep(Duration::from_millis(30));
    let bufs: Vec<u64> = (0..4).map(|_| drv.post_in(EVENTQ, 8)).collect();
    drv.kick(EVENTQ);
    fake.push(&[(ev::ABS, 0, 100), (ev::ABS, 1, 200), (ev::SYN, 0, 0)]);
    let mut got = Vec::new();
    for _ in 0..3 {
        let (head, len) = drv.used(EVENTQ);
        assert_eq!(len, 8);
        got.push(drv.read(bufs[usize::from(head)], 8));
    }
    assert_eq!(got[0], [3, 0, 0, 0, 100, 0, 0, 0]);
    assert_eq!(got[1], [3, 0, 1, 0, 200, 0, 0, 0]);
    assert_eq!(got[2], [0; 8]);
    assert!(
        drv.used_within(EVENTQ, Duration::from_millis(30)).is_none(),
        "stale events"
    );
    // One buffer left, a frame of two: dropped whole; the buffer stays.
    fake.push(&[(ev::KEY, 0x110, 1), (ev::SYN, 0, 0)]);
    assert!(drv
        .used_within(EVENTQ, Duration::from_millis(100))
        .is_none());
    // A one-event frame fits it.
    fake.push(&[(ev::SYN, 0, 0)]);
    let (head, _) = drv.used(EVENTQ);
    assert_eq!(drv.read(bufs[usize::from(head)], 8), [0; 8]);
}

#[test]
fn status_events_reach_the_device_except_msc() {
    let fake = Fake::new();
    let mut drv = Driver::new(Box::new(VirtioInput::new(fake.clone())));
    drv.start(0, 2);
    let led = InputEvent {
        ty: ev::LED,
        code: 1,
        value: 1,
    };
    drv.post_out(STATUSQ, &led.to_virtio());
    drv.post_out(
        STATUSQ,
        &InputEvent {
            ty: ev::MSC,
            code: 5,
            value: 9,
        }
        .to_virtio(),
    );
    drv.post_out(STATUSQ, &[1, 2, 3]);
    drv.post(STATUSQ, &[(0xffff_0000_0000, 8, false)]);
    drv.kick(STATUSQ);
    for _ in 0..4 {
        assert_eq!(drv.used(STATUSQ).1, 0);
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(*fake.written.lock().unwrap(), vec![led]);
}

#[test]
fn hostile_event_buffers_and_reset() {
    let fake = Fake::new();
    let mut drv = Driver::new(Box::new(VirtioInput::new(fake.clone())));
    drv.start(0, 2);
    // Let the worker discard stale events first.
    std::thread::sleep(Duration::from_millis(30));
    // Outside memory, too short, device-readable only.
    drv.post(EVENTQ, &[(0xffff_0000_0000, 8, true)]);
    let short = drv.alloc(4);
    drv.post(EVENTQ, &[(short, 4, true)]);
    let ro = drv.alloc(8);
    drv.post(EVENTQ, &[(ro, 8, false)]);
    fake.push(&[(ev::KEY, 1, 1), (ev::KEY, 2, 1), (ev::SYN, 0, 0)]);
    let lens: Vec<u32> = (0..3).map(|_| drv.used(EVENTQ).1).collect();
    assert_eq!(lens, [0, 4, 0]);
    // A frame longer than MAX_FRAME without SYN_REPORT: cut, not grown.
    let many: Vec<(u16, u16, u32)> = (0..1000).map(|i| (ev::KEY, 1, i)).collect();
    fake.push(&many);
    std::thread::sleep(Duration::from_millis(50));
    drv.reset();
    assert!(!drv.f.lock().unwrap().is_active());
    // Restart: events flow again.
    drv.start(0, 2);
    let a = drv.post_in(EVENTQ, 8);
    drv.kick(EVENTQ);
    std::thread::sleep(Duration::from_millis(20));
    fake.push(&[(ev::SYN, 0, 0)]);
    drv.used(EVENTQ);
    assert_eq!(drv.read(a, 8), [0; 8]);
}

#[test]
fn opening_bad_devices_fails_cleanly() {
    let e = Evdev::open(Path::new("/nonexistent/event0")).err().unwrap();
    assert!(
        e.to_string()
            .starts_with("virtio-input: failed to open /nonexistent/event0:"),
        "{e}"
    );
    let e = Evdev::open(Path::new("/dev/null")).err().unwrap();
    assert_eq!(e.to_string(), "virtio-input: /dev/null is no evdev");
}
