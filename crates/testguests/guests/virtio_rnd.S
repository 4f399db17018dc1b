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
 * APIC timer (~17 s) bounds every wait.
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

/* --- waiting ------------------------------------------------------------------ */

/* arm_timeout / disarm_timeout: the ~17 s local APIC deadline (2^32
   ticks of KVM's 1 GHz APIC clock divided by 4). It only ends a failing
   run: the lab's nested L2 under load took over 4 s to serve a queue. */
arm_timeout:
        movl $0x1, LAPIC_TIMER_DIV
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
s_driving:      .asciz "virtio_rnd: driving "
s_no_msix:      .asciz "virtio_rnd: no MSI-X capability\n"
s_no_msi:       .asciz "virtio_rnd: no MSI capability\n"
s_masked_fired: .asciz "virtio_rnd: a masked vector interrupted\n"
s_pending:      .asciz "virtio_rnd: masked: buffers used, no interrupt, pending bit set\n"
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

#include "virtio_rnd_pci.S"
#include "virtio_rnd_queue.S"
#include "lib32.S"
#include "idt32.S"
