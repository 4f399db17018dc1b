/*
 * virtio.c: the polled virtio-pci driver of virtio.h.
 */
#include "virtio.h"

/* Legacy registers (I/O BAR 0). */
#define L_HOST_FEATURES 0
#define L_GUEST_FEATURES 4
#define L_QUEUE_PFN 8
#define L_QUEUE_NUM 12
#define L_QUEUE_SEL 14
#define L_QUEUE_NOTIFY 16
#define L_STATUS 18
#define L_ISR 19
#define L_CONFIG 20

/* Modern common configuration (virtio 1.x §4.1.4.3). */
#define C_DFSELECT 0
#define C_DF 4
#define C_GFSELECT 8
#define C_GF 12
#define C_STATUS 20
#define C_Q_SELECT 22
#define C_Q_SIZE 24
#define C_Q_MSIX 26
#define C_Q_ENABLE 28
#define C_Q_NOFF 30
#define C_Q_DESC 32
#define C_Q_DRIVER 40
#define C_Q_DEVICE 48

#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR 3
#define CAP_DEVICE 4
#define NO_VECTOR 0xffff
#define LEGACY_ALIGN 4096

int vt_parse_transport(void)
{
	char v[16];
	if (tg_opt("transport", v, sizeof(v))) {
		if (strcmp(v, "legacy") == 0)
			return VT_LEGACY;
		if (strcmp(v, "modern") == 0)
			return VT_MODERN;
	}
	tg_printf("%s: transport=legacy|modern required\n", tg_name);
	tg_exit(EXIT_BAD_CMDLINE);
}

const char *vt_name(enum vtransport t)
{
	return t == VT_LEGACY ? "legacy" : "modern";
}

/* The modern structures, first capability of each type in a memory BAR. */
static int find_modern(struct vdev *d)
{
	const struct pci_fn *f = &d->fn;
	for (int n = 0;; n++) {
		int c = pci_find_cap(f, PCI_CAP_VENDOR, n);
		if (!c)
			break;
		u8 type = pci_cfg_read8(f, c + 3), bar = pci_cfg_read8(f, c + 4);
		u32 off = pci_cfg_read32(f, c + 8);
		if (bar > 5 || type < CAP_COMMON || type > CAP_DEVICE || pci_bar_is_io(f, bar))
			continue;
		u64 base = pci_bar(f, bar);
		if (!base)
			continue;
		u64 a = base + off;
		if (type == CAP_COMMON && !d->common)
			d->common = a;
		else if (type == CAP_NOTIFY && !d->notify) {
			d->notify = a;
			d->notify_mul = pci_cfg_read32(f, c + 16);
		} else if (type == CAP_ISR && !d->isr)
			d->isr = a;
		else if (type == CAP_DEVICE && !d->device)
			d->device = a;
	}
	return d->common && d->notify && d->isr;
}

static void set_status(struct vdev *d, u8 s)
{
	if (d->t == VT_LEGACY)
		outb(d->io + L_STATUS, s);
	else
		mmio_write8(d->common + C_STATUS, s);
}

u8 vdev_status(struct vdev *d)
{
	return d->t == VT_LEGACY ? inb(d->io + L_STATUS) : mmio_read8(d->common + C_STATUS);
}

void vdev_reset(struct vdev *d)
{
	set_status(d, 0);
	/* Modern devices may take a while; the status reads 0 when done. */
	u64 t0 = rdtsc();
	while (vdev_status(d) != 0) {
		if (rdtsc() - t0 > (1ul << 34))
			tg_fail("device reset did not complete");
		__asm__ volatile("pause");
	}
}

int vdev_init(struct vdev *d, const struct pci_fn *f, enum vtransport t)
{
	memset(d, 0, sizeof(*d));
	d->fn = *f;
	d->t = t;
	pci_enable(f);
	if (t == VT_LEGACY) {
		if (!pci_bar_is_io(f, 0))
			return 0;
		d->io = (u16)pci_bar(f, 0);
		if (!d->io)
			return 0;
	} else if (!find_modern(d)) {
		return 0;
	}
	vdev_reset(d);
	set_status(d, VIRTIO_S_ACK);
	set_status(d, VIRTIO_S_ACK | VIRTIO_S_DRIVER);
	return 1;
}

u64 vdev_features(struct vdev *d)
{
	if (d->t == VT_LEGACY)
		return inl(d->io + L_HOST_FEATURES);
	mmio_write32(d->common + C_DFSELECT, 0);
	u64 lo = mmio_read32(d->common + C_DF);
	mmio_write32(d->common + C_DFSELECT, 1);
	u64 hi = mmio_read32(d->common + C_DF);
	return lo | hi << 32;
}

int vdev_set_features(struct vdev *d, u64 f)
{
	if (d->t == VT_LEGACY) {
		d->features = f & 0xffffffffu;
		outl(d->io + L_GUEST_FEATURES, (u32)d->features);
		return 1;
	}
	f |= VIRTIO_F_VERSION_1;
	d->features = f;
	mmio_write32(d->common + C_GFSELECT, 0);
	mmio_write32(d->common + C_GF, (u32)f);
	mmio_write32(d->common + C_GFSELECT, 1);
	mmio_write32(d->common + C_GF, (u32)(f >> 32));
	u8 s = vdev_status(d);
	set_status(d, s | VIRTIO_S_FEATURES_OK);
	return (vdev_status(d) & VIRTIO_S_FEATURES_OK) != 0;
}

void vdev_driver_ok(struct vdev *d)
{
	set_status(d, vdev_status(d) | VIRTIO_S_DRIVER_OK);
}

u8 vdev_isr(struct vdev *d)
{
	return d->t == VT_LEGACY ? inb(d->io + L_ISR) : mmio_read8(d->isr);
}

/* --- device configuration ------------------------------------------------- */

static u64 cfg_addr(struct vdev *d, u32 off)
{
	if (d->t == VT_MODERN && !d->device)
		tg_fail("the device has no configuration structure");
	return d->device + off;
}

u8 vdev_cfg8(struct vdev *d, u32 off)
{
	return d->t == VT_LEGACY ? inb(d->io + L_CONFIG + off) : mmio_read8(cfg_addr(d, off));
}

u16 vdev_cfg16(struct vdev *d, u32 off)
{
	return d->t == VT_LEGACY ? inw(d->io + L_CONFIG + off) : mmio_read16(cfg_addr(d, off));
}

u32 vdev_cfg32(struct vdev *d, u32 off)
{
	return d->t == VT_LEGACY ? inl(d->io + L_CONFIG + off) : mmio_read32(cfg_addr(d, off));
}

u64 vdev_cfg64(struct vdev *d, u32 off)
{
	return vdev_cfg32(d, off) | (u64)vdev_cfg32(d, off + 4) << 32;
}

void vdev_cfg_write8(struct vdev *d, u32 off, u8 v)
{
	if (d->t == VT_LEGACY)
		outb(d->io + L_CONFIG + off, v);
	else
		mmio_write8(cfg_addr(d, off), v);
}

void vdev_cfg_write16(struct vdev *d, u32 off, u16 v)
{
	if (d->t == VT_LEGACY)
		outw(d->io + L_CONFIG + off, v);
	else
		mmio_write16(cfg_addr(d, off), v);
}

void vdev_cfg_write32(struct vdev *d, u32 off, u32 v)
{
	if (d->t == VT_LEGACY)
		outl(d->io + L_CONFIG + off, v);
	else
		mmio_write32(cfg_addr(d, off), v);
}

/* --- queues --------------------------------------------------------------- */

int vq_init(struct vdev *d, struct vq *q, u16 index, u16 max_size)
{
	memset(q, 0, sizeof(*q));
	q->d = d;
	q->index = index;
	u16 size;
	if (d->t == VT_LEGACY) {
		outw(d->io + L_QUEUE_SEL, index);
		size = inw(d->io + L_QUEUE_NUM);
	} else {
		mmio_write16(d->common + C_Q_SELECT, index);
		size = mmio_read16(d->common + C_Q_SIZE);
		if (size > max_size)
			size = max_size;
	}
	if (size == 0)
		return 0;
	if (size & (size - 1))
		tg_fail("queue %u: size %u is not a power of two", index, size);
	q->size = size;
	/* The legacy layout: used ring at the next 4 KiB boundary. */
	u64 avail_off = 16ul * size;
	u64 used_off = (avail_off + 6 + 2ul * size + LEGACY_ALIGN - 1) & ~(u64)(LEGACY_ALIGN - 1);
	u64 bytes = used_off + 6 + 8ul * size;
	u8 *ring = tg_alloc(bytes, 4096);
	q->desc = (void *)ring;
	q->avail = (void *)(ring + avail_off);
	q->used = (void *)(ring + used_off);
	q->chain = tg_alloc(2ul * size, 8);
	q->indirect = tg_alloc(sizeof(struct vring_desc) * VQ_MAX_INDIRECT * size, 16);
	for (u16 i = 0; i < size; i++)
		q->desc[i].next = (u16)(i + 1);
	q->num_free = size;
	q->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	if (d->t == VT_LEGACY) {
		outl(d->io + L_QUEUE_PFN, (u32)((u64)ring >> 12));
		return 1;
	}
	u64 c = d->common;
	mmio_write16(c + C_Q_SIZE, size);
	mmio_write16(c + C_Q_MSIX, NO_VECTOR);
	mmio_write32(c + C_Q_DESC, (u32)(u64)q->desc);
	mmio_write32(c + C_Q_DESC + 4, (u32)((u64)q->desc >> 32));
	mmio_write32(c + C_Q_DRIVER, (u32)(u64)q->avail);
	mmio_write32(c + C_Q_DRIVER + 4, (u32)((u64)q->avail >> 32));
	mmio_write32(c + C_Q_DEVICE, (u32)(u64)q->used);
	mmio_write32(c + C_Q_DEVICE + 4, (u32)((u64)q->used >> 32));
	q->notify_addr = d->notify + (u64)mmio_read16(c + C_Q_NOFF) * d->notify_mul;
	mmio_write16(c + C_Q_ENABLE, 1);
	if (mmio_read16(c + C_Q_ENABLE) != 1)
		tg_fail("queue %u: queue_enable did not stick", index);
	return 1;
}

/* Takes n descriptors off the free list as one chain; the head, or -1. */
static int take_chain(struct vq *q, int n)
{
	if (n < 1 || n > q->num_free)
		return -1;
	u16 head = q->free_head, id = head;
	for (int i = 0; i < n; i++) {
		if (i + 1 < n)
			id = q->desc[id].next;
		else
			q->free_head = q->desc[id].next;
	}
	q->num_free = (u16)(q->num_free - n);
	q->chain[head] = (u16)n;
	return head;
}

static void make_avail(struct vq *q, u16 head)
{
	q->avail->ring[q->avail_idx & (q->size - 1)] = head;
	q->avail_idx++;
}

int vq_add(struct vq *q, const struct vbuf *b, int n)
{
	int head = take_chain(q, n);
	if (head < 0)
		return -1;
	u16 id = (u16)head;
	for (int i = 0; i < n; i++) {
		volatile struct vring_desc *desc = &q->desc[id];
		desc->addr = b[i].addr;
		desc->len = b[i].len;
		desc->flags = (u16)((b[i].write ? VRING_DESC_F_WRITE : 0) |
				    (i + 1 < n ? VRING_DESC_F_NEXT : 0));
		id = desc->next;
	}
	make_avail(q, (u16)head);
	return head;
}

int vq_add_indirect(struct vq *q, const struct vbuf *b, int n)
{
	if (!(q->d->features & VIRTIO_F_INDIRECT_DESC))
		tg_fail("vq_add_indirect: INDIRECT_DESC not negotiated");
	if (n < 1 || n > VQ_MAX_INDIRECT)
		tg_fail("vq_add_indirect: %d descriptors", n);
	int head = take_chain(q, 1);
	if (head < 0)
		return -1;
	struct vring_desc *t = &q->indirect[(u64)head * VQ_MAX_INDIRECT];
	for (int i = 0; i < n; i++) {
		t[i].addr = b[i].addr;
		t[i].len = b[i].len;
		t[i].flags = (u16)((b[i].write ? VRING_DESC_F_WRITE : 0) |
				   (i + 1 < n ? VRING_DESC_F_NEXT : 0));
		t[i].next = (u16)(i + 1 < n ? i + 1 : 0);
	}
	volatile struct vring_desc *desc = &q->desc[head];
	desc->addr = (u64)t;
	desc->len = (u32)(n * sizeof(*t));
	desc->flags = VRING_DESC_F_INDIRECT;
	make_avail(q, (u16)head);
	return head;
}

void vq_kick(struct vq *q)
{
	tg_mb(); /* descriptors and ring entries before the index */
	q->avail->idx = q->avail_idx;
	tg_mb(); /* the index before the flags read */
	if (q->used->flags & VRING_USED_F_NO_NOTIFY)
		return;
	q->kicks++;
	if (q->d->t == VT_LEGACY)
		outw(q->d->io + L_QUEUE_NOTIFY, q->index);
	else
		mmio_write16(q->notify_addr, q->index);
}

int vq_poll(struct vq *q, u32 *len, u64 timeout_tsc)
{
	u64 t0 = rdtsc();
	while (q->used->idx == q->last_used) {
		if (rdtsc() - t0 > timeout_tsc)
			return -1;
		__asm__ volatile("pause");
	}
	tg_mb(); /* the entry after the index */
	volatile struct vring_used_elem *e = &q->used->ring[q->last_used & (q->size - 1)];
	u32 id = e->id, l = e->len;
	q->last_used++;
	if (id >= q->size || q->chain[id] == 0)
		tg_fail("queue %u: used id %u is not in flight", q->index, id);
	/* Back to the free list: the chain's last descriptor links to the
	   old free head. */
	u16 n = q->chain[id], last = (u16)id;
	for (u16 i = 1; i < n; i++)
		last = q->desc[last].next;
	q->desc[last].next = q->free_head;
	q->free_head = (u16)id;
	q->num_free = (u16)(q->num_free + n);
	q->chain[id] = 0;
	if (len)
		*len = l;
	return (int)id;
}
