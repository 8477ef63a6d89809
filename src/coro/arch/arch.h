/*
 * arch.h - the machine-dependent part of a coroutine: the context switch
 * (switch_<arch>.S) and the first frame of a new context.
 *
 * A context is a saved stack pointer. weft__ctx_switch(&from, to) saves the
 * caller's callee-saved registers and floating-point control state on its
 * own stack, stores that stack pointer in `from`, and resumes `to`. A new
 * context is a frame laid out as the switch would have saved it, whose
 * return address is weft__ctx_trampoline, which calls entry(arg).
 *
 * Invariants: a context is resumed at most once per save (the caller of the
 * switch guarantees it: the task's RUNNING bit); entry never returns.
 * New contexts start with the ABI's default floating-point control state
 * (x86-64: MXCSR 0x1f80, x87 control word 0x037f; aarch64: FPCR 0).
 */
#ifndef WEFT_CORO_ARCH_H
#define WEFT_CORO_ARCH_H

#include <stdint.h>
#include <string.h>

void weft__ctx_switch(void **save_sp, void *to_sp);
void weft__ctx_trampoline(void);

/*
 * A worker resuming a coroutine: as weft__ctx_switch, except that on
 * x86-64 the control words kept for the switch back are *fp, the thread's
 * own (weft__ctx_fp_get at the worker's start), not read from the
 * registers. So when a coroutine switches back, the worker gets the
 * control state its thread started with; a stackless task that changed
 * the rounding mode and returned without restoring it (which the ABI
 * forbids of any function but fesetround and kin) has its change undone
 * at the next coroutine switch, instead of leaking into later tasks.
 */
void weft__ctx_resume(void **save_sp, void *to_sp, const uint64_t *fp);

/* The calling thread's floating-point control state, as the switch saves
 * it (x86-64: MXCSR | x87 control word << 32; aarch64: FPCR). */
static inline uint64_t weft__ctx_fp_get(void)
{
#if defined(__x86_64__)
    uint32_t mxcsr;
    uint16_t cw;
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(cw));
    return (uint64_t)mxcsr | (uint64_t)cw << 32;
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    return fpcr;
#endif
}

#if defined(__x86_64__)
#define WEFT__CTX_FRAME 64 /* bytes the switch keeps on a suspended stack */
#elif defined(__aarch64__)
#define WEFT__CTX_FRAME 0xb0
#else
#error "weft coroutines support x86-64 and aarch64 only"
#endif

/*
 * Build a new context on the stack whose highest usable address is `top`
 * (exclusive); returns the context (the stack pointer to switch to).
 */
static inline void *weft__ctx_make(void *top, void (*entry)(void *), void *arg)
{
    uintptr_t t = ((uintptr_t)top & ~(uintptr_t)15) - 16; /* 16 spare bytes */
    uint64_t *f = (uint64_t *)(t - WEFT__CTX_FRAME);
    memset(f, 0, WEFT__CTX_FRAME);
#if defined(__x86_64__)
    /* After the switch's `ret`, rsp = t (16-aligned): the trampoline's call
     * then enters entry with rsp + 8 aligned, as the ABI requires. */
    uint32_t mxcsr = 0x1f80;
    uint16_t fpucw = 0x037f;
    memcpy((char *)f, &mxcsr, 4);
    memcpy((char *)f + 4, &fpucw, 2);
    f[1] = (uint64_t)(uintptr_t)arg;   /* r12 */
    f[2] = (uint64_t)(uintptr_t)entry; /* r13 */
    f[6] = 0;                          /* rbp: ends frame-pointer walks */
    f[7] = (uint64_t)(uintptr_t)weft__ctx_trampoline;
#elif defined(__aarch64__)
    f[0x40 / 8] = (uint64_t)(uintptr_t)arg;                  /* x19 */
    f[0x48 / 8] = (uint64_t)(uintptr_t)entry;                /* x20 */
    f[0x90 / 8] = 0;                                         /* x29 */
    f[0x98 / 8] = (uint64_t)(uintptr_t)weft__ctx_trampoline; /* x30 */
    f[0xa0 / 8] = 0;                                         /* fpcr */
#endif
    return f;
}

#endif /* WEFT_CORO_ARCH_H */
