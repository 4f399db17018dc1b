/*
 * serial_echo: waits for one byte c on COM1 (polling LSR.DR), prints
 * "echo: c" and exits with EXIT_PASS. Checks input reaching the guest, and
 * lets a test attach a TCP client before any output exists (bhyve drops
 * console output while no client is connected).
 */
#include "common.h"
#define COM1_LSR_DR 0x01

        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp
        movw $COM1_LSR, %dx
1:      inb %dx, %al
        testb $COM1_LSR_DR, %al
        jz 1b
        movw $COM1, %dx
        inb %dx, %al
        movb %al, echoed
        PUTS32(msg)
        movl $EXIT_PASS, %eax
        jmp exit

        .section .data
msg:    .ascii "echo: "
echoed: .asciz "?\n"

#include "lib32.S"
