//! 9P2000.L wire format: little-endian integers, `u16`-counted strings,
//! 13-byte qids. The reader never trusts a length: every read is checked
//! against what the message holds, so a lying guest gets `EPROTO`-class
//! errors, never a panic or an allocation it chose.

/// Message types (9P2000.L and the base 9P2000 ones Linux uses).
pub mod msg {
    pub const RLERROR: u8 = 7;
    pub const TSTATFS: u8 = 8;
    pub const TLOPEN: u8 = 12;
    pub const TLCREATE: u8 = 14;
    pub const TSYMLINK: u8 = 16;
    pub const TMKNOD: u8 = 18;
    pub const TRENAME: u8 = 20;
    pub const TREADLINK: u8 = 22;
    pub const TGETATTR: u8 = 24;
    pub const TSETATTR: u8 = 26;
    pub const TXATTRWALK: u8 = 30;
    pub const TXATTRCREATE: u8 = 32;
    pub const TREADDIR: u8 = 40;
    pub const TFSYNC: u8 = 50;
    pub const TLOCK: u8 = 52;
    pub const TGETLOCK: u8 = 54;
    pub const TLINK: u8 = 70;
    pub const TMKDIR: u8 = 72;
    pub const TRENAMEAT: u8 = 74;
    pub const TUNLINKAT: u8 = 76;
    pub const TVERSION: u8 = 100;
    pub const TAUTH: u8 = 102;
    pub const TATTACH: u8 = 104;
    pub const TFLUSH: u8 = 108;
    pub const TWALK: u8 = 110;
    pub const TREAD: u8 = 116;
    pub const TWRITE: u8 = 118;
    pub const TCLUNK: u8 = 120;
    pub const TREMOVE: u8 = 122;
}

/// Size of the common header: size[4] type[1] tag[2].
pub const HEADER: usize = 7;

/// Qid types.
pub const QTDIR: u8 = 0x80;
pub const QTSYMLINK: u8 = 0x02;
pub const QTFILE: u8 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Qid {
    pub ty: u8,
    pub version: u32,
    pub path: u64,
}

/// A message body that ended early or held a malformed field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Reads fields from one T-message body.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.buf.len() {
            return Err(Malformed);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, Malformed> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    /// A string as raw bytes (names are bytes on Linux, not UTF-8).
    pub fn str(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u16()?;
        self.take(n.into())
    }

    /// `n` bytes of payload (Twrite's data).
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        self.take(n)
    }
}

/// Builds one R-message; the size field is patched by [`finish`].
///
/// [`finish`]: Writer::finish
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(ty: u8, tag: u16) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[0, 0, 0, 0, ty]);
        buf.extend_from_slice(&tag.to_le_bytes());
        Writer { buf }
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A string; longer than 64 KiB cannot be encoded (callers bound
    /// names and link targets well below that), so it is cut.
    pub fn str(&mut self, s: &[u8]) -> &mut Self {
        let s = &s[..s.len().min(usize::from(u16::MAX))];
        self.u16(s.len() as u16);
        self.buf.extend_from_slice(s);
        self
    }

    pub fn qid(&mut self, q: &Qid) -> &mut Self {
        self.u8(q.ty).u32(q.version).u64(q.path)
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn finish(mut self) -> Vec<u8> {
        let n = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&n.to_le_bytes());
        self.buf
    }
}

/// Rlerror with a Linux errno.
pub fn rlerror(tag: u16, errno: i32) -> Vec<u8> {
    let mut w = Writer::new(msg::RLERROR, tag);
    w.u32(errno as u32);
    w.finish()
}

/// Bytes one qid takes on the wire.
pub const QID_SIZE: usize = 13;

/// Size of a readdir entry for `name`: qid, offset, type, name.
pub fn dirent_size(name: &[u8]) -> usize {
    QID_SIZE + 8 + 1 + 2 + name.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_short_fields() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0201));
        assert_eq!(r.u16(), Err(Malformed));
        // A string claiming more than the message holds.
        let mut r = Reader::new(&[0xff, 0xff, b'a']);
        assert_eq!(r.str(), Err(Malformed));
        let mut r = Reader::new(&[2, 0, b'a', b'b', 7]);
        assert_eq!(r.str(), Ok(&b"ab"[..]));
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u8(), Err(Malformed));
        assert_eq!(Reader::new(&[0; 3]).bytes(4), Err(Malformed));
    }

    #[test]
    fn writer_patches_size() {
        let mut w = Writer::new(101, 0xffff);
        w.u32(8192).str(b"9P2000.L");
        let b = w.finish();
        assert_eq!(b.len(), 7 + 4 + 2 + 8);
        assert_eq!(&b[..4], &(b.len() as u32).to_le_bytes());
        assert_eq!(b[4], 101);
        assert_eq!(&b[5..7], &[0xff, 0xff]);
        assert_eq!(rlerror(3, libc::ENOENT).len(), 11);
    }
}
