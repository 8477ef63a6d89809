/*
 * switch_x86_64.S - coroutine context switch for x86-64 (System V ABI).
 *
 * void weft__ctx_switch(void **save_sp, void *to_sp)
 *   Pushes the callee-saved state of the caller, stores the resulting stack
 *   pointer in *save_sp, loads to_sp and pops the state saved there, then
 *   jumps to the return address saved there (pop + indirect jump, see the
 *   end of the routine). Saved, exactly what the ABI makes
 *   callee-saved: rbx, rbp, r12-r15, rsp and the return rip, plus the MXCSR
 *   control bits and the x87 control word. Frame (from the saved rsp up):
 *     0: mxcsr (4 bytes), 4: x87 cw (2), 6: pad (2)
 *     8: r12, 16: r13, 24: r14, 32: r15, 40: rbx, 48: rbp, 56: return rip
 *   arch.h builds the first frame of a new context with the same layout.
 *
 * void weft__ctx_resume(void **save_sp, void *to_sp, const uint64_t *fp)
 *   The same, for a worker resuming a coroutine: the control words saved
 *   for the way back are *fp (the thread's own, weft__ctx_fp_get at its
 *   start) instead of the live registers. stmxcsr waits for every SSE
 *   instruction in flight and was the costliest instruction of a
 *   coroutine yield (about 4 ns of ~50); a worker's own code keeps the
 *   thread's control state, as the ABI asks of every function it calls
 *   (arch.h says what this means for a task that leaks a change).
 *
 * weft__ctx_trampoline: where a new context's first switch "returns" to;
 *   calls r13(r12) and never returns (the entry switches away for good).
 *
 * CET: both routines start with endbr64 (a no-op without IBT), the jump
 * back is `notrack` (return addresses are not landing pads), and the file
 * carries the IBT property when compiled with -fcf-protection. It does not
 * claim SHSTK: a switch that does not move the shadow stack would break
 * shadow stacks, so linking this object keeps them off for the binary.
 */
#if defined(__x86_64__)

/* Push the callee-saved registers and make room for the control words. */
.macro SAVE_GPRS
    pushq   %rbp
    pushq   %rbx
    pushq   %r15
    pushq   %r14
    pushq   %r13
    pushq   %r12
    subq    $8, %rsp
.endm

/* With rsp at a saved frame: load its state and jump to its return address.
 * Not `ret`: the return-stack predictor expects a return to our caller,
 * so a `ret` into the other context mispredicted on every switch (and
 * left the predictor out of step for the returns after it): 25 ns per
 * round trip against 11 ns with an indirect jump, whose predictor learns
 * the alternation (measured, 2-vCPU EPYC VM). `notrack`: the target is a
 * return address, not an endbr64 landing pad. */
.macro LOAD_AND_GO
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r12
    popq    %r13
    popq    %r14
    popq    %r15
    popq    %rbx
    popq    %rbp
    popq    %rcx
    notrack jmp *%rcx
.endm

    .text
    .globl  weft__ctx_switch
    .hidden weft__ctx_switch
    .type   weft__ctx_switch, @function
    .p2align 4
weft__ctx_switch:
    .cfi_startproc
    endbr64
    SAVE_GPRS
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    LOAD_AND_GO
    .cfi_endproc
    .size   weft__ctx_switch, .-weft__ctx_switch

    .globl  weft__ctx_resume
    .hidden weft__ctx_resume
    .type   weft__ctx_resume, @function
    .p2align 4
weft__ctx_resume:
    .cfi_startproc
    endbr64
    SAVE_GPRS
    movq    (%rdx), %rax            /* the thread's control state, as the */
    movq    %rax, (%rsp)            /* frame's; no stmxcsr (see above) */
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    LOAD_AND_GO
    .cfi_endproc
    .size   weft__ctx_resume, .-weft__ctx_resume

    .globl  weft__ctx_trampoline
    .hidden weft__ctx_trampoline
    .type   weft__ctx_trampoline, @function
    .p2align 4
weft__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    endbr64
    movq    %r12, %rdi
    callq   *%r13
    ud2
    .cfi_endproc
    .size   weft__ctx_trampoline, .-weft__ctx_trampoline

#if defined(__CET__) && (__CET__ & 1)
    .section .note.gnu.property, "a"
    .p2align 3
    .long   4                   /* name size */
    .long   16                  /* descriptor size */
    .long   5                   /* NT_GNU_PROPERTY_TYPE_0 */
    .asciz  "GNU"
    .long   0xc0000002          /* GNU_PROPERTY_X86_FEATURE_1_AND */
    .long   4
    .long   1                   /* IBT only */
    .p2align 3
#endif

#endif /* __x86_64__ */

    .section .note.GNU-stack, "", @progbits
