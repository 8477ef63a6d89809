/*
 * util.h - small helpers every layer may use: container_of, branch hints,
 * cache-line size, a per-thread xorshift generator.
 * Header-only; no state, no syscalls.
 */
#ifndef WEFT_UTIL_H
#define WEFT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define WEFT__CACHELINE 64

#define weft__container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define weft__likely(x) __builtin_expect(!!(x), 1)
#define weft__unlikely(x) __builtin_expect(!!(x), 0)

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
