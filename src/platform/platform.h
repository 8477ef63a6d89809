/*
 * platform.h - every system call weft makes goes through here.
 *
 * Owns: the monotonic clock, futex wait/wake, thread creation with names,
 * CPU counting (affinity mask and cgroup quota), the ck_ec ops that let
 * ck's event counts sleep on futexes, coroutine stack mappings and the
 * fault handler that reports a stack overflow. Nothing above src/platform includes a
 * system header for a syscall or calls one directly.
 *
 * All functions return 0 (or a count) or a negative errno; none sets errno
 * in a way callers must read.
 */
#ifndef WEFT_PLATFORM_H
#define WEFT_PLATFORM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct ck_ec_ops;
struct ck_ec_mode;

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t weft__time_now_ns(void);

/*
 * Sleep while *addr == expected, until woken or the absolute monotonic
 * deadline (INT64_MAX: none). 0 when woken (possibly spuriously), -EAGAIN if
 * *addr != expected on entry, -ETIMEDOUT, -EINTR. Private futex.
 */
int weft__futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns);
/* Wake up to n (> 0) waiters on addr (INT32_MAX: all). Count woken or -errno. */
int weft__futex_wake(_Atomic uint32_t *addr, int n);

typedef struct weft__thread {
    pthread_t id;
} weft__thread_t;

/*
 * Start a joinable thread running fn(arg), named `name` (truncated to the
 * 15 characters Linux keeps), with all signals blocked in the new thread.
 * 0 or -errno.
 */
int weft__thread_start(weft__thread_t *t, void *(*fn)(void *), void *arg, const char *name);
int weft__thread_join(weft__thread_t *t);

/*
 * CPUs this process may use: the count of its affinity mask, lowered to
 * ceil(quota / period) when a cgroup CPU quota is set (cgroup v2 cpu.max, or
 * v1 cpu.cfs_quota_us / cpu.cfs_period_us). Always >= 1.
 */
unsigned weft__cpu_count(void);

/*
 * Anonymous private read-write pages (size a multiple of the page size),
 * or NULL. The memory is zero-filled on first touch.
 */
void *weft__pages_map(size_t size);
void weft__pages_unmap(void *p, size_t size);

/*
 * The ck_ec mode weft parks workers with: multi-producer, futex-backed,
 * CLOCK_MONOTONIC, with a short spin and no timed back-off wakeups (one
 * timed futex wait ending 1 s into a park, then untimed). Park untimed
 * (deadline NULL): ck does not clamp its back-off steps to the caller's
 * deadline, so a deadline < 1 s away can be overshot; see ec.c.
 */
const struct ck_ec_mode *weft__ec_mode(void);

/* ---- coroutine stacks (stack.c) ------------------------------------------ */

/* The system page size. */
size_t weft__page_size(void);
/*
 * Map len bytes (a multiple of the page size) of private, lazily allocated
 * read-write memory, the lowest `guard` bytes made inaccessible. NULL on
 * failure (no memory, or vm.max_map_count reached: each guarded stack is
 * two mappings).
 */
void *weft__stack_map(size_t len, size_t guard);
void weft__stack_unmap(void *p, size_t len);
/* Give the pages of [p, p+len) back; they read as zero afterwards. */
void weft__stack_discard(void *p, size_t len);

/*
 * Give the calling thread an alternate signal stack (so a fault on an
 * exhausted coroutine stack can still be reported) and unblock SIGSEGV and
 * SIGBUS in it. 0 or -errno. leave() restores the previous one.
 */
int weft__altstack_enter(void);
void weft__altstack_leave(void);

/*
 * Fault hook: called in the SIGSEGV/SIGBUS handler with the fault address.
 * If the fault is one weft explains, it writes a message of at most cap
 * bytes to buf and returns its length; the process then dies of the signal
 * after the message is written to stderr. Return 0 to pass the fault on to
 * the previously installed handler. Must be async-signal-safe.
 */
typedef size_t (*weft__fault_hook_t)(void *addr, char *buf, size_t cap);
/* Install the process-wide handler (once) with this hook. */
void weft__fault_hook_install(weft__fault_hook_t hook);

/* Spin-loop hint (pause on x86, yield on aarch64). */
static inline void weft__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif /* WEFT_PLATFORM_H */
