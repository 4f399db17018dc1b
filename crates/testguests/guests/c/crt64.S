/*
 * crt64.S: the entry of the C test guests.
 *
 * entry64.S enters tg_start(start_info) (tg.c) at CPL3 with IOPL 3 and
 * interrupts off, through user_entry; tg_start runs the guest's main.
 * Everything in C runs at CPL3 (see entry64.S for why and how), and
 * tg_map (tg.c) adds mappings above 4 GiB to entry64.S's user page
 * tables.
 */
#include "common.h"

#define ENTRY64_USER user_entry
#include "entry64.S"

        .text
/* The call aligns the stack as the SysV ABI expects at a function entry. */
user_entry:
        call tg_start
        ud2

/* No executable stack (silences ld). */
        .section .note.GNU-stack, "", @progbits
