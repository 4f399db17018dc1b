/*
 * rtc: bhyve's RTC/CMOS (ports 0x70/0x71), seen from a guest.
 *
 * 1. Selects register A and polls it for an update edge (UIP set, then
 *    clear; TSC-bounded, ~1-4 s), so the time fields are read right
 *    after an update and are coherent.
 * 2. Reads century, year, month, day, hour, minute, second in the reset
 *    format (BCD, 24-hour), then in binary, and prints both.
 * 3. Prints the NVRAM memory and CPU bytes (0x34/0x35, 0x5b-0x5d, 0x5f).
 * 4. Periodic interrupts at 1024 Hz on I/O APIC pin 8 (8259s masked):
 *    waits for five, each acknowledged by reading register C (which
 *    must show IRQF and PF), then EOI. The local APIC timer (~4 s)
 *    bounds the wait.
 */
#include "common.h"

#define LAPIC_EOI       0xfee000b0
#define LAPIC_SVR       0xfee000f0
#define LAPIC_LVT_TIMER 0xfee00320
#define LAPIC_TIMER_INIT 0xfee00380
#define LAPIC_TIMER_DIV 0xfee003e0
#define IOAPIC_SEL      0xfec00000
#define IOAPIC_WIN      0xfec00010
#define IOAPIC_REDIR(pin) (0x10 + 2 * (pin))
#define RTC_INDEX       0x70
#define RTC_DATA        0x71
#define RTC_A           0x0a
#define RTC_B           0x0b
#define RTC_C           0x0c
#define UIP             0x80
#define VEC_RTC         0x30
#define VEC_TIMEOUT     0x32
#define VEC_SPURIOUS    0x3f
#define IDT_ENTRIES     64
#define TICKS           5
#define TSC_HI_LIMIT    3       /* 3 * 2^32 TSC ticks */

        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp

        movl $unexpected, %eax
        call fill_idt
        movl $VEC_RTC, %ecx
        movl $on_rtc, %eax
        call set_gate
        movl $VEC_SPURIOUS, %ecx
        movl $on_spurious, %eax
        call set_gate
        movl $VEC_TIMEOUT, %ecx
        movl $timeout, %eax
        call set_gate
        lidt idtr

        call mask_pics
        movl $(0x100 | VEC_SPURIOUS), LAPIC_SVR

        /* 1. An update edge: UIP rises, then falls. */
        rdtsc
        movl %edx, %edi         /* TSC high dword at the start */
        movb $RTC_A, %al
        outb %al, $RTC_INDEX
2:      call tsc_expired
        jc no_edge
        inb $RTC_DATA, %al
        testb $UIP, %al
        jz 2b
3:      call tsc_expired
        jc no_edge
        inb $RTC_DATA, %al
        testb $UIP, %al
        jnz 3b
        PUTS32(s_edge)

        /* 2. The time, BCD then binary. */
        PUTS32(s_bcd)
        call put_time
        movb $RTC_B, %al
        movb $0x06, %ah         /* binary, 24-hour */
        call cmos_write
        PUTS32(s_binary)
        call put_time

        /* 3. NVRAM. */
        PUTS32(s_cmos)
        xorl %ebx, %ebx
        movb $0x35, %al
        call cmos_read
        movb %al, %bh
        movb $0x34, %al
        call cmos_read
        movb %al, %bl
        movl %ebx, %eax
        call puthex
        call space
        movb $0x5d, %al
        call cmos_read
        movzbl %al, %ebx
        shll $16, %ebx
        movb $0x5c, %al
        call cmos_read
        movb %al, %bh
        movb $0x5b, %al
        call cmos_read
        movb %al, %bl
        movl %ebx, %eax
        call puthex
        call space
        movb $0x5f, %al
        call cmos_read
        movzbl %al, %eax
        call puthex
        call newline

        /* 4. Periodic interrupts: pin 8 edge, high, fixed, APIC 0. */
        movl $(IOAPIC_REDIR(8) + 1), IOAPIC_SEL
        movl $0, IOAPIC_WIN
        movl $IOAPIC_REDIR(8), IOAPIC_SEL
        movl $VEC_RTC, IOAPIC_WIN
        movl $0xb, LAPIC_TIMER_DIV
        movl $VEC_TIMEOUT, LAPIC_LVT_TIMER
        movl $0xffffffff, LAPIC_TIMER_INIT
        movb $RTC_A, %al
        movb $0x26, %ah         /* divider on, rate 6: 1024 Hz */
        call cmos_write
        movb $RTC_C, %al        /* nothing stale */
        call cmos_read
        movb $RTC_B, %al
        movb $0x42, %ah         /* PIE, 24-hour, BCD */
        call cmos_write
wait_rtc:
        cmpl $TICKS, ticks
        jae 4f
        sti
        hlt
        cli
        jmp wait_rtc
4:      movb $RTC_B, %al
        movb $0x02, %ah
        call cmos_write
        PUTS32(s_ticks)
        movl $EXIT_PASS, %eax
        jmp exit

no_edge:
        PUTS32(s_no_edge)
        movl $EXIT_FAIL, %eax
        jmp exit

timeout:
        PUTS32(s_timeout)
        movl ticks, %eax
        call puthex
        call newline
        movl $EXIT_FAIL, %eax
        jmp exit

/* Register C must name the periodic interrupt; reading it re-arms IRQ 8.
 * Returns to the wait loop (interrupts off) on a fresh stack. */
on_rtc:
        movb $RTC_C, %al
        call cmos_read
        andb $0xc0, %al
        cmpb $0xc0, %al
        jne bad_c
        incl ticks
        movl $0, LAPIC_EOI
        movl $stack_top, %esp
        jmp wait_rtc
bad_c:
        PUTS32(s_bad_c)
        movzbl %al, %eax
        call puthex
        call newline
        movl $EXIT_FAIL, %eax
        jmp exit
on_spurious:
        movl $stack_top, %esp
        jmp wait_rtc
unexpected:
        PUTS32(s_unexpected)
        movl $EXIT_FAIL, %eax
        jmp exit

/* tsc_expired: CF set once the TSC's high dword moved TSC_HI_LIMIT past
 * %edi. Keeps %eax. */
tsc_expired:
        pushl %eax
        pushl %edx
        rdtsc
        subl %edi, %edx
        cmpl $TSC_HI_LIMIT, %edx
        cmc
        popl %edx
        popl %eax
        ret

/* cmos_read: %al = register → %al = its value. */
cmos_read:
        outb %al, $RTC_INDEX
        inb $RTC_DATA, %al
        ret

/* cmos_write: register %al ← %ah. */
cmos_write:
        outb %al, $RTC_INDEX
        movb %ah, %al
        outb %al, $RTC_DATA
        ret

/* put_time: " C Y M D h m s" (raw register values) and a newline. */
put_time:
        pushl %esi
        pushl %eax
        movl $time_regs, %esi
1:      movb (%esi), %al
        cmpb $0xff, %al
        je 2f
        call cmos_read
        movzbl %al, %eax
        call space
        call puthex
        incl %esi
        jmp 1b
2:      call newline
        popl %eax
        popl %esi
        ret


        .section .rodata
time_regs: .byte 0x32, 0x09, 0x08, 0x07, 0x04, 0x02, 0x00, 0xff
s_edge:    .asciz "rtc: update edge\n"
s_no_edge: .asciz "rtc: no update edge\n"
s_bcd:     .asciz "rtc: bcd"
s_binary:  .asciz "rtc: binary"
s_cmos:    .asciz "rtc: cmos "
s_ticks:   .asciz "rtc: 0x5 periodic interrupts on pin 8\n"
s_timeout: .asciz "rtc: timeout: "
s_bad_c:   .asciz "rtc: register C "
s_unexpected: .asciz "rtc: unexpected interrupt or exception\n"

        .data
        .balign 4
idtr:   .word IDT_ENTRIES * 8 - 1
        .long idt
ticks:  .long 0

        .bss
        .balign 8
idt:    .space IDT_ENTRIES * 8
        .text

#include "lib32.S"
#include "idt32.S"
