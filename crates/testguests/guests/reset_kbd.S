/* reset_kbd: CPU reset through the keyboard controller (0xfe to 0x64). */
#include "common.h"
        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp
        PUTS32(msg)
        movb $0xfe, %al         /* pulse the reset line */
        outb %al, $0x64
        PUTS32(still)
        movl $EXIT_FAIL, %eax
        jmp exit

        .section .rodata
msg:    .asciz "reset_kbd: resetting\n"
still:  .asciz "reset_kbd: still running\n"

#include "lib32.S"
