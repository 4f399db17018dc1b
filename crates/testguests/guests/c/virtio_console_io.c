/*
 * virtio_console_io: a virtio-console port driven as Linux's
 * virtio_console does (MULTIPORT control handshake), bytes both ways.
 * Command line: transport=legacy|modern (required), port=NAME (default
 * port1), txlen=N (default 3000), rxlen=N (default 4096).
 * The exact output is documented in src/lib.rs.
 */
#include "virtio.h"

#define F_SIZE (1ul << 0)
#define F_MULTIPORT (1ul << 1)
#define F_EMERG_WRITE (1ul << 2)

#define E_DEVICE_READY 0
#define E_DEVICE_ADD 1
#define E_DEVICE_REMOVE 2
#define E_PORT_READY 3
#define E_CONSOLE_PORT 4
#define E_RESIZE 5
#define E_PORT_OPEN 6
#define E_PORT_NAME 7

#define CTRL_RX 2
#define CTRL_TX 3
#define MAX_QUEUES 66
#define QSIZE_MAX 1024 /* heads of the queues we post buffers on */
#define CTRL_BUFS 16
#define CTRL_BUF_BYTES 512
#define RX_BUFS 16
#define RX_BUF_BYTES 128
#define TX_CHUNK 1000
/* TSC ticks to wait for the host (the test connects, then writes). */
#define HOST_TIMEOUT (1ul << 35)

/* The text the guest sends, repeated (the test knows it). */
static const char text[] = "virtio_console_io: bytes from the guest\n";

static const struct {
	const char *name;
	u64 bit;
} feature_names[] = {
	{ "size", F_SIZE }, { "multiport", F_MULTIPORT }, { "emerg_write", F_EMERG_WRITE },
	{ "indirect_desc", VIRTIO_F_INDIRECT_DESC }, { "event_idx", VIRTIO_F_EVENT_IDX },
	{ "version_1", VIRTIO_F_VERSION_1 },
};

struct ctrl {
	u32 id;
	u16 event, value;
};

static struct vdev dev;
static struct vq *queues;
static u16 nqueues;
static u8 *ctrl_bufs, *rx_bufs;
/* Which buffer of its pool each posted head holds. */
static int ctrl_of[QSIZE_MAX], rx_of[QSIZE_MAX];

static void print_features(const char *what, u64 f)
{
	tg_printf("virtio_console_io: %s 0x%lx", what, f);
	for (u64 i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++)
		if (f & feature_names[i].bit)
			tg_printf(" %s", feature_names[i].name);
	tg_printf("\n");
}

static u16 rx_queue(u32 port)
{
	return (u16)(port == 0 ? 0 : 2 * (port + 1));
}

/* Posts device-writable buffer i of a pool on q, remembering it in
   of[head]. */
static void post(struct vq *q, u8 *pool, u32 size, int i, int *of)
{
	struct vbuf b = { (u64)(pool + (u64)i * size), size, 1 };
	int head = vq_add(q, &b, 1);
	if (head < 0)
		tg_fail("queue %u full", q->index);
	of[head] = i;
}

/* Sends one control message and waits until the device used it. */
static void send_ctrl(u32 id, u16 event, u16 value)
{
	static struct ctrl *m;
	if (!m)
		m = tg_alloc(sizeof(*m), 8);
	m->id = id;
	m->event = event;
	m->value = value;
	struct vbuf b = { (u64)m, sizeof(*m), 0 };
	struct vq *q = &queues[CTRL_TX];
	if (vq_add(q, &b, 1) < 0)
		tg_fail("control transmit queue full");
	vq_kick(q);
	if (vq_poll(q, NULL, HOST_TIMEOUT) < 0)
		tg_fail("control message %u not used", event);
}

/* Waits for control messages until the port named want is announced
   and opened by the host; returns its id. Every message is printed and
   DEVICE_ADD answered with PORT_READY, as Linux does. */
static u32 handshake(const char *want, u32 max_ports)
{
	u32 port = ~0u;
	u8 open[32] = { 0 };
	u64 t0 = rdtsc();
	while (port == ~0u || !open[port]) {
		u32 len;
		struct vq *q = &queues[CTRL_RX];
		int head = vq_poll(q, &len, 1ul << 20);
		if (head < 0) {
			if (rdtsc() - t0 > HOST_TIMEOUT)
				tg_fail("timeout: port %s %s", want,
					port == ~0u ? "not announced" : "not opened");
			continue;
		}
		int i = ctrl_of[head];
		u8 *buf = ctrl_bufs + (u64)i * CTRL_BUF_BYTES;
		if (len < sizeof(struct ctrl) || len > CTRL_BUF_BYTES)
			tg_fail("control message of 0x%x bytes", len);
		struct ctrl c;
		memcpy(&c, buf, sizeof(c));
		if (c.id >= max_ports)
			tg_fail("control event 0x%x for port 0x%x", c.event, c.id);
		switch (c.event) {
		case E_DEVICE_ADD:
			tg_printf("virtio_console_io: device_add 0x%x\n", c.id);
			send_ctrl(c.id, E_PORT_READY, 1);
			break;
		case E_PORT_NAME: {
			char name[64];
			u32 n = len - sizeof(c) < sizeof(name) - 1 ? len - sizeof(c) : sizeof(name) - 1;
			memcpy(name, buf + sizeof(c), n);
			name[n] = 0;
			tg_printf("virtio_console_io: port_name 0x%x %s\n", c.id, name);
			if (strcmp(name, want) == 0)
				port = c.id;
			break;
		}
		case E_PORT_OPEN:
			tg_printf("virtio_console_io: port_open 0x%x 0x%x\n", c.id, c.value);
			open[c.id] = c.value == 1;
			break;
		default:
			tg_printf("virtio_console_io: event 0x%x port 0x%x value 0x%x\n", c.event, c.id,
				  c.value);
		}
		post(q, ctrl_bufs, CTRL_BUF_BYTES, i, ctrl_of);
		vq_kick(q);
	}
	return port;
}

static void transmit(u32 port, u64 txlen)
{
	struct vq *q = &queues[rx_queue(port) + 1];
	u8 *msg = tg_alloc(txlen + 1, 4096);
	for (u64 i = 0; i < txlen; i++)
		msg[i] = (u8)text[i % (sizeof(text) - 1)];
	/* Chunks of two descriptors each (60% + 40%). */
	int inflight = 0;
	for (u64 off = 0; off < txlen;) {
		u32 l = txlen - off < TX_CHUNK ? (u32)(txlen - off) : TX_CHUNK;
		u32 a = l * 3 / 5;
		struct vbuf b[2] = { { (u64)(msg + off), a, 0 }, { (u64)(msg + off + a), l - a, 0 } };
		int n = a ? 2 : 1;
		if (vq_add(q, a ? b : b + 1, n) < 0) {
			vq_kick(q);
			if (vq_poll(q, NULL, HOST_TIMEOUT) < 0)
				tg_fail("transmit: timeout");
			inflight--;
			continue;
		}
		inflight++;
		off += l;
	}
	vq_kick(q);
	for (; inflight; inflight--)
		if (vq_poll(q, NULL, HOST_TIMEOUT) < 0)
			tg_fail("transmit: timeout, 0x%x chains not used", inflight);
	tg_printf("virtio_console_io: sent 0x%lx bytes fnv1a 0x%x\n", txlen, tg_fnv1a(msg, txlen));
}

static void receive(u32 port, u64 rxlen)
{
	struct vq *q = &queues[rx_queue(port)];
	u64 got = 0;
	u32 h = tg_fnv1a(NULL, 0);
	while (got < rxlen) {
		u32 len;
		int head = vq_poll(q, &len, HOST_TIMEOUT);
		if (head < 0)
			tg_fail("receive: timeout after 0x%lx of 0x%lx bytes", got, rxlen);
		if (len > RX_BUF_BYTES)
			tg_fail("receive: used length 0x%x", len);
		int i = rx_of[head];
		h = tg_fnv1a_more(h, rx_bufs + (u64)i * RX_BUF_BYTES, len);
		got += len;
		post(q, rx_bufs, RX_BUF_BYTES, i, rx_of);
		vq_kick(q);
	}
	tg_printf("virtio_console_io: received 0x%lx bytes fnv1a 0x%x\n", got, h);
}

int main(void)
{
	tg_name = "virtio_console_io";
	enum vtransport t = vt_parse_transport();
	char want[64] = "port1";
	tg_opt("port", want, sizeof(want));
	u64 txlen = tg_opt_u64("txlen", 3000), rxlen = tg_opt_u64("rxlen", 4096);
	if (txlen == 0 || txlen > (1ul << 24) || rxlen > (1ul << 24)) {
		tg_printf("virtio_console_io: txlen 1-16 MiB, rxlen up to 16 MiB\n");
		tg_exit(EXIT_BAD_CMDLINE);
	}
	tg_printf("virtio_console_io: transport %s\n", vt_name(t));
	struct pci_fn f;
	if (!pci_find(VIRTIO_VENDOR, 0x1003, 0, &f))
		tg_fail("no virtio-console function (1af4:1003)");
	tg_printf("virtio_console_io: function 0x%x 0x%x\n", f.slot, f.func);
	if (!vdev_init(&dev, &f, t))
		tg_fail("no %s transport", vt_name(t));
	u64 offered = vdev_features(&dev);
	print_features("offered", offered);
	if (!(offered & F_MULTIPORT))
		tg_fail("multiport not offered");
	if (!vdev_set_features(&dev, F_MULTIPORT))
		tg_fail("features refused");
	print_features("taken", dev.features);
	u32 max_ports = vdev_cfg32(&dev, 4);
	tg_printf("virtio_console_io: max_nr_ports 0x%x\n", max_ports);
	if (max_ports == 0 || max_ports > 32 || 2 + 2 * max_ports > MAX_QUEUES)
		tg_fail("max_nr_ports 0x%x out of range", max_ports);

	/* Every queue, as Linux sets them all up. */
	nqueues = (u16)(2 + 2 * max_ports);
	queues = tg_alloc(sizeof(struct vq) * nqueues, 64);
	for (u16 i = 0; i < nqueues; i++)
		if (!vq_init(&dev, &queues[i], i, 64) || queues[i].size > QSIZE_MAX)
			tg_fail("queue 0x%x missing or too large", i);
	ctrl_bufs = tg_alloc(CTRL_BUFS * CTRL_BUF_BYTES, 4096);
	rx_bufs = tg_alloc(RX_BUFS * RX_BUF_BYTES, 4096);
	for (int i = 0; i < CTRL_BUFS; i++)
		post(&queues[CTRL_RX], ctrl_bufs, CTRL_BUF_BYTES, i, ctrl_of);
	vdev_driver_ok(&dev);
	vq_kick(&queues[CTRL_RX]);
	send_ctrl(0, E_DEVICE_READY, 1);
	tg_printf("virtio_console_io: device_ready sent\n");

	u32 port = handshake(want, max_ports);
	tg_printf("virtio_console_io: port 0x%x queues 0x%x 0x%x\n", port, rx_queue(port),
		  rx_queue(port) + 1);
	for (int i = 0; i < RX_BUFS; i++)
		post(&queues[rx_queue(port)], rx_bufs, RX_BUF_BYTES, i, rx_of);
	vq_kick(&queues[rx_queue(port)]);
	send_ctrl(port, E_PORT_OPEN, 1);
	transmit(port, txlen);
	receive(port, rxlen);
	send_ctrl(port, E_PORT_OPEN, 0);
	vdev_reset(&dev);
	tg_printf("virtio_console_io: done\n");
	return EXIT_PASS;
}
