/* reset_cf9: hard reset through the PCI reset control register 0xcf9. */
#include "common.h"
        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp
        PUTS32(msg)
        movw $0xcf9, %dx
        movb $0x06, %al         /* SYS_RST | RST_CPU */
        outb %al, %dx
        PUTS32(still)
        movl $EXIT_FAIL, %eax
        jmp exit

        .section .rodata
msg:    .asciz "reset_cf9: resetting\n"
still:  .asciz "reset_cf9: still running\n"

#include "lib32.S"
