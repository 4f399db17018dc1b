/*
 * virtio_rnd: drives every virtio-rnd PCI function (1af4:1005) on bus 0
 * as a driver would, without firmware help.
 *
 * 1. Finds the functions through configuration mechanism #1 and checks
 *    the first one's ID and class through ECAM (0xe0000000). For each
 *    function: enables I/O, memory and bus mastering, reads the BARs
 *    bhyve placed, walks the capability list (MSI-X, MSI, the virtio
 *    vendor capabilities with their cfg_type, BAR, offset and length).
 * 2. Interrupts ("irq=" on the command line): msix programs table entry
 *    0 to this CPU's local APIC and enables MSI-X; msi (bhyve's -W)
 *    programs the MSI capability; intx routes I/O APIC pins 16-23 (level,
 *    active low, as PCI) to one vector each and enables no MSI, so the
 *    pin that fires shows the function's INTx routing. msix-pending keeps
 *    the entry masked: the device must finish the buffers without an
 *    interrupt and set the PBA bit; unmasking then delivers it.
 *    msix-masked never unmasks, so the wait times out (status 35).
 * 3. The transport ("transport="): legacy is bhyve's I/O BAR 0 (reset,
 *    ACK|DRIVER, features, QUEUE_SEL/NUM/PFN with a page-aligned ring,
 *    QUEUE_VECTOR with MSI-X); modern is the common configuration
 *    structure (VERSION_1 and FEATURES_OK read back, queue size 16,
 *    desc/driver/device, enable) with the doorbell at the notify
 *    capability's offset + queue_notify_off * multiplier.
 * 4. Posts NBUF device-writable buffers of BUF_LEN bytes filled with
 *    PATTERN, notifies, waits for the interrupt and the used index, then
 *    checks ids, lengths, and that every buffer changed and differs from
 *    the others. The INTx handler reads the ISR (bit 0 must be set; the
 *    read lowers the level) and EOIs the local APIC. After the wait the
 *    guest keeps interrupts open for ~0.3 s of TSC: handler runs that find
 *    ISR 0 are counted and printed (a level left up after the ISR read is
 *    delivered again at every EOI: more than MAX_SPURIOUS fails).
 *
 * Interrupts are taken only in "sti; hlt" (or the masked poll) and the
 * handlers resume the wait loop on its saved stack instead of IRET,
 * which an instruction emulator may lack (see pit_ioapic). The local
 * APIC timer (~4 s) bounds every wait.
 */
#include "common.h"

#define LAPIC_ID        0xfee00020
#define LAPIC_EOI       0xfee000b0
#define LAPIC_SVR       0xfee000f0
#define LAPIC_LVT_TIMER 0xfee00320
#define LAPIC_TIMER_INIT 0xfee00380
#define LAPIC_TIMER_DIV 0xfee003e0
#define IOAPIC_SEL      0xfec00000
#define IOAPIC_WIN      0xfec00010
#define IOAPIC_REDIR(pin) (0x10 + 2 * (pin))
#define ECAM_BASE       0xe0000000
#define CONF1_ADDR      0xcf8
#define CONF1_DATA      0xcfc
#define CONF1_ENABLE    0x80000000
#define RNG_ID          0x10051af4
#define MSI_ADDR        0xfee00000

#define VEC_MSIX        0x30
#define VEC_TIMEOUT     0x32
#define VEC_MSI         0x34
#define VEC_SPURIOUS    0x3f
#define VEC_INTX        0x40    /* + (pin - 16) */
#define IDT_ENTRIES     0x48

#define MAX_FUNCS       4
#define NBUF            4
#define BUF_LEN         64
#define PATTERN         0xa5a5a5a5
#define RING_BYTES      8192    /* descriptors + avail, then used at +4096 */
#define USED_OFF        4096
#define MAX_QSIZE       128     /* desc + avail stay within the first page */
#define MODERN_QSIZE    16
#define MAX_SPURIOUS    8       /* more: the level was never lowered */
#define SETTLE_TICKS    0x40000000      /* ~0.3 s of TSC */

/* irq= modes */
#define IRQ_MSIX        1
#define IRQ_MSI         2
#define IRQ_INTX        3
#define IRQ_PENDING     4
#define IRQ_MASKED      5

/* Legacy registers (I/O BAR 0). */
#define L_HOST_FEATURES 0
#define L_GUEST_FEATURES 4
#define L_QUEUE_PFN     8
#define L_QUEUE_NUM     12
#define L_QUEUE_SEL     14
#define L_QUEUE_NOTIFY  16
#define L_STATUS        18
#define L_ISR           19
#define L_CONFIG_VECTOR 20
#define L_QUEUE_VECTOR  22

/* Modern common configuration. */
#define C_DFSELECT      0
#define C_DF            4
#define C_GFSELECT      8
#define C_GF            12
#define C_MSIX_CONFIG   16
#define C_STATUS        20
#define C_Q_SELECT      22
#define C_Q_SIZE        24
#define C_Q_MSIX_VECTOR 26
#define C_Q_ENABLE      28
#define C_Q_NOTIFY_OFF  30
#define C_Q_DESC        32
#define C_Q_DRIVER      40
#define C_Q_DEVICE      48

#define S_ACK           1
#define S_DRIVER        2
#define S_DRIVER_OK     4
#define S_FEATURES_OK   8
#define S_NEEDS_RESET   0x40

/* Prints string s then %eax as hex. */
#define SHOW(s)         PUTS32(s); call puthex
/* Fails with message s. */
#define FAIL(s)         movl $s, %edi; jmp fail_at

        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp
        xorl %esi, %esi
        cmpl $HVM_START_MAGIC, (%ebx)
        jne 1f
        cmpl $0, 28(%ebx)       /* command line above 4 GiB: ignore */
        jne 1f
        movl 24(%ebx), %esi
1:      call parse_args

        movl $unexpected, %eax
        call fill_idt
        movl $VEC_SPURIOUS, %ecx
        movl $on_spurious, %eax
        call set_gate
        movl $VEC_TIMEOUT, %ecx
        movl $timeout, %eax
        call set_gate
        call install_irq_gates
        lidt idtr

        call mask_pics
        movl $(0x100 | VEC_SPURIOUS), LAPIC_SVR
        movl LAPIC_ID, %eax
        shrl $24, %eax
        movl %eax, apic_id
        cmpl $IRQ_INTX, irqmode
        jne 2f
        call route_ioapic

2:      PUTS32(s_mode)
        movl transport_name, %esi
        call puts
        PUTS32(s_irq)
        movl irq_name, %esi
        call puts
        call newline

        call scan
        cmpl $0, nfuncs
        jne 3f
        FAIL(s_none)
3:      call ecam_check

        /* Drive each function with its own ring and buffers. */
        movl $0, cur_idx
4:      movl cur_idx, %ebx
        cmpl nfuncs, %ebx
        jae 5f
        movl funcs(,%ebx,4), %eax
        movl %eax, cur_cfg
        movl %ebx, %eax
        shll $13, %eax          /* RING_BYTES */
        addl $rings, %eax
        movl %eax, ring
        movl %ebx, %eax
        shll $8, %eax           /* NBUF * BUF_LEN */
        addl $bufs, %eax
        movl %eax, bufbase
        call drive
        incl cur_idx
        jmp 4b
5:      PUTS32(s_passed)
        movl nfuncs, %eax
        call puthex
        PUTS32(s_functions)
        movl $EXIT_PASS, %eax
        jmp exit

/* --- command line ------------------------------------------------------ */

/* parse_args: %esi = command line or 0; sets transport/irqmode and their
   names; a missing or unknown value exits with EXIT_BAD_CMDLINE. */
parse_args:
        movl $k_transport, %edi
        call find_opt
        testl %eax, %eax
        jz bad_cmdline
        movl $s_legacy, %edi
        call word_is
        je 1f
        movl $s_modern, %edi
        call word_is
        jne bad_cmdline
        movl $1, transport
1:      movl %edi, transport_name
        movl $k_irq, %edi
        call find_opt
        testl %eax, %eax
        jz bad_cmdline
        xorl %ecx, %ecx
2:      movl irq_words(,%ecx,4), %edi
        testl %edi, %edi
        jz bad_cmdline
        incl %ecx
        call word_is
        jne 2b
        movl %ecx, irqmode
        movl %edi, irq_name
        ret
bad_cmdline:
        PUTS32(s_bad_cmdline)
        movl $EXIT_BAD_CMDLINE, %eax
        jmp exit

/* find_opt: %esi = command line or 0, %edi = "key=": %eax = the value
   after the first occurrence, or 0. */
find_opt:
        pushl %esi
        pushl %ecx
        pushl %ebx
        xorl %eax, %eax
        testl %esi, %esi
        jz 9f
1:      cmpb $0, (%esi)
        je 9f
        xorl %ecx, %ecx
2:      movb (%edi,%ecx), %bl
        testb %bl, %bl
        jz 3f
        cmpb (%esi,%ecx), %bl
        jne 4f
        incl %ecx
        jmp 2b
3:      leal (%esi,%ecx), %eax
        jmp 9f
4:      incl %esi
        jmp 1b
9:      popl %ebx
        popl %ecx
        popl %esi
        ret

/* word_is: ZF set when the text at %eax is exactly the word at %edi
   (ended by NUL or a space). */
word_is:
        pushl %ecx
        pushl %ebx
        pushl %edx
        xorl %ecx, %ecx
1:      movb (%edi,%ecx), %bl
        movb (%eax,%ecx), %dl
        testb %bl, %bl
        jz 2f
        cmpb %dl, %bl
        jne 3f
        incl %ecx
        jmp 1b
2:      testb %dl, %dl
        jz 3f
        cmpb $' ', %dl
3:      popl %edx
        popl %ebx
        popl %ecx
        ret

/* --- interrupt set-up ---------------------------------------------------- */

/* install_irq_gates: only the vectors of the selected mode get handlers;
   anything else lands in "unexpected". */
install_irq_gates:
        movl irqmode, %eax
        cmpl $IRQ_MSI, %eax
        je 2f
        cmpl $IRQ_INTX, %eax
        je 3f
        movl $VEC_MSIX, %ecx
        movl $on_msi, %eax
        jmp set_gate
2:      movl $VEC_MSI, %ecx
        movl $on_msi, %eax
        jmp set_gate
3:      xorl %ebx, %ebx
4:      leal VEC_INTX(%ebx), %ecx
        movl intx_stubs(,%ebx,4), %eax
        call set_gate
        incl %ebx
        cmpl $8, %ebx
        jb 4b
        ret

/* route_ioapic: pins 16-23 → VEC_INTX + pin - 16, fixed, physical, level,
   active low, unmasked, to this CPU. */
route_ioapic:
        movl $16, %ebx
1:      leal (0x10 + 1)(%ebx,%ebx), %eax
        movl %eax, IOAPIC_SEL
        movl apic_id, %eax
        shll $24, %eax
        movl %eax, IOAPIC_WIN
        leal 0x10(%ebx,%ebx), %eax
        movl %eax, IOAPIC_SEL
        leal (VEC_INTX - 16 + 0xa000)(%ebx), %eax
        movl %eax, IOAPIC_WIN
        incl %ebx
        cmpl $24, %ebx
        jb 1b
        ret

/* msi_address: the message address of this CPU in %eax. */
msi_address:
        movl apic_id, %eax
        shll $12, %eax
        orl $MSI_ADDR, %eax
        ret

/* bar_of: %ecx = BAR index named by a capability: its memory address in
   %ebx; fails when it is not a decoded memory BAR. */
bar_of:
        cmpl $6, %ecx
        jae 1f
        cmpl $0, bar_io(,%ecx,4)
        jne 1f
        movl bar_addr(,%ecx,4), %ebx
        testl %ebx, %ebx
        jz 1f
        ret
1:      FAIL(s_bad_bar)

/* setup_msix: entry 0 → VEC_MSIX at this CPU (masked in the masked
   modes), entry 1 masked, MSI-X enabled, function mask clear. */
setup_msix:
        movl msix_cap, %esi
        testl %esi, %esi
        jnz 1f
        FAIL(s_no_msix)
1:      leal 4(%esi), %eax
        call cfg_rd32
        movl %eax, %ecx
        andl $7, %ecx
        call bar_of
        andl $~7, %eax
        addl %eax, %ebx
        movl %ebx, msix_table
        leal 8(%esi), %eax
        call cfg_rd32
        movl %eax, %ecx
        andl $7, %ecx
        pushl %ebx
        call bar_of
        andl $~7, %eax
        addl %ebx, %eax
        movl %eax, pba_addr
        popl %ebx
        call msi_address
        movl %eax, (%ebx)
        movl $0, 4(%ebx)
        movl $VEC_MSIX, 8(%ebx)
        xorl %eax, %eax
        cmpl $IRQ_PENDING, irqmode
        jb 2f
        movl $1, %eax
2:      movl %eax, 12(%ebx)
        leal 2(%esi), %eax
        call cfg_rd16
        orl $0x8000, %eax
        andl $0xbfff, %eax
        movl %eax, %ecx
        leal 2(%esi), %eax
        jmp cfg_wr16

/* setup_msi: one message, VEC_MSI at this CPU, enabled. */
setup_msi:
        movl msi_cap, %esi
        testl %esi, %esi
        jnz 1f
        FAIL(s_no_msi)
1:      leal 2(%esi), %eax
        call cfg_rd16
        movl %eax, %ebx         /* message control */
        call msi_address
        movl %eax, %ecx
        leal 4(%esi), %eax
        call cfg_wr32
        movl $8, %edi           /* data offset */
        testl $0x80, %ebx
        jz 2f
        xorl %ecx, %ecx
        leal 8(%esi), %eax
        call cfg_wr32
        movl $12, %edi
2:      movl $VEC_MSI, %ecx
        leal (%esi,%edi), %eax
        call cfg_wr16
        andl $~0x70, %ebx       /* one vector */
        orl $1, %ebx
        movl %ebx, %ecx
        leal 2(%esi), %eax
        jmp cfg_wr16

/* --- PCI ------------------------------------------------------------------ */

/* cfg_sel: %eax = offset in cur_cfg's space: selects its dword through
   CONF1_ADDR; %dx = the data port of the byte. */
cfg_sel:
        pushl %eax
        andl $0xfc, %eax
        orl cur_cfg, %eax
        movw $CONF1_ADDR, %dx
        outl %eax, %dx
        popl %eax
        pushl %eax
        andl $3, %eax
        leal CONF1_DATA(%eax), %edx
        popl %eax
        ret

/* cfg_rd{8,16,32}: %eax = offset → %eax; cfg_wr{16,32}: %eax = offset,
   %ecx = value. All clobber %edx. */
cfg_rd32:
        call cfg_sel
        inl %dx, %eax
        ret
cfg_rd16:
        call cfg_sel
        inw %dx, %ax
        movzwl %ax, %eax
        ret
cfg_rd8:
        call cfg_sel
        inb %dx, %al
        movzbl %al, %eax
        ret
cfg_wr32:
        call cfg_sel
        movl %ecx, %eax
        outl %eax, %dx
        ret
cfg_wr16:
        call cfg_sel
        movl %ecx, %eax
        outw %ax, %dx
        ret

/* scan: every slot and function of bus 0; 1af4:1005 ones go to funcs. */
scan:
        xorl %ebx, %ebx
1:      movl %ebx, %eax
        shll $8, %eax
        orl $CONF1_ENABLE, %eax
        movl %eax, cur_cfg
        xorl %eax, %eax
        call cfg_rd32
        cmpl $RNG_ID, %eax
        jne 2f
        movl nfuncs, %ecx
        cmpl $MAX_FUNCS, %ecx
        jae 2f
        movl cur_cfg, %eax
        movl %eax, funcs(,%ecx,4)
        incl nfuncs
        PUTS32(s_function)
        movl %ebx, %eax
        shrl $3, %eax
        call puthex
        call space
        movl %ebx, %eax
        andl $7, %eax
        call puthex
        call newline
2:      incl %ebx
        cmpl $256, %ebx
        jb 1b
        ret

/* ecam_check: the first function's ID and class dwords through ECAM equal
   mechanism #1's. */
ecam_check:
        movl funcs, %eax
        movl %eax, cur_cfg
        andl $0x00ffff00, %eax
        shll $4, %eax
        leal ECAM_BASE(%eax), %esi
        xorl %eax, %eax
        call cfg_rd32
        cmpl (%esi), %eax
        jne 1f
        movl $8, %eax
        call cfg_rd32
        cmpl 8(%esi), %eax
        jne 1f
        PUTS32(s_ecam)
        ret
1:      FAIL(s_ecam_differs)

/* read_bars: raw BAR registers into bar_raw (printed), decoded addresses
   into bar_addr/bar_io. A 64-bit BAR above 4 GiB fails (32-bit guest). */
read_bars:
        xorl %ebx, %ebx
1:      cmpl $6, %ebx
        jae 9f
        leal 0x10(,%ebx,4), %eax
        call cfg_rd32
        movl %eax, bar_raw(,%ebx,4)
        testl $1, %eax
        jz 2f
        andl $~3, %eax
        movl %eax, bar_addr(,%ebx,4)
        movl $1, bar_io(,%ebx,4)
        incl %ebx
        jmp 1b
2:      movl %eax, %ecx
        andl $~0xf, %eax
        movl %eax, bar_addr(,%ebx,4)
        movl $0, bar_io(,%ebx,4)
        andl $6, %ecx
        cmpl $4, %ecx
        jne 3f
        incl %ebx               /* the upper half of a 64-bit BAR */
        cmpl $6, %ebx
        jae 9f
        leal 0x10(,%ebx,4), %eax
        call cfg_rd32
        movl %eax, bar_raw(,%ebx,4)
        movl $0, bar_addr(,%ebx,4)
        testl %eax, %eax
        jz 3f
        FAIL(s_bar_high)
3:      incl %ebx
        jmp 1b
9:      PUTS32(s_bars)
        xorl %ebx, %ebx
4:      call space
        movl bar_raw(,%ebx,4), %eax
        call puthex
        incl %ebx
        cmpl $6, %ebx
        jb 4b
        jmp newline

/* walk_caps: prints each capability; records MSI-X, MSI and the virtio
   structures. Bounded, so a looping list cannot hang the guest. */
walk_caps:
        movl $6, %eax
        call cfg_rd16
        testl $0x10, %eax
        jnz 1f
        FAIL(s_no_caps)
1:      movl $0x34, %eax
        call cfg_rd8
        andl $0xfc, %eax
        movl %eax, %esi
        movl $48, %ebp
2:      testl %esi, %esi
        jz 9f
        cmpl $0x40, %esi
        jb 8f
        decl %ebp
        jz 8f
        movl %esi, %eax
        call cfg_rd8
        movl %eax, %ebx
        SHOW(s_cap)
        cmpl $0x11, %ebx
        jne 3f
        movl %esi, msix_cap
        jmp 5f
3:      cmpl $5, %ebx
        jne 4f
        movl %esi, msi_cap
        jmp 5f
4:      cmpl $9, %ebx
        jne 5f
        call vendor_cap
5:      call newline
        leal 1(%esi), %eax
        call cfg_rd8
        andl $0xfc, %eax
        movl %eax, %esi
        jmp 2b
8:      FAIL(s_bad_caps)
9:      ret

/* vendor_cap: the virtio structure at %esi: prints type, BAR, offset and
   length; records common/notify/ISR addresses. */
vendor_cap:
        leal 3(%esi), %eax
        call cfg_rd8
        movl %eax, cap_type
        SHOW(s_type)
        leal 4(%esi), %eax
        call cfg_rd8
        movl %eax, cap_bar
        SHOW(s_bar)
        leal 8(%esi), %eax
        call cfg_rd32
        movl %eax, cap_off
        SHOW(s_off)
        leal 12(%esi), %eax
        call cfg_rd32
        SHOW(s_len)
        movl cap_type, %ecx
        cmpl $5, %ecx
        ja 9f
        movl $1, %eax
        shll %cl, %eax
        orl %eax, vtypes
        cmpl $3, %ecx
        ja 9f
        cmpl $1, %ecx
        jb 9f
        movl cap_bar, %ecx
        call bar_of
        addl cap_off, %ebx
        movl cap_type, %ecx
        cmpl $1, %ecx
        jne 1f
        movl %ebx, common_addr
        ret
1:      cmpl $2, %ecx
        jne 2f
        movl %ebx, notify_base
        leal 16(%esi), %eax
        call cfg_rd32
        movl %eax, notify_mult
        ret
2:      movl %ebx, isr_addr
9:      ret

/* --- one function ----------------------------------------------------------- */

drive:
        /* Fresh per-function state. */
        movl $fstate, %edi
1:      movl $0, (%edi)
        addl $4, %edi
        cmpl $fstate_end, %edi
        jb 1b

        PUTS32(s_driving)
        movl cur_cfg, %eax
        shrl $11, %eax
        andl $31, %eax
        call puthex
        call space
        movl cur_cfg, %eax
        shrl $8, %eax
        andl $7, %eax
        call puthex
        call newline

        /* I/O, memory, bus master on; INTx not disabled. */
        movl $4, %eax
        call cfg_rd16
        orl $7, %eax
        andl $~0x400, %eax
        movl %eax, %ecx
        movl $4, %eax
        call cfg_wr16

        call read_bars
        call walk_caps

        movl irqmode, %eax
        cmpl $IRQ_MSI, %eax
        je 2f
        cmpl $IRQ_INTX, %eax
        je 3f
        call setup_msix
        jmp 3f
2:      call setup_msi
3:      cmpl $0, transport
        jne 4f
        call legacy_init
        jmp 5f
4:      call modern_init

5:      cmpl $IRQ_PENDING, irqmode
        jb 6f
        call masked_wait
6:      call irq_wait
        call check_used
        call report_irq

        /* Reset the device and turn MSI/MSI-X off for the next function. */
        cmpl $0, transport
        jne 7f
        movl bar_addr, %edx
        addl $L_STATUS, %edx
        xorl %eax, %eax
        outb %al, %dx
        jmp 8f
7:      movl common_addr, %ebx
        movb $0, C_STATUS(%ebx)
8:      movl msix_cap, %esi
        testl %esi, %esi
        jz 9f
        leal 2(%esi), %eax
        call cfg_rd16
        andl $0x7fff, %eax
        movl %eax, %ecx
        leal 2(%esi), %eax
        call cfg_wr16
9:      movl msi_cap, %esi
        testl %esi, %esi
        jz 10f
        leal 2(%esi), %eax
        call cfg_rd16
        andl $~1, %eax
        movl %eax, %ecx
        leal 2(%esi), %eax
        call cfg_wr16
10:     ret

/* post_buffers: NBUF write-only descriptors over the PATTERN-filled
   buffers, all made available (avail ring at ring + 16 * qsize). */
post_buffers:
        pushal
        movl ring, %edi
        movl bufbase, %esi
        xorl %ebx, %ebx
1:      movl %esi, (%edi)
        movl $0, 4(%edi)
        movl $BUF_LEN, 8(%edi)
        movl $2, 12(%edi)       /* VIRTQ_DESC_F_WRITE, no next */
        movl $(BUF_LEN / 4), %ecx
2:      movl $PATTERN, (%esi)
        addl $4, %esi
        loop 2b
        addl $16, %edi
        incl %ebx
        cmpl $NBUF, %ebx
        jb 1b
        movl qsize, %edi
        shll $4, %edi
        addl ring, %edi
        movw $0, (%edi)         /* flags: interrupts wanted */
        xorl %ebx, %ebx
3:      movw %bx, 4(%edi,%ebx,2)
        incl %ebx
        cmpl $NBUF, %ebx
        jb 3b
        movw $NBUF, 2(%edi)
        popal
        ret

/* legacy_init: the 0.9.5 sequence on BAR 0; ends with the notify. */
legacy_init:
        cmpl $0, bar_io
        jne 1f
        FAIL(s_bar0_not_io)
1:      movl bar_addr, %ebx
        leal L_STATUS(%ebx), %edx
        xorl %eax, %eax
        outb %al, %dx
        inb %dx, %al
        testb %al, %al
        jz 2f
        FAIL(s_reset_stuck)
2:      movb $S_ACK, %al
        outb %al, %dx
        movb $(S_ACK | S_DRIVER), %al
        outb %al, %dx
        leal L_HOST_FEATURES(%ebx), %edx
        inl %dx, %eax
        SHOW(s_legacy_features)
        call newline
        leal L_GUEST_FEATURES(%ebx), %edx
        xorl %eax, %eax
        outl %eax, %dx
        leal L_QUEUE_SEL(%ebx), %edx
        xorl %eax, %eax
        outw %ax, %dx
        cmpl $IRQ_MSI, irqmode
        je 3f
        cmpl $IRQ_INTX, irqmode
        je 3f
        /* MSI-X is on: vectors at 20/22; none for configuration changes. */
        leal L_CONFIG_VECTOR(%ebx), %edx
        movw $0xffff, %ax
        outw %ax, %dx
        leal L_QUEUE_VECTOR(%ebx), %edx
        xorl %eax, %eax
        outw %ax, %dx
        inw %dx, %ax
        testw %ax, %ax
        jz 3f
        FAIL(s_vector_refused)
3:      leal L_QUEUE_NUM(%ebx), %edx
        inw %dx, %ax
        movzwl %ax, %eax
        call check_qsize
        movl %eax, qsize
        SHOW(s_qsize)
        call newline
        call post_buffers
        leal L_QUEUE_PFN(%ebx), %edx
        movl ring, %eax
        shrl $12, %eax
        outl %eax, %dx
        leal L_STATUS(%ebx), %edx
        movb $(S_ACK | S_DRIVER | S_DRIVER_OK), %al
        outb %al, %dx
        inb %dx, %al
        testb $S_NEEDS_RESET, %al
        jz 4f
        PUTS32(s_needs_reset)
        movzbl %al, %eax
        jmp fail_value
4:      leal L_QUEUE_NOTIFY(%ebx), %edx
        xorl %eax, %eax
        outw %ax, %dx
        ret

/* check_qsize: %eax must be 4..MAX_QSIZE. */
check_qsize:
        cmpl $NBUF, %eax
        jb 1f
        cmpl $MAX_QSIZE, %eax
        ja 1f
        ret
1:      PUTS32(s_bad_qsize)
        call puthex
        call newline
        movl $EXIT_FAIL, %eax
        jmp exit

/* modern_init: the 1.x sequence through the capabilities; ends with the
   notify. */
modern_init:
        movl vtypes, %eax
        andl $0xe, %eax
        cmpl $0xe, %eax
        je 1f
        FAIL(s_no_vcaps)
1:      movl common_addr, %ebx
        movb $0, C_STATUS(%ebx)
        cmpb $0, C_STATUS(%ebx)
        je 2f
        FAIL(s_reset_stuck)
2:      movb $S_ACK, C_STATUS(%ebx)
        movb $(S_ACK | S_DRIVER), C_STATUS(%ebx)
        movl $1, C_DFSELECT(%ebx)
        movl C_DF(%ebx), %ecx
        movl $0, C_DFSELECT(%ebx)
        PUTS32(s_modern_features)
        movl C_DF(%ebx), %eax
        xchgl %eax, %ecx
        call puthex
        call space
        movl %ecx, %eax
        call puthex
        call newline
        movl $1, C_DFSELECT(%ebx)
        testl $1, C_DF(%ebx)    /* VERSION_1 */
        jnz 3f
        FAIL(s_no_version1)
3:      movl $0, C_GFSELECT(%ebx)
        movl $0, C_GF(%ebx)
        movl $1, C_GFSELECT(%ebx)
        movl $1, C_GF(%ebx)
        movb $(S_ACK | S_DRIVER | S_FEATURES_OK), C_STATUS(%ebx)
        testb $S_FEATURES_OK, C_STATUS(%ebx)
        jnz 4f
        FAIL(s_features_refused)
4:      cmpl $IRQ_MSI, irqmode
        je 5f
        cmpl $IRQ_INTX, irqmode
        je 5f
        movw $0xffff, C_MSIX_CONFIG(%ebx)
5:      movw $0, C_Q_SELECT(%ebx)
        movzwl C_Q_SIZE(%ebx), %eax
        SHOW(s_qsize)
        movw $MODERN_QSIZE, C_Q_SIZE(%ebx)
        movzwl C_Q_SIZE(%ebx), %eax
        SHOW(s_set)
        call newline
        call check_qsize
        cmpl $MODERN_QSIZE, %eax
        je 6f
        FAIL(s_qsize_refused)
6:      movl %eax, qsize
        cmpl $IRQ_MSI, irqmode
        je 7f
        cmpl $IRQ_INTX, irqmode
        je 7f
        movw $0, C_Q_MSIX_VECTOR(%ebx)
        cmpw $0, C_Q_MSIX_VECTOR(%ebx)
        je 7f
        FAIL(s_vector_refused)
7:      movl ring, %eax
        movl %eax, C_Q_DESC(%ebx)
        movl $0, (C_Q_DESC + 4)(%ebx)
        movl qsize, %eax
        shll $4, %eax
        addl ring, %eax
        movl %eax, C_Q_DRIVER(%ebx)
        movl $0, (C_Q_DRIVER + 4)(%ebx)
        movl ring, %eax
        addl $USED_OFF, %eax
        movl %eax, C_Q_DEVICE(%ebx)
        movl $0, (C_Q_DEVICE + 4)(%ebx)
        movzwl C_Q_NOTIFY_OFF(%ebx), %eax
        imull notify_mult, %eax
        addl notify_base, %eax
        movl %eax, notify_addr
        movw $1, C_Q_ENABLE(%ebx)
        call post_buffers
        movb $(S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK), C_STATUS(%ebx)
        movzbl C_STATUS(%ebx), %eax
        testb $S_NEEDS_RESET, %al
        jz 8f
        PUTS32(s_needs_reset)
        jmp fail_value
8:      movl notify_addr, %eax
        movw $0, (%eax)
        ret

/* --- waiting ------------------------------------------------------------------ */

/* arm_timeout / disarm_timeout: the ~4 s local APIC deadline. */
arm_timeout:
        movl $0xb, LAPIC_TIMER_DIV
        movl $VEC_TIMEOUT, LAPIC_LVT_TIMER
        movl $0xffffffff, LAPIC_TIMER_INIT
        ret
disarm_timeout:
        movl $0, LAPIC_TIMER_INIT
        ret

/* irq_wait: until an interrupt came and the device used NBUF buffers.
   Handlers come back to 1: with the stack as it was. */
irq_wait:
        call arm_timeout
        movl %esp, wait_esp
        movl $1f, resume
1:      cmpl $0, irq_count
        je 2f
        movl ring, %eax
        movzwl (USED_OFF + 2)(%eax), %eax
        cmpl $NBUF, %eax
        je 3f
2:      sti
        hlt
        cli
        jmp 1b
        /* Let anything still pending in (a level the device did not
           lower, a late MSI) arrive now, while this function is current. */
3:      rdtsc
        movl %eax, settle
        movl %edx, settle + 4
        movl $4f, resume
4:      sti
        nop
        cli
        rdtsc
        subl settle, %eax
        sbbl settle + 4, %edx
        jnz 5f
        cmpl $SETTLE_TICKS, %eax
        jb 4b
5:      jmp disarm_timeout

/* masked_wait: the MSI-X entry is masked: poll (interrupts enabled) for
   the used buffers and then the PBA bit (the device signals after it
   publishes the used entries); no interrupt may arrive meanwhile.
   msix-pending then unmasks (irq_wait sees the interrupt). A PBA bit
   that never comes ends in the timeout. */
masked_wait:
        call arm_timeout
        movl %esp, wait_esp
        movl $1f, resume
        sti
1:      movl ring, %eax
        movzwl (USED_OFF + 2)(%eax), %eax
        cmpl $NBUF, %eax
        jne 1b
        movl pba_addr, %eax
        testl $1, (%eax)
        jz 1b
        cli
        call disarm_timeout
        cmpl $0, irq_count
        je 3f
        FAIL(s_masked_fired)
3:      PUTS32(s_pending)
        cmpl $IRQ_PENDING, irqmode
        jne 4f
        movl msix_table, %eax
        movl $0, 12(%eax)
4:      ret

/* check_used: NBUF used entries, ids 0..NBUF-1 once each, BUF_LEN bytes
   each; every buffer lost the pattern and differs from every other. */
check_used:
        movl ring, %esi
        addl $USED_OFF, %esi
        movzwl 2(%esi), %eax
        cmpl $NBUF, %eax
        je 1f
        PUTS32(s_used_idx)
        jmp fail_value
1:      xorl %ebx, %ebx
        xorl %edi, %edi         /* ids seen */
2:      movl 4(%esi,%ebx,8), %ecx
        cmpl $NBUF, %ecx
        jb 3f
        PUTS32(s_bad_id)
        movl %ecx, %eax
        jmp fail_value
3:      movl $1, %eax
        shll %cl, %eax
        orl %eax, %edi
        movl 8(%esi,%ebx,8), %eax
        cmpl $BUF_LEN, %eax
        je 4f
        PUTS32(s_bad_len)
        jmp fail_value
4:      incl %ebx
        cmpl $NBUF, %ebx
        jb 2b
        cmpl $((1 << NBUF) - 1), %edi
        je 5f
        FAIL(s_dup_id)
        /* Pattern bytes left per buffer: random data has ~1 in 256. */
5:      movl bufbase, %esi
        xorl %ebx, %ebx
6:      xorl %edx, %edx
        xorl %ecx, %ecx
7:      cmpb $0xa5, (%esi,%ecx)
        jne 8f
        incl %edx
8:      incl %ecx
        cmpl $BUF_LEN, %ecx
        jb 7b
        cmpl $(BUF_LEN / 4), %edx
        jb 9f
        FAIL(s_pattern_left)
9:      addl $BUF_LEN, %esi
        incl %ebx
        cmpl $NBUF, %ebx
        jb 6b
        /* Pairwise: some dword differs. */
        xorl %ebx, %ebx         /* i */
10:     leal 1(%ebx), %ebp      /* j */
11:     cmpl $NBUF, %ebp
        jae 14f
        movl %ebx, %esi
        shll $6, %esi
        addl bufbase, %esi
        movl %ebp, %edi
        shll $6, %edi
        addl bufbase, %edi
        movl $(BUF_LEN / 4), %ecx
12:     movl (%esi), %eax
        cmpl (%edi), %eax
        jne 13f
        addl $4, %esi
        addl $4, %edi
        loop 12b
        FAIL(s_same_bytes)
13:     incl %ebp
        jmp 11b
14:     incl %ebx
        cmpl $NBUF, %ebx
        jb 10b
        PUTS32(s_random)
        ret

/* report_irq: which interrupt arrived; for INTx also the ISR values and
   that no handler run found the line still up. */
report_irq:
        movl irqmode, %eax
        cmpl $IRQ_MSI, %eax
        je 1f
        cmpl $IRQ_INTX, %eax
        je 2f
        PUTS32(s_msix_irq)
        ret
1:      PUTS32(s_msi_irq)
        ret
2:      PUTS32(s_intx)
        movl intx_pin, %eax
        call puthex
        movl isr_first, %eax
        SHOW(s_isr)
        call read_isr
        SHOW(s_then)
        call newline
        cmpl $0, spurious
        je 3f
        PUTS32(s_spurious)
        movl spurious, %eax
        call puthex
        PUTS32(s_on_pin)
        movl spurious_pin, %eax
        call puthex
        call newline
        cmpl $MAX_SPURIOUS, spurious
        jbe 3f
        FAIL(s_storm)
3:      ret

/* read_isr: the function's ISR byte in %eax (reading clears it and lowers
   INTx). */
read_isr:
        pushl %edx
        cmpl $0, transport
        jne 1f
        movl bar_addr, %edx
        addl $L_ISR, %edx
        inb %dx, %al
        jmp 2f
1:      movl isr_addr, %eax
        movb (%eax), %al
2:      movzbl %al, %eax
        popl %edx
        ret

/* --- handlers: resume the current wait loop on its stack ------------------- */

on_msi:
        incl irq_count
        movl $0, LAPIC_EOI
        movl wait_esp, %esp
        jmp *resume

        .irp pin, 0, 1, 2, 3, 4, 5, 6, 7
intx_\pin:
        movl $(16 + \pin), %ebx
        jmp on_intx
        .endr

/* on_intx: %ebx = I/O APIC pin. */
on_intx:
        movl %ebx, intx_pin
        call read_isr
        testl $1, %eax
        jnz 1f
        incl spurious
        movl %ebx, spurious_pin
        jmp 2f
1:      cmpl $0, irq_count
        jne 3f
        movl %eax, isr_first
3:      incl irq_count
2:      movl $0, LAPIC_EOI
        movl wait_esp, %esp
        jmp *resume

on_spurious:
        movl wait_esp, %esp
        jmp *resume

timeout:
        PUTS32(s_timeout)
        movl irq_count, %eax
        call puthex
        PUTS32(s_timeout_used)
        movl ring, %eax
        movzwl (USED_OFF + 2)(%eax), %eax
        jmp fail_value

unexpected:
        PUTS32(s_unexpected)
        movl $EXIT_FAIL, %eax
        jmp exit

/* fail_at: prints the line at %edi, exits with EXIT_FAIL. fail_value:
   prints %eax and a newline after a message already printed. */
fail_at:
        movl %edi, %esi
        call puts
        movl $EXIT_FAIL, %eax
        jmp exit
fail_value:
        call puthex
        call newline
        movl $EXIT_FAIL, %eax
        jmp exit

        .section .rodata
k_transport:    .asciz "transport="
k_irq:          .asciz "irq="
s_legacy:       .asciz "legacy"
s_modern:       .asciz "modern"
s_w_msix:       .asciz "msix"
s_w_msi:        .asciz "msi"
s_w_intx:       .asciz "intx"
s_w_pending:    .asciz "msix-pending"
s_w_masked:     .asciz "msix-masked"
        .balign 4
irq_words:      .long s_w_msix, s_w_msi, s_w_intx, s_w_pending, s_w_masked, 0
intx_stubs:     .long intx_0, intx_1, intx_2, intx_3, intx_4, intx_5, intx_6, intx_7
s_bad_cmdline:  .asciz "virtio_rnd: command line needs transport=legacy|modern irq=msix|msi|intx|msix-pending|msix-masked\n"
s_mode:         .asciz "virtio_rnd: transport "
s_irq:          .asciz " irq "
s_none:         .asciz "virtio_rnd: no 1af4:1005 function on bus 0\n"
s_function:     .asciz "virtio_rnd: function "
s_ecam:         .asciz "virtio_rnd: ecam agrees with conf1\n"
s_ecam_differs: .asciz "virtio_rnd: ecam differs from conf1\n"
s_driving:      .asciz "virtio_rnd: driving "
s_bars:         .asciz "virtio_rnd: bars"
s_bar_high:     .asciz "virtio_rnd: a 64-bit BAR above 4 GiB\n"
s_no_caps:      .asciz "virtio_rnd: no capability list\n"
s_bad_caps:     .asciz "\nvirtio_rnd: malformed capability list\n"
s_cap:          .asciz "virtio_rnd: cap "
s_type:         .asciz " type "
s_bar:          .asciz " bar "
s_off:          .asciz " off "
s_len:          .asciz " len "
s_bad_bar:      .asciz "\nvirtio_rnd: a capability names a BAR that is not decoded memory\n"
s_no_msix:      .asciz "virtio_rnd: no MSI-X capability\n"
s_no_msi:       .asciz "virtio_rnd: no MSI capability\n"
s_bar0_not_io:  .asciz "virtio_rnd: BAR 0 is not an I/O BAR\n"
s_reset_stuck:  .asciz "virtio_rnd: status does not read 0 after reset\n"
s_legacy_features: .asciz "virtio_rnd: legacy features "
s_modern_features: .asciz "virtio_rnd: modern features "
s_vector_refused: .asciz "virtio_rnd: queue vector 0 not accepted\n"
s_qsize:        .asciz "virtio_rnd: queue size "
s_set:          .asciz " set "
s_bad_qsize:    .asciz "virtio_rnd: bad queue size "
s_qsize_refused: .asciz "virtio_rnd: queue size not accepted\n"
s_needs_reset:  .asciz "virtio_rnd: device set NEEDS_RESET: status "
s_no_vcaps:     .asciz "virtio_rnd: no common, notify or ISR capability\n"
s_no_version1:  .asciz "virtio_rnd: VERSION_1 not offered\n"
s_features_refused: .asciz "virtio_rnd: FEATURES_OK did not stick\n"
s_masked_fired: .asciz "virtio_rnd: a masked vector interrupted\n"
s_pending:      .asciz "virtio_rnd: masked: buffers used, no interrupt, pending bit set\n"
s_used_idx:     .asciz "virtio_rnd: used idx "
s_bad_id:       .asciz "virtio_rnd: bad used id "
s_bad_len:      .asciz "virtio_rnd: bad used len "
s_dup_id:       .asciz "virtio_rnd: a buffer was used twice\n"
s_pattern_left: .asciz "virtio_rnd: a buffer still holds the fill pattern\n"
s_same_bytes:   .asciz "virtio_rnd: two buffers hold the same bytes\n"
s_random:       .asciz "virtio_rnd: 0x4 buffers of 0x40 random bytes\n"
s_msix_irq:     .asciz "virtio_rnd: msix interrupt on vector 0x30\n"
s_msi_irq:      .asciz "virtio_rnd: msi interrupt on vector 0x34\n"
s_spurious:     .asciz "virtio_rnd: intx handler found isr 0: "
s_storm:        .asciz "virtio_rnd: intx stays asserted after the ISR read\n"
s_intx:         .asciz "virtio_rnd: intx on pin "
s_on_pin:       .asciz " times, last on pin "
s_isr:          .asciz " isr "
s_then:         .asciz " then "
s_timeout:      .asciz "virtio_rnd: timeout: interrupts "
s_timeout_used: .asciz " used "
s_unexpected:   .asciz "virtio_rnd: unexpected interrupt or exception\n"
s_passed:       .asciz "virtio_rnd: "
s_functions:    .asciz " functions passed\n"

        .data
        .balign 4
idtr:   .word IDT_ENTRIES * 8 - 1
        .long idt
transport:      .long 0         /* 0 legacy, 1 modern */
transport_name: .long s_legacy
irqmode:        .long 0
irq_name:       .long 0
apic_id:        .long 0
nfuncs:         .long 0
cur_idx:        .long 0
cur_cfg:        .long 0
ring:           .long 0
bufbase:        .long 0
resume:         .long unexpected
wait_esp:       .long stack_top
/* Per-function state, cleared by drive. */
fstate:
bar_raw:        .space 24
bar_addr:       .space 24
bar_io:         .space 24
msix_cap:       .long 0
msi_cap:        .long 0
vtypes:         .long 0
cap_type:       .long 0
cap_bar:        .long 0
cap_off:        .long 0
common_addr:    .long 0
notify_base:    .long 0
notify_mult:    .long 0
notify_addr:    .long 0
isr_addr:       .long 0
msix_table:     .long 0
pba_addr:       .long 0
qsize:          .long 0
irq_count:      .long 0
spurious:       .long 0
intx_pin:       .long 0
isr_first:      .long 0
spurious_pin:   .long 0
settle:         .long 0, 0
fstate_end:
funcs:          .space MAX_FUNCS * 4

        .bss
        .balign 4096
rings:  .space MAX_FUNCS * RING_BYTES
bufs:   .space MAX_FUNCS * NBUF * BUF_LEN
        .balign 8
idt:    .space IDT_ENTRIES * 8
        .text

#include "lib32.S"
#include "idt32.S"
