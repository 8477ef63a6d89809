/*
 * util.h - small helpers every layer may use: container_of, cache-line
 * size, a spinlock, TSan annotations, a per-thread xorshift generator.
 * Header-only; no state, no syscalls.
 */
#ifndef WEFT_UTIL_H
#define WEFT_UTIL_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEFT__CACHELINE 64

#define weft__container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define WEFT__ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((size_t)(a)-1))

/*
 * ThreadSanitizer cannot see ck's inline-asm atomics. Where ck hands an
 * object from one thread to another, these tell TSan about the edge.
 */
#if defined(__SANITIZE_THREAD__)
#define WEFT__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT__TSAN 1
#endif
#endif
#ifdef WEFT__TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define WEFT__TSAN_ACQUIRE(p) __tsan_acquire((void *)(p))
#define WEFT__TSAN_RELEASE(p) __tsan_release((void *)(p))
#else
#define WEFT__TSAN_ACQUIRE(p) ((void)0)
#define WEFT__TSAN_RELEASE(p) ((void)0)
#endif

/* AddressSanitizer builds (coroutine switches tell it about stack changes). */
#if defined(__SANITIZE_ADDRESS__)
#define WEFT__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT__ASAN 1
#endif
#endif

/*
 * A test-and-test-and-set spinlock for critical sections of a few
 * instructions (list link/unlink). Unlocking is a plain release store, so
 * an uncontended lock/unlock costs one atomic RMW, half of a mutex's two.
 * A waiter that spins too long yields the CPU, so a preempted holder is
 * not spun against for a whole time slice.
 */
typedef struct weft__spin {
    _Atomic bool held;
} weft__spin_t;

static inline void weft__spin_init(weft__spin_t *l)
{
    atomic_init(&l->held, false);
}

static inline void weft__spin_lock(weft__spin_t *l)
{
    for (unsigned n = 0;; n++) {
        /* Acquire: pairs with the release in weft__spin_unlock, so the
         * previous holder's writes are visible inside our section. */
        if (!atomic_exchange_explicit(&l->held, true, memory_order_acquire))
            return;
        while (atomic_load_explicit(&l->held, memory_order_relaxed)) {
            if (++n > 64) {
                sched_yield();
                n = 0;
            }
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
}

static inline void weft__spin_unlock(weft__spin_t *l)
{
    /* Release: publishes this section's writes to the next acquirer. */
    atomic_store_explicit(&l->held, false, memory_order_release);
}

/* xorshift32: a cheap, non-cryptographic generator for steal victims. */
static inline uint32_t weft__rng_next(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

#endif /* WEFT_UTIL_H */
