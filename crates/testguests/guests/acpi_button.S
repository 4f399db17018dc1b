/*
 * acpi_button: the ACPI power button as an OS sees it.
 *
 * Enables ACPI (ACPI_ENABLE to SMI_CMD), checks SCI_EN, enables
 * PWRBTN_EN and routes the SCI (ISA IRQ 9, level, active low as the MADT
 * says) to I/O APIC pin 9. Prints "acpi_button: ready" and waits:
 * 1. for the SCI; its handler reads PM1_STS, must find PWRBTN_STS, clears
 *    it (write 1) and prints "acpi_button: sci, pressed";
 * 2. then, polling PM1_STS with the SCI masked, for a second press:
 *    "acpi_button: pressed again";
 * and enters S5 (bhyve exits 1). The local APIC timer (~4 s) bounds the
 * first wait, the TSC (2^34 ticks) the second.
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
#define SMI_CMD         0xb2
#define ACPI_ENABLE     0xa0
#define PM1_STS         0x400
#define PM1_EN          0x402
#define PM1_CNT         0x404
#define PWRBTN          0x100
#define VEC_SCI         0x39
#define VEC_TIMEOUT     0x32
#define VEC_SPURIOUS    0x3f
#define IDT_ENTRIES     64

        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp

        movl $unexpected, %eax
        call fill_idt
        movl $VEC_SCI, %ecx
        movl $on_sci, %eax
        call set_gate
        movl $VEC_SPURIOUS, %ecx
        movl $on_spurious, %eax
        call set_gate
        movl $VEC_TIMEOUT, %ecx
        movl $timeout, %eax
        call set_gate
        lidt idtr

        movb $0xff, %al
        outb %al, $0x21
        outb %al, $0xa1
        movl $(0x100 | VEC_SPURIOUS), LAPIC_SVR

        movb $ACPI_ENABLE, %al
        outb %al, $SMI_CMD
        movw $PM1_CNT, %dx
        inw %dx, %ax
        testw $1, %ax
        jz no_sci_en
        movw $PM1_EN, %dx
        movw $PWRBTN, %ax
        outw %ax, %dx

        /* Pin 9: fixed, physical, level, active low, unmasked, APIC 0. */
        movl $(IOAPIC_REDIR(9) + 1), IOAPIC_SEL
        movl $0, IOAPIC_WIN
        movl $IOAPIC_REDIR(9), IOAPIC_SEL
        movl $(0x8000 | 0x2000 | VEC_SCI), IOAPIC_WIN

        PUTS32(s_ready)
        movl $0xb, LAPIC_TIMER_DIV
        movl $VEC_TIMEOUT, LAPIC_LVT_TIMER
        movl $0xffffffff, LAPIC_TIMER_INIT
wait_sci:
        sti
        hlt
        cli
        jmp wait_sci

on_sci:
        movl $stack_top, %esp
        movw $PM1_STS, %dx
        inw %dx, %ax
        testw $PWRBTN, %ax
        jz sci_without_button
        movw $PWRBTN, %ax
        outw %ax, %dx           /* write 1 to clear: the SCI drops */
        inw %dx, %ax
        testw $PWRBTN, %ax
        jnz not_cleared
        movl $0, LAPIC_EOI
        movl $(0x10000 | VEC_TIMEOUT), LAPIC_LVT_TIMER /* no more timeout */
        movl $0, LAPIC_TIMER_INIT
        /* Mask pin 9 and poll for the second press. */
        movl $IOAPIC_REDIR(9), IOAPIC_SEL
        movl $(0x10000 | 0x8000 | 0x2000 | VEC_SCI), IOAPIC_WIN
        PUTS32(s_sci)
        rdtsc
        movl %edx, %ebx
        addl $4, %ebx           /* deadline: now + 2^34 ticks */
        movw $PM1_STS, %dx
2:      inw %dx, %ax
        testw $PWRBTN, %ax
        jnz 3f
        pushl %edx
        rdtsc
        cmpl %ebx, %edx
        popl %edx
        jb 2b
        PUTS32(s_no_second)
        movl $EXIT_FAIL, %eax
        jmp exit
3:      movw $PWRBTN, %ax
        outw %ax, %dx
        PUTS32(s_again)
        movw $PM1_CNT, %dx
        movw $(5 << 10 | 1 << 13), %ax
        outw %ax, %dx
        PUTS32(s_alive)
        movl $EXIT_FAIL, %eax
        jmp exit

no_sci_en:
        PUTS32(s_no_sci_en)
        movl $EXIT_FAIL, %eax
        jmp exit
sci_without_button:
        PUTS32(s_sci_without)
        movl $EXIT_FAIL, %eax
        jmp exit
not_cleared:
        PUTS32(s_not_cleared)
        movl $EXIT_FAIL, %eax
        jmp exit
timeout:
        PUTS32(s_timeout)
        movl $EXIT_FAIL, %eax
        jmp exit
on_spurious:
        movl $stack_top, %esp
        jmp wait_sci
unexpected:
        PUTS32(s_unexpected)
        movl $EXIT_FAIL, %eax
        jmp exit


        .section .rodata
s_ready:   .asciz "acpi_button: ready\n"
s_sci:     .asciz "acpi_button: sci, pressed\n"
s_again:   .asciz "acpi_button: pressed again\n"
s_alive:   .asciz "acpi_button: still running after S5\n"
s_no_sci_en: .asciz "acpi_button: ACPI_ENABLE did not set SCI_EN\n"
s_sci_without: .asciz "acpi_button: SCI without PWRBTN_STS\n"
s_not_cleared: .asciz "acpi_button: PWRBTN_STS did not clear\n"
s_no_second: .asciz "acpi_button: timeout waiting for the second press\n"
s_timeout: .asciz "acpi_button: timeout waiting for the SCI\n"
s_unexpected: .asciz "acpi_button: unexpected interrupt or exception\n"

        .data
        .balign 4
idtr:   .word IDT_ENTRIES * 8 - 1
        .long idt

        .bss
        .balign 8
idt:    .space IDT_ENTRIES * 8
        .text

#include "lib32.S"
#include "idt32.S"
