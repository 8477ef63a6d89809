/*
 * platform.h - every system call weft makes goes through here.
 *
 * Owns: the monotonic clock, futex wait/wake, thread creation with names,
 * CPU counting (affinity mask and cgroup quota), the ck_ec ops that let
 * ck's event counts sleep on futexes, coroutine stack mappings and the
 * fault handler that reports a stack overflow, the driver's epoll and
 * eventfd (poll.c) and the sockets of src/net (socket.h). Nothing above
 * src/platform includes a system header for a syscall or calls one
 * directly.
 *
 * All functions return 0 (or a count) or a negative errno; none sets errno
 * in a way callers must read.
 */
#ifndef WEFT_PLATFORM_H
#define WEFT_PLATFORM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdbool.h>
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
 * Map n stacks of len bytes each (len a multiple of the page size), one
 * after another from the returned base: private, lazily allocated
 * read-write memory, the lowest `guard` bytes of each stack inaccessible
 * and its highest page populated (the first frames go there). Each stack
 * may later be unmapped on its own (weft__stack_unmap(base + i * len,
 * len)). NULL on failure (no memory, or vm.max_map_count reached).
 *
 * System calls: one mmap for all n. On Linux >= 6.13 the guards are guard
 * markers (MADV_GUARD_INSTALL: no mapping split per guard) and the guards
 * and the top pages are each done by one process_madvise call; where that
 * is refused (older kernels, seccomp, valgrind) one mprotect and one
 * madvise per stack, each guard then a mapping of its own.
 */
void *weft__stack_map(size_t len, size_t guard, unsigned n);
#define WEFT__STACK_MAP_MAX 64 /* n at most */
/* Tests: make weft__stack_map take the one-call-per-stack path (mprotect
 * guards) from now on, as on a kernel that refuses the others. */
void weft__stack_map_fallback(void);
void weft__stack_unmap(void *p, size_t len);
/* Give the pages of n ranges (n <= WEFT__STACK_MAP_MAX) back; they read as
 * zero afterwards. One process_madvise(MADV_DONTNEED) for all where the
 * kernel takes it (Linux >= 6.13, which also flushes the TLBs once for
 * all of them), else one madvise per range. */
typedef struct weft__range {
    void *p;
    size_t len;
} weft__range_t;
void weft__stack_discard_many(const weft__range_t *r, unsigned n);

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

/* ---- the driver's poller (poll.c) ------------------------------------------ */

/* The kernel's epoll bits (checked against <sys/epoll.h> in poll.c). */
#define WEFT__EP_IN 0x001u
#define WEFT__EP_PRI 0x002u
#define WEFT__EP_OUT 0x004u
#define WEFT__EP_ERR 0x008u
#define WEFT__EP_HUP 0x010u
#define WEFT__EP_RDHUP 0x2000u
#define WEFT__EP_ET (1u << 31)

enum { WEFT__EPOLL_ADD = 0, WEFT__EPOLL_MOD = 1, WEFT__EPOLL_DEL = 2 };

/* struct epoll_event, which the kernel packs on x86-64. */
typedef struct
#if defined(__x86_64__)
    __attribute__((packed))
#endif
    weft__epoll_event {
    uint32_t events;
    uint64_t data;
} weft__epoll_event_t;

/* An epoll instance (O_CLOEXEC): fd or -errno. */
int weft__epoll_create(void);
/* op: WEFT__EPOLL_ADD/MOD/DEL. 0 or -errno. */
int weft__epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
/* Events returned (0 on timeout or EINTR) or -errno; timeout_ns < 0: none. */
int weft__epoll_wait(int epfd, weft__epoll_event_t *evs, int max, int64_t timeout_ns);
/* False once epoll_pwait2 was found missing and waits are rounded up to
 * whole milliseconds (for tests: a silent fallback would cost precision). */
bool weft__epoll_precise(void);
/* A non-blocking O_CLOEXEC eventfd: fd or -errno. */
int weft__eventfd_create(void);
void weft__eventfd_signal(int fd);
void weft__eventfd_drain(int fd);
/* close(2); never retried on EINTR. 0 or -errno. */
int weft__fd_close(int fd);
/* The CPUs this process may run on (its affinity mask), ascending, in a
 * malloc'd array the caller frees. 0, -ENOMEM or -errno. */
int weft__cpu_allowed(unsigned **cpus, unsigned *n);
/* Bind the calling thread to one CPU. 0 or -errno. */
int weft__thread_pin(unsigned cpu);
/* The calling thread's timer slack (prctl PR_SET_TIMERSLACK). 0 or -errno. */
int weft__thread_timer_slack(uint64_t ns);
/* Timer slack of every thread that waits in the poller (the driver thread,
 * or workers): the kernel may run its wake-ups this much late (default
 * 50 us). The timer wheel's resolution is larger; this only keeps the
 * kernel from adding to it. */
#define WEFT__POLL_TIMER_SLACK_NS 1000

#include "platform/socket.h"

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
