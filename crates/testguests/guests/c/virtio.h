/*
 * virtio.h: a polled virtio-pci driver for the test guests, over the
 * legacy (0.9.5, I/O BAR 0) or the modern (1.x capabilities) transport.
 * Split rings in tg_alloc'd memory; interrupts suppressed
 * (VRING_AVAIL_F_NO_INTERRUPT), completions polled from the used ring.
 */
#ifndef VIRTIO_H
#define VIRTIO_H

#include "pci.h"
#include "tg.h"

#define VIRTIO_VENDOR 0x1af4

#define VIRTIO_S_ACK 1
#define VIRTIO_S_DRIVER 2
#define VIRTIO_S_DRIVER_OK 4
#define VIRTIO_S_FEATURES_OK 8
#define VIRTIO_S_NEEDS_RESET 0x40
#define VIRTIO_S_FAILED 0x80

#define VIRTIO_F_INDIRECT_DESC (1ul << 28)
#define VIRTIO_F_EVENT_IDX (1ul << 29)
#define VIRTIO_F_VERSION_1 (1ul << 32)

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1

/* Descriptors one vq_add_indirect may chain. */
#define VQ_MAX_INDIRECT 32

enum vtransport { VT_LEGACY, VT_MODERN };

/* "transport=legacy|modern" from the command line; anything else (or
   nothing) exits with EXIT_BAD_CMDLINE. */
int vt_parse_transport(void);
const char *vt_name(enum vtransport t);

struct vdev {
	struct pci_fn fn;
	enum vtransport t;
	u16 io;               /* legacy: BAR 0 */
	u64 common;           /* modern: the structures' addresses */
	u64 notify;
	u32 notify_mul;
	u64 isr;
	u64 device;           /* 0: no device configuration */
	u64 features;         /* what vdev_set_features wrote */
};

/* Enables the function, finds the transport's registers, resets the
   device and sets ACK|DRIVER. 0 if the transport is missing. */
int vdev_init(struct vdev *d, const struct pci_fn *f, enum vtransport t);
/* The device's features (legacy: 32 bits). */
u64 vdev_features(struct vdev *d);
/* Writes the driver's features; modern: adds VERSION_1, sets FEATURES_OK
   and reads it back (0: the device refused). */
int vdev_set_features(struct vdev *d, u64 f);
/* Device-specific configuration (legacy: after the 20-byte header, as
   MSI-X stays off). */
u8 vdev_cfg8(struct vdev *d, u32 off);
u16 vdev_cfg16(struct vdev *d, u32 off);
u32 vdev_cfg32(struct vdev *d, u32 off);
u64 vdev_cfg64(struct vdev *d, u32 off);
void vdev_cfg_write8(struct vdev *d, u32 off, u8 v);
void vdev_cfg_write16(struct vdev *d, u32 off, u16 v);
void vdev_cfg_write32(struct vdev *d, u32 off, u32 v);
void vdev_driver_ok(struct vdev *d);
u8 vdev_status(struct vdev *d);
/* Writes status 0 and (modern) waits until it reads back 0. */
void vdev_reset(struct vdev *d);
/* Reads (and so clears) the ISR status. */
u8 vdev_isr(struct vdev *d);

struct vring_desc {
	u64 addr;
	u32 len;
	u16 flags, next;
};
struct vring_avail {
	u16 flags, idx, ring[];
};
struct vring_used_elem {
	u32 id, len;
};
struct vring_used {
	u16 flags, idx;
	struct vring_used_elem ring[];
};

struct vq {
	struct vdev *d;
	u16 index, size;
	volatile struct vring_desc *desc;
	volatile struct vring_avail *avail;
	volatile struct vring_used *used;
	u16 avail_idx;        /* next avail entry, published by vq_kick */
	u16 last_used;        /* next used entry to look at */
	u16 free_head, num_free;
	u16 *chain;           /* per head: descriptors it holds, 0 = free */
	struct vring_desc *indirect; /* VQ_MAX_INDIRECT per head */
	u64 notify_addr;      /* modern doorbell */
	u64 kicks;            /* doorbells rung */
};

/* size = min(device max, max_size) (legacy: the device's size, which a
   legacy driver cannot change). 0 if the queue does not exist. */
int vq_init(struct vdev *d, struct vq *q, u16 index, u16 max_size);

struct vbuf {
	u64 addr;
	u32 len;
	int write;            /* device-writable */
};

/* A chain of n direct descriptors: the head id, or -1 if the ring lacks
   free descriptors. Made available at the next vq_kick. */
int vq_add(struct vq *q, const struct vbuf *b, int n);
/* One descriptor pointing to an indirect table of n (fails the guest if
   INDIRECT_DESC was not negotiated or n > VQ_MAX_INDIRECT). */
int vq_add_indirect(struct vq *q, const struct vbuf *b, int n);
/* Publishes the avail index and rings the doorbell unless the device
   set VRING_USED_F_NO_NOTIFY. */
void vq_kick(struct vq *q);
/* The next used element: its head (descriptors freed) and length, or -1
   after timeout_tsc ticks. A used id that is not in flight fails the
   guest. */
int vq_poll(struct vq *q, u32 *len, u64 timeout_tsc);

#endif
