/*
 * virtio_p9_io: 9P2000.L through a virtio-9p function (1af4:1009) in the
 * legacy or the modern transport: walk, read, write, mkdir, getattr and
 * readdir in the share, and the escapes that must be refused.
 *
 * Command line: transport=legacy|modern (required), ro=0|1 (the share is
 * read-only: every modification must be refused, default 0). The share
 * must hold hello.txt, sub/ and the symlinks up -> .. and etc -> /etc.
 * Output is documented in crates/testguests/src/lib.rs; the host test
 * (tests/virtio_net_p9.rs) checks the share and its surroundings.
 */
#include "tg.h"
#include "pci.h"
#include "virtio.h"

#define P9_F_MOUNT_TAG 1ull

#define RLERROR 7
#define TLOPEN 12
#define TLCREATE 14
#define TREADLINK 22
#define TGETATTR 24
#define TREADDIR 40
#define TMKDIR 72
#define TRENAMEAT 74
#define TUNLINKAT 76
#define TVERSION 100
#define TATTACH 104
#define TWALK 110
#define TREAD 116
#define TWRITE 118
#define TCLUNK 120

#define NOFID 0xffffffffu
#define NOTAG 0xffff
#define P9_RDONLY 0
#define P9_WRONLY 1
#define P9_RDWR 2
#define P9_EXCL 0200
#define P9_AT_REMOVEDIR 0x200
#define QTDIR 0x80
#define QTSYMLINK 0x02

#define MSIZE 8192
#define WRITE_LEN 3000
#define TIMEOUT (1ull << 34)

/* Fids this guest uses. */
enum { ROOT = 1, FILE, NEW, DIR, TMP, SUB };

struct qid {
	u8 type;
	u32 version;
	u64 path;
};

static struct vq q;
static u8 *req, *rsp;
static u32 req_len, rsp_len, rsp_pos;
static u16 tag;
static int ro;

static void put8(u8 v)
{
	if (req_len + 1 > MSIZE)
		tg_fail("request too long");
	req[req_len++] = v;
}
static void put16(u16 v) { put8(v); put8(v >> 8); }
static void put32(u32 v) { put16(v); put16(v >> 16); }
static void put64(u64 v) { put32(v); put32(v >> 32); }
static void putstr(const char *s)
{
	u32 n = strlen(s);
	put16(n);
	for (u32 i = 0; i < n; i++)
		put8(s[i]);
}

static void begin(u8 type)
{
	req_len = 0;
	put32(0);
	put8(type);
	put16(type == TVERSION ? NOTAG : ++tag);
}

/* The reply is the device's: every read is bounds-checked. */
static u8 get8(void)
{
	if (rsp_pos + 1 > rsp_len)
		tg_fail("reply too short");
	return rsp[rsp_pos++];
}
static u16 get16(void) { u16 v = get8(); return v | (u16)get8() << 8; }
static u32 get32(void) { u32 v = get16(); return v | (u32)get16() << 16; }
static u64 get64(void) { u64 v = get32(); return v | (u64)get32() << 32; }
static void getqid(struct qid *qd)
{
	qd->type = get8();
	qd->version = get32();
	qd->path = get64();
}
/* A string into out (NUL-terminated, truncated to outlen). */
static void getstr(char *out, u32 outlen)
{
	u32 n = get16();
	for (u32 i = 0; i < n; i++) {
		char c = get8();
		if (i + 1 < outlen)
			out[i] = c;
	}
	out[n < outlen ? n : outlen - 1] = 0;
}

/* Sends the request built since begin(); returns 0, or the errno of an Rlerror. */
static int rpc(void)
{
	u8 type = req[4];
	req[0] = req_len;
	req[1] = req_len >> 8;
	req[2] = req_len >> 16;
	req[3] = req_len >> 24;
	struct vbuf b[2] = { { (u64)req, req_len, 0 }, { (u64)rsp, MSIZE, 1 } };
	memset(rsp, 0, 16);
	if (vq_add(&q, b, 2) < 0)
		tg_fail("queue full");
	vq_kick(&q);
	u32 used;
	if (vq_poll(&q, &used, TIMEOUT) < 0)
		tg_fail("no reply to message type %u", type);
	rsp_len = used < MSIZE ? used : MSIZE;
	rsp_pos = 0;
	u32 size = get32();
	u8 rtype = get8();
	u16 rtag = get16();
	if (size < 7 || size > rsp_len)
		tg_fail("reply size %u, %u bytes used", size, used);
	rsp_len = size;
	if (rtag != (type == TVERSION ? NOTAG : tag))
		tg_fail("reply tag %x for tag %x", rtag, tag);
	if (rtype == RLERROR) {
		u32 e = get32();
		return e ? (int)e : -1;
	}
	if (rtype != type + 1)
		tg_fail("reply type %u to type %u", rtype, type);
	return 0;
}

static int walk(u32 fid, u32 newfid, int n, const char **names, struct qid *qids, int *nq)
{
	begin(TWALK);
	put32(fid);
	put32(newfid);
	put16(n);
	for (int i = 0; i < n; i++)
		putstr(names[i]);
	int e = rpc();
	*nq = 0;
	if (e)
		return e;
	u16 count = get16();
	if (count > n)
		tg_fail("walk of %d names returned %u qids", n, count);
	for (int i = 0; i < count; i++)
		getqid(&qids[i]);
	*nq = count;
	return 0;
}

static int clunk(u32 fid)
{
	begin(TCLUNK);
	put32(fid);
	return rpc();
}

static int lcreate(u32 fid, const char *name, u32 flags, struct qid *qd)
{
	begin(TLCREATE);
	put32(fid);
	putstr(name);
	put32(flags);
	put32(0644);
	put32(0);
	int e = rpc();
	if (!e)
		getqid(qd);
	return e;
}

static int p9_mkdir(u32 dfid, const char *name, struct qid *qd)
{
	begin(TMKDIR);
	put32(dfid);
	putstr(name);
	put32(0755);
	put32(0);
	int e = rpc();
	if (!e)
		getqid(qd);
	return e;
}

static int renameat(u32 odfid, const char *oname, u32 ndfid, const char *nname)
{
	begin(TRENAMEAT);
	put32(odfid);
	putstr(oname);
	put32(ndfid);
	putstr(nname);
	return rpc();
}

static int unlinkat(u32 dfid, const char *name, u32 flags)
{
	begin(TUNLINKAT);
	put32(dfid);
	putstr(name);
	put32(flags);
	return rpc();
}

static int lopen(u32 fid, u32 flags)
{
	begin(TLOPEN);
	put32(fid);
	put32(flags);
	return rpc();
}

/* Clones the root into TMP (clunked first if it exists). */
static void root_to_tmp(void)
{
	struct qid qd[1];
	int n;
	clunk(TMP);
	if (walk(ROOT, TMP, 0, 0, qd, &n))
		tg_fail("cannot clone the root fid");
}

static u8 wpattern(u32 i)
{
	return (u8)(i * 31 + (i >> 7) + 5);
}

static void refused(const char *what, int e)
{
	if (!e)
		tg_fail("%s was not refused", what);
	tg_printf("virtio_p9_io: refused %s: errno %d\n", what, e);
}

static void check_read(u32 fid, const char *name)
{
	struct qid qd[1];
	int n;
	const char *names[1] = { name };
	if (walk(ROOT, fid, 1, names, qd, &n) || n != 1)
		tg_fail("walk to %s failed", name);
	int e = lopen(fid, P9_RDONLY);
	if (e)
		tg_fail("lopen %s: errno %d", name, e);
	u64 off = 0;
	u32 h = 0x811c9dc5;
	for (;;) {
		begin(TREAD);
		put32(fid);
		put64(off);
		put32(MSIZE - 11);
		if ((e = rpc()))
			tg_fail("read %s: errno %d", name, e);
		u32 count = get32();
		if (count > rsp_len - rsp_pos)
			tg_fail("read count %u beyond the reply", count);
		if (!count)
			break;
		/* FNV-1a continued across chunks. */
		for (u32 i = 0; i < count; i++)
			h = (h ^ rsp[rsp_pos + i]) * 0x01000193;
		off += count;
	}
	tg_printf("virtio_p9_io: read %s %lu bytes fnv1a %x\n", name, off, h);
	begin(TGETATTR);
	put32(fid);
	put64(0x7ff);
	if ((e = rpc()))
		tg_fail("getattr %s: errno %d", name, e);
	get64();
	getqid(qd);
	u32 mode = get32();
	get32();
	get32();
	get64();
	get64();
	u64 size = get64();
	tg_printf("virtio_p9_io: getattr %s mode %x size %lu\n", name, mode, size);
	if (size != off)
		tg_fail("getattr size %lu but read %lu bytes", size, off);
}

static void write_file(const char *name)
{
	struct qid qd;
	root_to_tmp();
	int e = lcreate(TMP, name, P9_RDWR | P9_EXCL, &qd);
	if (ro) {
		refused("lcreate on a read-only share", e);
		/* An existing file cannot be opened for writing either. */
		const char *names[1] = { "hello.txt" };
		struct qid w[1];
		int n;
		clunk(NEW);
		if (walk(ROOT, NEW, 1, names, w, &n) || n != 1)
			tg_fail("walk to hello.txt failed");
		refused("lopen for writing on a read-only share", lopen(NEW, P9_WRONLY));
		return;
	}
	if (e)
		tg_fail("lcreate %s: errno %d", name, e);
	u8 *data = tg_alloc(WRITE_LEN, 16);
	for (u32 i = 0; i < WRITE_LEN; i++)
		data[i] = wpattern(i);
	/* Two writes, the second at an offset, so offsets are honoured. */
	u32 split = 1234;
	for (int part = 0; part < 2; part++) {
		u32 off = part ? split : 0, len = part ? WRITE_LEN - split : split;
		begin(TWRITE);
		put32(TMP);
		put64(off);
		put32(len);
		for (u32 i = 0; i < len; i++)
			put8(data[off + i]);
		if ((e = rpc()))
			tg_fail("write %s: errno %d", name, e);
		u32 n = get32();
		if (n != len)
			tg_fail("write %s: %u of %u bytes", name, n, len);
	}
	tg_printf("virtio_p9_io: wrote %s %u bytes fnv1a %x\n", name, WRITE_LEN,
		  tg_fnv1a(data, WRITE_LEN));
	clunk(TMP);
}

static void make_dir(const char *name)
{
	struct qid qd;
	int e = p9_mkdir(ROOT, name, &qd);
	if (ro) {
		refused("mkdir on a read-only share", e);
		return;
	}
	if (e)
		tg_fail("mkdir %s: errno %d", name, e);
	if (!(qd.type & QTDIR))
		tg_fail("mkdir %s: qid type %x", name, qd.type);
	tg_printf("virtio_p9_io: mkdir %s\n", name);
}

static void list_root(void)
{
	struct qid qd[1];
	int n, e;
	clunk(DIR);
	if (walk(ROOT, DIR, 0, 0, qd, &n))
		tg_fail("cannot clone the root fid");
	if ((e = lopen(DIR, P9_RDONLY)))
		tg_fail("lopen of the root: errno %d", e);
	u64 off = 0;
	int entries = 0;
	for (;;) {
		begin(TREADDIR);
		put32(DIR);
		put64(off);
		put32(MSIZE - 11);
		if ((e = rpc()))
			tg_fail("readdir: errno %d", e);
		u32 count = get32();
		if (count > rsp_len - rsp_pos)
			tg_fail("readdir count %u beyond the reply", count);
		if (!count)
			break;
		u32 end = rsp_pos + count;
		while (rsp_pos < end) {
			struct qid eq;
			char name[256];
			getqid(&eq);
			off = get64();
			get8();
			getstr(name, sizeof(name));
			tg_printf("virtio_p9_io: readdir %s\n", name);
			if (++entries > 1000)
				tg_fail("readdir never ends");
		}
	}
	clunk(DIR);
}

static void escapes(const struct qid *root)
{
	struct qid qd[4];
	int n, e;

	const char *up[2] = { "..", ".." };
	clunk(TMP);
	if ((e = walk(ROOT, TMP, 2, up, qd, &n)) || n != 2)
		tg_fail("walk .. .. from the root: errno %d, %d qids", e, n);
	if (qd[1].path != root->path || qd[1].type != root->type)
		tg_fail("walk .. left the root (qid %lx)", qd[1].path);
	tg_printf("virtio_p9_io: walk .. stays at the root\n");

	const char *subup[3] = { "sub", "..", ".." };
	clunk(SUB);
	if ((e = walk(ROOT, SUB, 3, subup, qd, &n)) || n != 3)
		tg_fail("walk sub .. ..: errno %d, %d qids", e, n);
	if (qd[2].path != root->path)
		tg_fail("walk sub .. .. left the root (qid %lx)", qd[2].path);
	tg_printf("virtio_p9_io: walk sub .. .. stays at the root\n");

	/* Symlinks are handed back as themselves, never followed: a walk through one stops at it. */
	const char *links[2][2] = { { "up", "secret" }, { "etc", "passwd" } };
	for (int i = 0; i < 2; i++) {
		clunk(TMP);
		e = walk(ROOT, TMP, 2, links[i], qd, &n);
		if (!e && n == 2)
			tg_fail("walk %s/%s went through the symlink", links[i][0], links[i][1]);
		if (!e && (n != 1 || qd[0].type != QTSYMLINK))
			tg_fail("walk %s/%s: %d qids, first type %x", links[i][0], links[i][1], n,
				qd[0].type);
		tg_printf("virtio_p9_io: walk %s/%s stops at the symlink\n", links[i][0],
			  links[i][1]);
	}
	const char *upname[1] = { "up" };
	clunk(TMP);
	if (walk(ROOT, TMP, 1, upname, qd, &n) || n != 1 || qd[0].type != QTSYMLINK)
		tg_fail("walk to the symlink up failed");
	begin(TREADLINK);
	put32(TMP);
	if ((e = rpc()))
		tg_fail("readlink up: errno %d", e);
	char target[64];
	getstr(target, sizeof(target));
	tg_printf("virtio_p9_io: readlink up %s\n", target);
	refused("lopen of the symlink up", lopen(TMP, P9_RDONLY));
	/* The symlink's fid as a directory: creating, making or renaming into it. */
	refused("mkdir in the symlink up", p9_mkdir(TMP, "escaped", &qd[0]));
	refused("renameat hello.txt into the symlink up", renameat(ROOT, "hello.txt", TMP, "escaped"));
	refused("unlinkat secret in the symlink up", unlinkat(TMP, "secret", 0));
	refused("lcreate in the symlink up", lcreate(TMP, "escaped", P9_RDWR | P9_EXCL, &qd[0]));
	clunk(TMP);

	root_to_tmp();
	refused("lcreate ../escaped", lcreate(TMP, "../escaped", P9_RDWR | P9_EXCL, &qd[0]));
	root_to_tmp();
	refused("lcreate sub/../../escaped", lcreate(TMP, "sub/../../escaped", P9_RDWR | P9_EXCL, &qd[0]));
	root_to_tmp();
	refused("lcreate ..", lcreate(TMP, "..", P9_RDWR, &qd[0]));
	refused("mkdir ../escaped", p9_mkdir(ROOT, "../escaped", &qd[0]));
	refused("renameat hello.txt to ../escaped", renameat(ROOT, "hello.txt", ROOT, "../escaped"));
	refused("renameat ../secret into the share", renameat(ROOT, "../secret", ROOT, "stolen"));
	refused("renameat .. to inside", renameat(ROOT, "..", ROOT, "stolen"));
	refused("unlinkat ../secret", unlinkat(ROOT, "../secret", 0));
	refused("unlinkat ..", unlinkat(ROOT, "..", P9_AT_REMOVEDIR));
	/* A directory fid reached through ".." is the root: renaming into it stays inside. */
	if (!ro) {
		clunk(TMP);
		if (walk(ROOT, TMP, 1, up, qd, &n) || n != 1)
			tg_fail("walk .. failed");
		if ((e = renameat(ROOT, "renamed.txt", TMP, "..")) == 0)
			tg_fail("renameat to .. was not refused");
		tg_printf("virtio_p9_io: refused renameat to ..: errno %d\n", e);
	}
}

int main(void)
{
	static struct vdev dev;
	struct pci_fn fn;
	struct qid root, qd[1];
	char tagname[64], version[32];
	int n, e;

	tg_name = "virtio_p9_io";
	enum vtransport t = vt_parse_transport();
	ro = tg_opt_u64("ro", 0) != 0;
	tg_printf("virtio_p9_io: transport %s ro %u\n", t == VT_MODERN ? "modern" : "legacy", ro);
	if (!pci_find(0x1af4, 0x1009, 0, &fn))
		tg_fail("no virtio-9p function (1af4:1009)");
	tg_printf("virtio_p9_io: function %u %u\n", fn.slot, fn.func);
	if (!vdev_init(&dev, &fn, t))
		tg_fail("cannot initialise the function");
	if (!(vdev_features(&dev) & P9_F_MOUNT_TAG))
		tg_fail("MOUNT_TAG not offered");
	if (!vdev_set_features(&dev, P9_F_MOUNT_TAG))
		tg_fail("MOUNT_TAG refused");
	u16 taglen = vdev_cfg16(&dev, 0);
	if (taglen == 0 || taglen >= sizeof(tagname))
		tg_fail("tag length %u", taglen);
	for (u16 i = 0; i < taglen; i++)
		tagname[i] = vdev_cfg8(&dev, 2 + i);
	tagname[taglen] = 0;
	tg_printf("virtio_p9_io: tag %s\n", tagname);
	if (!vq_init(&dev, &q, 0, 16))
		tg_fail("cannot set up the queue");
	vdev_driver_ok(&dev);
	req = tg_alloc(MSIZE, 4096);
	rsp = tg_alloc(MSIZE, 4096);

	begin(TVERSION);
	put32(MSIZE);
	putstr("9P2000.L");
	if ((e = rpc()))
		tg_fail("version: errno %d", e);
	u32 msize = get32();
	getstr(version, sizeof(version));
	tg_printf("virtio_p9_io: version %s msize %u\n", version, msize);
	if (strcmp(version, "9P2000.L") != 0 || msize > MSIZE || msize < 4096)
		tg_fail("version not accepted");

	begin(TATTACH);
	put32(ROOT);
	put32(NOFID);
	putstr("root");
	putstr("");
	put32(0);
	if ((e = rpc()))
		tg_fail("attach: errno %d", e);
	getqid(&root);
	tg_printf("virtio_p9_io: attach qid type %x path %lx\n", root.type, root.path);
	if (!(root.type & QTDIR))
		tg_fail("the root is not a directory");

	check_read(FILE, "hello.txt");
	const char *missing[1] = { "missing" };
	refused("walk to a missing file", walk(ROOT, TMP, 1, missing, qd, &n));
	write_file("new.txt");
	make_dir("newdir");
	if (!ro) {
		/* A rename inside the share works (the escapes below use the same call). */
		if ((e = renameat(ROOT, "new.txt", ROOT, "renamed.txt")))
			tg_fail("renameat new.txt renamed.txt: errno %d", e);
		tg_printf("virtio_p9_io: renamed new.txt to renamed.txt\n");
	}
	list_root();
	escapes(&root);
	for (u32 fid = ROOT; fid <= SUB; fid++)
		clunk(fid);
	if ((e = clunk(ROOT)) == 0)
		tg_fail("clunk of a clunked fid succeeded");
	tg_printf("virtio_p9_io: clunked\n");
	tg_printf("virtio_p9_io: done\n");
	return EXIT_PASS;
}
