/*
 * bench64.S: the shared part of the virtio benchmark guests
 * (virtio_blk_bench, virtio_net_bench). Included once, after common.h.
 *
 * Entry: entry64.S (identity map of the low 4 GiB, long mode) enters
 * the guest's `bench_main` at CPL3 with IOPL 3 and interrupts off, after
 * bench_entry kept the command line. Everything after that runs at
 * CPL3: port I/O (PCI mechanism #1, the legacy virtio BAR, COM1,
 * isa-debug-exit) and rdtsc work there (see entry64.S). Why CPL3: the
 * benchmark loop must cost the same on any KVM; on software-assisted
 * ones (guest CPL0 emulated) a CPL0 loop would measure the emulator
 * instead of the VMM. No IDT: a fault triple-faults the guest (the VMM
 * exits with status 3), which the bench reports as a failure.
 *
 * Transport: the legacy virtio PCI interface (I/O BAR 0), which every
 * transitional device has, QEMU's and bhyve's alike. Queues are used
 * with interrupts suppressed (VRING_AVAIL_F_NO_INTERRUPT) and completion
 * polled from the used ring; doorbells honour VRING_USED_F_NO_NOTIFY, as
 * Linux's driver does.
 *
 * Routines follow the SysV convention: %rbx, %rbp, %r12-%r15 preserved,
 * everything else may be clobbered (lib64's output helpers preserve all).
 */

#define CONF1_ADDR      0xcf8
#define CONF1_DATA      0xcfc
#define CONF1_ENABLE    0x80000000

/* Legacy virtio registers (I/O BAR 0). */
#define L_HOST_FEATURES 0
#define L_GUEST_FEATURES 4
#define L_QUEUE_PFN     8
#define L_QUEUE_NUM     12
#define L_QUEUE_SEL     14
#define L_QUEUE_NOTIFY  16
#define L_STATUS        18
#define L_CONFIG        20      /* device config when MSI-X is off */

#define S_ACK           1
#define S_DRIVER        2
#define S_DRIVER_OK     4

#define VRING_DESC_F_NEXT       1
#define VRING_DESC_F_WRITE      2
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY  1
#define MAX_QSIZE       1024

/* struct vq (filled by vq_setup). */
#define Q_SIZE          0       /* u32 */
#define Q_INDEX         4       /* u32: queue number, for the doorbell */
#define Q_DESC          8
#define Q_AVAIL         16
#define Q_USED          24
#define Q_LAST_USED     32      /* u32: next used entry to look at */
#define Q_AVAIL_IDX     36      /* u32: driver's avail index, published at kick */
#define Q_BYTES         40
/* Ring memory one vq_setup may use: desc + avail, used on the next page. */
#define RING_MAX_BYTES  (16 * MAX_QSIZE + 4096 + 8 * MAX_QSIZE + 4096)

/* struct phase (read by vq_run). */
#define P_NAME          0       /* NUL-terminated name, printed after BENCH */
#define P_COUNT         8       /* requests to complete */
#define P_QD            16      /* requests kept in flight */
#define P_BYTES         24      /* payload bytes per request, for the report */
#define P_SUBMIT        32      /* fn(%rdi = slot): descriptors → head in %eax */
#define P_COMPLETE      40      /* fn(%rdi = slot, %esi = used len): checks */
#define P_QUEUE         48      /* struct vq * */
#define P_UNIT          56      /* unit word of the count ("req", "frames") */
#define P_IDLE          64      /* 0, or receive mode: see vq_run */
#define P_GENERIC_BYTES 72      /* device-specific fields may follow */

#define ENTRY64_USER bench_entry
#include "entry64.S"

        .text
/* bench_entry: %rdi = hvm_start_info; keeps the command line for opt_dec
   (one below 4 GiB) and runs the guest's bench_main. */
bench_entry:
        cmpl $HVM_START_MAGIC, (%rdi)
        jne 1f
        cmpl $0, 28(%rdi)       /* command line above 4 GiB: ignore */
        jne 1f
        movl 24(%rdi), %eax
        movl %eax, cmdline(%rip)
1:      jmp bench_main

/* --- command line ------------------------------------------------------ */

/* opt_dec: %rdi = "key=", %rsi = default: the decimal value after the
   key's first occurrence in the command line, else the default. */
opt_dec:
        movl cmdline(%rip), %edx
        testl %edx, %edx
        jz 9f
1:      cmpb $0, (%rdx)
        je 9f
        xorl %ecx, %ecx
2:      movb (%rdi,%rcx), %al
        testb %al, %al
        jz 3f
        cmpb (%rdx,%rcx), %al
        jne 4f
        incl %ecx
        jmp 2b
3:      addq %rcx, %rdx         /* digits */
        xorl %eax, %eax
5:      movzbl (%rdx), %ecx
        subl $'0', %ecx
        cmpl $9, %ecx
        ja 6f
        imulq $10, %rax, %rax
        addq %rcx, %rax
        incq %rdx
        jmp 5b
6:      ret
4:      incq %rdx
        jmp 1b
9:      movq %rsi, %rax
        ret

/* --- output --------------------------------------------------------------- */

/* putdec64: writes %rax in decimal. */
putdec64:
        pushq %rax
        pushq %rcx
        pushq %rdx
        pushq %rdi
        leaq decbuf_end(%rip), %rdi
        movl $10, %ecx
1:      xorl %edx, %edx
        divq %rcx
        addb $'0', %dl
        decq %rdi
        movb %dl, (%rdi)
        testq %rax, %rax
        jnz 1b
2:      movb (%rdi), %al
        call putc64
        incq %rdi
        leaq decbuf_end(%rip), %rdx
        cmpq %rdx, %rdi
        jb 2b
        popq %rdi
        popq %rdx
        popq %rcx
        popq %rax
        ret

/* fail64: prints the string at %rsi and exits with EXIT_FAIL. */
fail64:
        call puts64
        movl $EXIT_FAIL, %eax
        jmp exit64

/* tsc64: the TSC in %rax (clobbers %rdx). */
tsc64:
        rdtsc
        shlq $32, %rdx
        orq %rdx, %rax
        ret

/* --- PCI and the legacy virtio transport ---------------------------------- */

/* conf_rd32: %edi = mechanism #1 address (dword aligned) → %eax. */
conf_rd32:
        movl %edi, %eax
        movw $CONF1_ADDR, %dx
        outl %eax, %dx
        movw $CONF1_DATA, %dx
        inl %dx, %eax
        ret

/* conf_wr32: %edi = address, %esi = value. */
conf_wr32:
        movl %edi, %eax
        movw $CONF1_ADDR, %dx
        outl %eax, %dx
        movw $CONF1_DATA, %dx
        movl %esi, %eax
        outl %eax, %dx
        ret

/* pci_find: %edi = device/vendor dword: the first such function of bus
   0 as a mechanism #1 address in %eax, or 0. */
pci_find:
        pushq %rbx
        pushq %r12
        movl %edi, %r12d
        movl $CONF1_ENABLE, %ebx
1:      movl %ebx, %edi
        call conf_rd32
        cmpl %r12d, %eax
        je 2f
        addl $0x100, %ebx
        cmpl $(CONF1_ENABLE + 0x10000), %ebx
        jb 1b
        xorl %ebx, %ebx
2:      movl %ebx, %eax
        popq %r12
        popq %rbx
        ret

/* vl_init: %edi = the function's mechanism #1 address, %esi = features
   the driver takes: enables I/O and bus mastering, resets the device,
   sets ACK|DRIVER and writes host features & %esi. BAR 0 must be I/O. */
vl_init:
        pushq %rbx
        pushq %r12
        movl %edi, %ebx
        movl %esi, %r12d
        leal 0x10(%rbx), %edi
        call conf_rd32
        testl $1, %eax
        jnz 1f
        leaq s_bar0(%rip), %rsi
        jmp fail64
1:      andl $0xfffc, %eax
        movw %ax, vio_base(%rip)
        leal 4(%rbx), %edi
        movl $7, %esi           /* I/O, memory, bus master */
        call conf_wr32
        movw vio_base(%rip), %dx
        addw $L_STATUS, %dx
        xorl %eax, %eax
        outb %al, %dx
        movb $S_ACK, %al
        outb %al, %dx
        movb $(S_ACK | S_DRIVER), %al
        outb %al, %dx
        movw vio_base(%rip), %dx
        inl %dx, %eax           /* L_HOST_FEATURES */
        andl %r12d, %eax
        addw $L_GUEST_FEATURES, %dx
        outl %eax, %dx
        popq %r12
        popq %rbx
        ret

/* vl_driver_ok: sets DRIVER_OK. */
vl_driver_ok:
        movw vio_base(%rip), %dx
        addw $L_STATUS, %dx
        movb $(S_ACK | S_DRIVER | S_DRIVER_OK), %al
        outb %al, %dx
        ret

/* vq_setup: %edi = queue number, %rsi = page-aligned ring memory
   (RING_MAX_BYTES), %rdx = struct vq to fill. Reads the device's queue
   size (legacy drivers cannot choose it), lays out the ring, zeroes it,
   suppresses interrupts and gives the PFN. */
vq_setup:
        pushq %rbx
        pushq %r12
        pushq %r13
        movl %edi, %r12d
        movq %rdx, %rbx
        movq %rsi, %r13
        movw vio_base(%rip), %dx
        addw $L_QUEUE_SEL, %dx
        movl %r12d, %eax
        outw %ax, %dx
        movw vio_base(%rip), %dx
        addw $L_QUEUE_NUM, %dx
        inw %dx, %ax
        movzwl %ax, %eax
        testl %eax, %eax        /* a power of two in 1..=MAX_QSIZE */
        jz 8f
        cmpl $MAX_QSIZE, %eax
        ja 8f
        leal -1(%rax), %ecx
        testl %ecx, %eax
        jnz 8f
        movl %eax, Q_SIZE(%rbx)
        movl %r12d, Q_INDEX(%rbx)
        movl $0, Q_LAST_USED(%rbx)
        movl $0, Q_AVAIL_IDX(%rbx)
        movq %r13, Q_DESC(%rbx)
        movl %eax, %ecx
        shll $4, %ecx
        leaq (%r13,%rcx), %rdx
        movq %rdx, Q_AVAIL(%rbx)
        leaq 4095+6(%rdx,%rax,2), %rdx
        andq $~4095, %rdx
        movq %rdx, Q_USED(%rbx)
        movq %r13, %rdi         /* zero the whole layout */
        leaq 6(%rdx,%rax,8), %rcx
        subq %r13, %rcx
        xorl %eax, %eax
        rep stosb
        movq Q_AVAIL(%rbx), %rdx
        movw $VRING_AVAIL_F_NO_INTERRUPT, (%rdx)
        movq %r13, %rax
        shrq $12, %rax
        movw vio_base(%rip), %dx
        addw $L_QUEUE_PFN, %dx
        outl %eax, %dx
        popq %r13
        popq %r12
        popq %rbx
        ret
8:      leaq s_qsize(%rip), %rsi
        jmp fail64

/* vq_push: %rdi = struct vq, %esi = head descriptor: adds it to the
   avail ring (not yet published). */
vq_push:
        movl Q_AVAIL_IDX(%rdi), %eax
        movl Q_SIZE(%rdi), %ecx
        decl %ecx
        andl %eax, %ecx
        movq Q_AVAIL(%rdi), %rdx
        movw %si, 4(%rdx,%rcx,2)
        incl %eax
        movl %eax, Q_AVAIL_IDX(%rdi)
        ret

/* vq_kick: %rdi = struct vq: publishes the avail index, then rings the
   doorbell unless the device asked for no notifications. */
vq_kick:
        movq Q_AVAIL(%rdi), %rdx
        movl Q_AVAIL_IDX(%rdi), %eax
        movw %ax, 2(%rdx)
        lock orl $0, (%rsp)     /* the index before the flags read */
        movq Q_USED(%rdi), %rdx
        testw $VRING_USED_F_NO_NOTIFY, (%rdx)
        jnz 1f
        incq kicks(%rip)
        movl Q_INDEX(%rdi), %eax
        movw vio_base(%rip), %dx
        addw $L_QUEUE_NOTIFY, %dx
        outw %ax, %dx
1:      ret

/* vq_run: %rdi = struct phase. Keeps P_QD requests in flight on the
   phase's queue until P_COUNT completed, polling the used ring, then
   prints "BENCH name COUNT unit BYTES bytes CYCLES tsc KICKS kicks"
   (COUNT: requests completed; CYCLES: TSC ticks from the first
   submission to the last completion; KICKS: doorbells rung, each one
   exit). Receive mode (P_IDLE = N ticks): buffers wait for the host, so
   the clock starts at the first completion, and the phase ends early
   once N ticks pass without one (COUNT is then what arrived). P_SUBMIT
   and P_COMPLETE are called with %rbx = the phase. A used id maps back
   to its slot through slot_of_head; an id not in flight fails. */
vq_run:
        pushq %rbx
        pushq %rbp
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movq %rdi, %rbx
        movq P_QUEUE(%rbx), %rbp
        call slots_reset
        movq $0, kicks(%rip)
        xorl %r12d, %r12d       /* submitted */
        xorl %r13d, %r13d       /* completed */
        call tsc64
        movq %rax, %r15
        movq %rax, last_done(%rip)
1:      cmpq P_QD(%rbx), %r12   /* initial fill */
        jae 2f
        cmpq P_COUNT(%rbx), %r12
        jae 2f
        movq %r12, %rdi
        call submit_slot
        incq %r12
        jmp 1b
2:      movq %rbp, %rdi
        call vq_kick
3:      cmpq P_COUNT(%rbx), %r13
        jae 7f
        xorl %r14d, %r14d       /* kick needed */
4:      movq Q_USED(%rbp), %rdx
        movzwl 2(%rdx), %eax
        movl Q_LAST_USED(%rbp), %ecx
        cmpw %ax, %cx
        je 6f
        movl Q_SIZE(%rbp), %eax
        decl %eax
        andl %ecx, %eax
        incl %ecx
        movl %ecx, Q_LAST_USED(%rbp)
        movl 4(%rdx,%rax,8), %r8d       /* id */
        movl 8(%rdx,%rax,8), %esi       /* len */
        cmpl $MAX_QSIZE, %r8d
        jae 5f
        movzwl slot_of_head(,%r8,2), %edi
        cmpl $0xffff, %edi
        je 5f
        movw $0xffff, slot_of_head(,%r8,2)      /* a second use fails */
        pushq %rdi
        pushq %rdi
        call *P_COMPLETE(%rbx)
        popq %rdi
        popq %rdi
        pushq %rdi
        call tsc64
        popq %rdi
        movq %rax, last_done(%rip)
        incq %r13
        cmpq $0, P_IDLE(%rbx)
        je 8f
        cmpq $1, %r13
        jne 8f
        movq %rax, %r15         /* receive mode: clock from the first */
8:      cmpq P_COUNT(%rbx), %r12
        jae 4b
        call submit_slot
        incq %r12
        movl $1, %r14d
        jmp 4b
5:      leaq s_bad_used(%rip), %rsi
        jmp fail64
6:      testl %r14d, %r14d
        jz 9f
        movq %rbp, %rdi
        call vq_kick
9:      cmpq $0, P_IDLE(%rbx)
        je 3b
        call tsc64
        subq last_done(%rip), %rax
        cmpq P_IDLE(%rbx), %rax
        jbe 3b
7:      movq last_done(%rip), %rax
        subq %r15, %rax
        movq %rax, %r15
        leaq s_bench(%rip), %rsi
        call puts64
        movq P_NAME(%rbx), %rsi
        call puts64
        call space64
        movq %r13, %rax
        call putdec64
        call space64
        movq P_UNIT(%rbx), %rsi
        call puts64
        call space64
        movq P_BYTES(%rbx), %rax
        mulq %r13
        call putdec64
        leaq s_bytes(%rip), %rsi
        call puts64
        movq %r15, %rax
        call putdec64
        leaq s_tsc(%rip), %rsi
        call puts64
        movq kicks(%rip), %rax
        call putdec64
        leaq s_kicks(%rip), %rsi
        call puts64
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbp
        popq %rbx
        ret

/* submit_slot: %rdi = slot (with %rbx = phase, %rbp = vq): builds the
   request and pushes its head. */
submit_slot:
        pushq %rdi
        pushq %rdi
        call *P_SUBMIT(%rbx)
        popq %rdi
        popq %rdi
        cmpl $MAX_QSIZE, %eax
        jae 1f
        movw %di, slot_of_head(,%rax,2)
        movl %eax, %esi
        movq %rbp, %rdi
        jmp vq_push
1:      leaq s_bad_head(%rip), %rsi
        jmp fail64

/* slots_reset: forgets every head → slot mapping (before a phase). */
slots_reset:
        leaq slot_of_head(%rip), %rdi
        movl $(MAX_QSIZE * 2), %ecx
        movb $0xff, %al
        rep stosb
        ret

        .section .rodata
s_bench:        .asciz "BENCH "
s_bytes:        .asciz " bytes "
s_tsc:          .asciz " tsc "
s_kicks:        .asciz " kicks\n"
s_bar0:         .asciz "bench: BAR 0 is not an I/O BAR (no legacy transport)\n"
s_qsize:        .asciz "bench: queue size is not a power of two up to 1024\n"
s_bad_used:     .asciz "bench: used ring names a head that is not in flight\n"
s_bad_head:     .asciz "bench: descriptor head out of range\n"

        .data
        .balign 8
cmdline: .long 0
        .balign 8
kicks:  .quad 0                 /* doorbells rung in this phase */
last_done: .quad 0              /* TSC of the last completion */
vio_base: .word 0

        .bss
decbuf: .space 24
decbuf_end:
        .balign 2
slot_of_head: .space MAX_QSIZE * 2

#include "lib64.S"
