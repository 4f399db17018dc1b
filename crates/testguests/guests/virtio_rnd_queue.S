/*
 * virtio_rnd's queue side (included by virtio_rnd.S): the split ring of
 * NBUF device-writable buffers, the legacy (BAR 0) and modern (common
 * configuration) set-up sequences that end with the notify, and the
 * check of what the device returned.
 */
        .code32
        .text
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

        .section .rodata
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
s_used_idx:     .asciz "virtio_rnd: used idx "
s_bad_id:       .asciz "virtio_rnd: bad used id "
s_bad_len:      .asciz "virtio_rnd: bad used len "
s_dup_id:       .asciz "virtio_rnd: a buffer was used twice\n"
s_pattern_left: .asciz "virtio_rnd: a buffer still holds the fill pattern\n"
s_same_bytes:   .asciz "virtio_rnd: two buffers hold the same bytes\n"
s_random:       .asciz "virtio_rnd: 0x4 buffers of 0x40 random bytes\n"
        .text
