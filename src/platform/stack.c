/*
 * stack.c - memory for coroutine stacks, and the fault hook that turns a
 * stack overflow into a message.
 *
 * Owns: the mappings (mmap with a PROT_NONE guard at the low end), giving
 * pages back (MADV_DONTNEED), per-thread alternate signal stacks, and one
 * process-wide SIGSEGV/SIGBUS handler. The handler asks a hook (set by
 * src/coro) to describe the fault; if the hook claims it, the message is
 * written to stderr and the default action is restored, so the re-executed
 * access kills the process with SIGSEGV (core dump as usual). A fault the
 * hook does not claim goes to the handler that was installed before ours.
 *
 * Invariant: the handler is installed at most once per process and never
 * removed; the hook pointer is written before installation and read only
 * by the handler.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "platform/platform.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older headers lack it */
#endif

size_t weft__page_size(void)
{
    static _Atomic size_t cached;
    size_t p = atomic_load_explicit(&cached, memory_order_relaxed);
    if (!p) {
        long v = sysconf(_SC_PAGESIZE);
        p = v > 0 ? (size_t)v : 4096;
        atomic_store_explicit(&cached, p, memory_order_relaxed);
    }
    return p;
}

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13 */
#endif

/* Whether the kernel takes this advice from process_madvise on ourselves:
 * 0 not yet known, 1 yes, -1 no (then it is not asked again). Relaxed: a
 * hint; two threads finding out at once both ask, harmlessly. */
static _Atomic int vec_guard_ok, vec_populate_ok, vec_dontneed_ok;

/*
 * Apply `advice` to the n ranges in one system call. false if the kernel
 * refused or did part of it; the caller then does them one by one (every
 * advice used here may be repeated on a range already done).
 */
static bool advise_all(const struct iovec *v, unsigned n, int advice, _Atomic int *ok)
{
    if (atomic_load_explicit(ok, memory_order_relaxed) < 0)
        return false;
    size_t want = 0;
    for (unsigned i = 0; i < n; i++)
        want += v[i].iov_len;
    long r = -1;
    int e = ENOSYS;
    if (n == 1) {
        /* One range: madvise itself, one call instead of three. */
        if (madvise(v[0].iov_base, v[0].iov_len, advice) == 0)
            return true;
        e = errno;
        if (e == EINVAL || e == ENOSYS || e == EPERM)
            atomic_store_explicit(ok, -1, memory_order_relaxed);
        return false;
    }
#if defined(SYS_process_madvise) && defined(SYS_pidfd_open)
    /* A descriptor for ourselves each time: one cached across a fork()
     * would name the parent. */
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (fd >= 0) {
        r = syscall(SYS_process_madvise, fd, v, (size_t)n, advice, 0u);
        e = errno;
        close(fd);
    } else {
        e = errno;
    }
#endif
    if (r >= 0 && (size_t)r == want) {
        atomic_store_explicit(ok, 1, memory_order_relaxed);
        return true;
    }
    if (r < 0 && (e == ENOSYS || e == EINVAL || e == EPERM))
        atomic_store_explicit(ok, -1, memory_order_relaxed);
    return false;
}

void weft__stack_map_fallback(void)
{
    atomic_store_explicit(&vec_guard_ok, -1, memory_order_relaxed);
    atomic_store_explicit(&vec_populate_ok, -1, memory_order_relaxed);
    atomic_store_explicit(&vec_dontneed_ok, -1, memory_order_relaxed);
}

void *weft__stack_map(size_t len, size_t guard, unsigned n)
{
    if (n == 0 || n > WEFT__STACK_MAP_MAX || len > SIZE_MAX / n)
        return NULL;
    size_t page = weft__page_size();
    char *p = mmap(NULL, len * n, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct iovec v[WEFT__STACK_MAP_MAX];
    if (guard) {
        for (unsigned i = 0; i < n; i++)
            v[i] = (struct iovec){p + i * len, guard};
        if (!advise_all(v, n, MADV_GUARD_INSTALL, &vec_guard_ok)) {
            for (unsigned i = 0; i < n; i++) {
                if (mprotect(p + i * len, guard, PROT_NONE) != 0) {
                    munmap(p, len * n);
                    return NULL;
                }
            }
        }
    }
    /* The top page holds the header and the first frames: it is touched
     * at once. Populating it here costs a share of one system call
     * instead of a page fault; on the paravirtualised VMs we measure on,
     * a fault costs ~11 us, this ~1 us per page (and the first touch
     * after it still ~6 us, the hypervisor's own fault). Advice only:
     * before Linux 5.14 (EINVAL) the first touch faults it in. */
    if (len > guard + page) {
        for (unsigned i = 0; i < n; i++)
            v[i] = (struct iovec){p + (i + 1) * len - page, page};
        if (!advise_all(v, n, MADV_POPULATE_WRITE, &vec_populate_ok))
            for (unsigned i = 0; i < n; i++)
                (void)madvise(v[i].iov_base, page, MADV_POPULATE_WRITE);
    }
    return p;
}

void weft__stack_unmap(void *p, size_t len)
{
    if (p)
        munmap(p, len);
}

void weft__stack_discard_many(const weft__range_t *r, unsigned n)
{
    struct iovec v[WEFT__STACK_MAP_MAX];
    unsigned k = 0;
    if (n > WEFT__STACK_MAP_MAX)
        n = WEFT__STACK_MAP_MAX;
    for (unsigned i = 0; i < n; i++)
        if (r[i].len)
            v[k++] = (struct iovec){r[i].p, r[i].len};
    if (k == 0 || advise_all(v, k, MADV_DONTNEED, &vec_dontneed_ok))
        return;
    for (unsigned i = 0; i < k; i++)
        (void)madvise(v[i].iov_base, v[i].iov_len,
                      MADV_DONTNEED); /* advice: failure keeps the pages */
}

/* ---- alternate signal stacks ------------------------------------------------ */

#define ALT_SIZE ((size_t)64 << 10)

typedef struct altstack {
    stack_t old;
    void *mem;
    size_t size;
} altstack_t;

static _Thread_local altstack_t alt;

int weft__altstack_enter(void)
{
    altstack_t *a = &alt;
    if (a->mem)
        return 0;
    size_t sz = ALT_SIZE;
    long min = sysconf(_SC_SIGSTKSZ);
    if (min > 0 && (size_t)min * 4 > sz)
        sz = (size_t)min * 4;
    void *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -ENOMEM;
    stack_t ss = {.ss_sp = mem, .ss_size = sz, .ss_flags = 0};
    if (sigaltstack(&ss, &a->old) != 0) {
        int e = errno;
        munmap(mem, sz);
        return -e;
    }
    a->mem = mem;
    a->size = sz;
    /* Workers start with every signal blocked; a blocked synchronous fault
     * would kill the process without running any handler. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGSEGV);
    sigaddset(&set, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    return 0;
}

void weft__altstack_leave(void)
{
    altstack_t *a = &alt;
    if (!a->mem)
        return;
    /* Restores the previous stack, or (SS_DISABLE in old) none. Called
     * only from the worker's exit path, never on the alternate stack. */
    sigaltstack(&a->old, NULL);
    munmap(a->mem, a->size);
    a->mem = NULL;
}

/* ---- the fault handler ---------------------------------------------------------- */

/* Relaxed: written before the handler is installed (pthread_once orders
 * that), read by the handler; a lock-free atomic is async-signal-safe. */
static _Atomic(weft__fault_hook_t) fault_hook;
static struct sigaction old_segv, old_bus;
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;

static void chain(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *old = sig == SIGBUS ? &old_bus : &old_segv;
    if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
        old->sa_sigaction(sig, si, uc);
        return;
    }
    if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
        return;
    }
    /* Default action: restore it; returning re-executes the access. */
    signal(sig, SIG_DFL);
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    char msg[256];
    weft__fault_hook_t hook = atomic_load_explicit(&fault_hook, memory_order_relaxed);
    size_t n = hook ? hook(si->si_addr, msg, sizeof msg) : 0;
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, msg, n);
        (void)w;
        signal(sig, SIG_DFL); /* the retried access now kills the process */
        errno = saved;
        return;
    }
    chain(sig, si, uc);
    errno = saved;
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
}

void weft__fault_hook_install(weft__fault_hook_t hook)
{
    atomic_store_explicit(&fault_hook, hook, memory_order_relaxed);
    pthread_once(&fault_once, install);
}
