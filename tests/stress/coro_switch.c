/*
 * coro_switch - coroutine switch correctness and scale, as a plain program
 * (it also runs under TSan and, cross-built, under qemu-aarch64).
 *
 *  1. Registers, floating-point control state and errno survive 10^6
 *     suspensions (2x10^6 switches): coroutines sharing workers each keep
 *     their own values live across every weft_yield() in general-purpose
 *     and floating-point registers (forced into registers by empty asm
 *     statements), their own rounding mode (x87 control word and MXCSR on
 *     x86-64, FPCR on aarch64), flush-to-zero setting and errno, and check
 *     all of them after every resume. Pinned on one worker, then pinned
 *     and migratable on two.
 *  2. 10,000 coroutines alive at once (1,000 under TSan): each yields, awaits a stackless
 *     future that a stackless task completes only once all 10,000 are
 *     waiting, then spawns a child (a coroutine or a stackless task) and
 *     joins it; the sum of results is checked.
 *  3. A coroutine blocked in an await and cancelled: the await returns
 *     -ECANCELED, its cleanup runs, the future is dropped once, the join
 *     reports -ECANCELED.
 */
#define STRESS_NAME "coro_switch"
#include <errno.h>
#include <fenv.h>
#include <stdlib.h>

#include "common/stress.h"
#include "common/wt.h"

#if defined(__x86_64__)
#include <xmmintrin.h>
#define FP_CONSTRAINT "+x"
#else
#define FP_CONSTRAINT "+w"
#endif

static int scale_div(void)
{
    const char *s = getenv("WEFT_STRESS_DIV"); /* slow emulators: fewer rounds */
    int d = s ? atoi(s) : 1;
    return d > 0 ? d : 1;
}

/* ---- 1. registers, FP control, errno ------------------------------------------ */

typedef struct reg_arg {
    uint64_t seed;
    int yields;
    int round_mode;
    int ftz;
    bool migratable;
    _Atomic int *bad;
} reg_arg_t;

/*
 * errno through calls that are not inlined. A migratable coroutine must
 * use these (weft/coro.h): the compiler computes &errno once per function,
 * and after an await on another thread that address is the old thread's.
 * Pinned coroutines use errno directly.
 */
__attribute__((noinline)) static int errno_read(void)
{
    return errno;
}

__attribute__((noinline)) static void errno_write(int v)
{
    errno = v;
}

static const int modes[4] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};

static bool ftz_on(void)
{
#if defined(__x86_64__)
    return (_mm_getcsr() & 0x8000) != 0;
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    return (fpcr >> 24) & 1;
#endif
}

static void set_ftz(bool on)
{
#if defined(__x86_64__)
    _mm_setcsr(on ? (_mm_getcsr() | 0x8000) : (_mm_getcsr() & ~0x8000u));
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    fpcr = on ? (fpcr | (1u << 24)) : (fpcr & ~(uint64_t)(1u << 24));
    __asm__ volatile("msr fpcr, %0" ::"r"(fpcr));
#endif
}

static int mxcsr_round(void)
{
#if defined(__x86_64__)
    /* MXCSR RC bits (13-14) in the x87 encoding fegetround uses. */
    static const int map[4] = {FE_TONEAREST, FE_DOWNWARD, FE_UPWARD, FE_TOWARDZERO};
    return map[(_mm_getcsr() >> 13) & 3];
#else
    return fegetround();
#endif
}

static int reg_coro(void *p)
{
    reg_arg_t *a = p;
    uint64_t s = a->seed;
    uint64_t r0 = s * 3 + 1, r1 = s * 5 + 2, r2 = s * 7 + 3, r3 = s * 11 + 4, r4 = s * 13 + 5,
             r5 = s * 17 + 6;
    double f0 = (double)s + 0.25, f1 = (double)s * 2 + 0.5, f2 = (double)s * 3 + 0.75,
           f3 = (double)s * 4 + 1.5;
    /* A new coroutine starts with the ABI's default FP control state. */
    if (fegetround() != FE_TONEAREST || mxcsr_round() != FE_TONEAREST || ftz_on())
        atomic_fetch_add(a->bad, 1);
    fesetround(a->round_mode);
    set_ftz(a->ftz);
    for (int i = 0; i < a->yields; i++) {
        int want_errno = (int)(s % 1000) + i % 7 + 1;
        if (a->migratable)
            errno_write(want_errno);
        else
            errno = want_errno;
        __asm__ volatile("" : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3), "+r"(r4), "+r"(r5));
        __asm__ volatile(""
                         : FP_CONSTRAINT(f0), FP_CONSTRAINT(f1), FP_CONSTRAINT(f2),
                           FP_CONSTRAINT(f3));
        if (weft_yield() != 0) {
            atomic_fetch_add(a->bad, 1);
            return -1;
        }
        __asm__ volatile("" : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3), "+r"(r4), "+r"(r5));
        __asm__ volatile(""
                         : FP_CONSTRAINT(f0), FP_CONSTRAINT(f1), FP_CONSTRAINT(f2),
                           FP_CONSTRAINT(f3));
        bool ok = r0 == s * 3 + 1 && r1 == s * 5 + 2 && r2 == s * 7 + 3 && r3 == s * 11 + 4 &&
                  r4 == s * 13 + 5 && r5 == s * 17 + 6;
        ok = ok && f0 == (double)s + 0.25 && f1 == (double)s * 2 + 0.5 &&
             f2 == (double)s * 3 + 0.75 && f3 == (double)s * 4 + 1.5;
        ok = ok && fegetround() == a->round_mode && mxcsr_round() == a->round_mode &&
             ftz_on() == (bool)a->ftz && (a->migratable ? errno_read() : errno) == want_errno;
        if (!ok) {
            if (getenv("CORO_DEBUG"))
                fprintf(stderr, "i=%d r0 %d f0 %d round %d/%d want %d ftz %d errno %d/%d\n", i,
                        r0 == s * 3 + 1, f0 == (double)s + 0.25, fegetround(), mxcsr_round(),
                        a->round_mode, ftz_on(), errno, want_errno);
            atomic_fetch_add(a->bad, 1);
            return -2;
        }
    }
    return 0;
}

static void switch_round(unsigned workers, int coros, int yields, bool migratable)
{
    weft_runtime_t *rt = wt_runtime(workers);
    _Atomic int bad = 0;
    reg_arg_t *args = calloc((size_t)coros, sizeof *args);
    weft_task_t **h = calloc((size_t)coros, sizeof *h);
    weft_coro_opts_t o = WEFT_CORO_OPTS_INIT;
    o.migratable = migratable;
    for (int i = 0; i < coros; i++) {
        args[i] = (reg_arg_t){(uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull >> 20,
                              yields,
                              modes[i % 4],
                              i % 3 == 1,
                              migratable,
                              &bad};
        int rc = weft_spawn_coro(rt, reg_coro, &args[i], &o, &h[i]);
        CHECK(rc == 0, "spawn_coro: %d", rc);
    }
    for (int i = 0; i < coros; i++) {
        int64_t v = -1;
        int rc = weft_join(h[i], &v);
        CHECK(rc == 0 && v == 0, "join %d: rc %d out %lld", i, rc, (long long)v);
    }
    CHECK(atomic_load(&bad) == 0, "%d coroutines saw corrupted state (workers %u, migratable %d)",
          atomic_load(&bad), workers, migratable);
    CHECK(weft_runtime_shutdown(rt, weft_now() + WT_SEC) == 0, "shutdown stragglers");
    CHECK(weft_runtime_free(rt) == 0, "free");
    free(args);
    free(h);
}

/* ---- 2. ten thousand at once ---------------------------------------------------- */

/* TSan keeps a large state per fiber (one per coroutine): its build runs
 * a tenth as many, which still exceeds what any worker queue holds. */
#define MANY (WT_TSAN ? 1000 : 10000)

typedef struct many {
    wt_flag_t *flags;
    wt_counts_t counts;
    _Atomic int waiting;
    _Atomic int bad;
} many_t;

static many_t *M;

static int many_child(void *arg)
{
    if (weft_yield() != 0)
        atomic_fetch_add(&M->bad, 1);
    return (int)(intptr_t)arg * 3;
}

static int many_coro(void *arg)
{
    int i = (int)(intptr_t)arg;
    if (weft_yield() != 0)
        return -1;
    atomic_fetch_add(&M->waiting, 1);
    wt_wait_flag_t wf = {&M->counts, &M->flags[i], i + 7};
    int64_t got = 0;
    if (weft_await(&wt_wait_flag_vt, &wf, &got) != 0 || got != i + 7)
        return -2;
    weft_task_t *h;
    int rc;
    if (i % 2) {
        rc = weft_spawn_coro(weft_runtime_current(), many_child, arg, NULL, &h);
    } else {
        wt_ready_t r = {NULL, (int64_t)i * 3};
        rc = weft_spawn(weft_runtime_current(), &wt_ready_vt, &r, sizeof r, &h);
    }
    if (rc != 0)
        return -3;
    int64_t child = 0;
    if (weft_join(h, &child) != 0 || child != (int64_t)i * 3)
        return -4;
    return i;
}

/* Stackless: yields until every coroutine waits, then completes them all. */
typedef struct completer {
    weft_yield_t y;
} completer_t;

static weft_poll_t completer_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    completer_t *c = st;
    while (atomic_load(&M->waiting) < MANY) {
        weft_yield_init(&c->y);
        if (weft_yield_poll(&c->y, cx) == WEFT_PENDING)
            return WEFT_PENDING;
    }
    for (int i = 0; i < MANY; i++)
        wt_flag_raise(&M->flags[i]);
    *out = 0;
    return WEFT_READY;
}

static const weft_future_vtable_t completer_vt = {completer_poll, NULL, "completer"};

static void many_round(unsigned workers)
{
    M = calloc(1, sizeof *M);
    M->flags = calloc(MANY, sizeof *M->flags);
    for (int i = 0; i < MANY; i++)
        wt_flag_init(&M->flags[i]);
    wt_counts_init(&M->counts);
    weft_runtime_t *rt = wt_runtime(workers);
    weft_task_t **h = calloc(MANY, sizeof *h);
    for (int i = 0; i < MANY; i++)
        CHECK(weft_spawn_coro(rt, many_coro, (void *)(intptr_t)i, NULL, &h[i]) == 0, "spawn");
    completer_t c = {WEFT_YIELD_INIT};
    weft_task_t *ch;
    CHECK(weft_spawn(rt, &completer_vt, &c, sizeof c, &ch) == 0, "spawn completer");
    int64_t sum = 0;
    for (int i = 0; i < MANY; i++) {
        int64_t v = -1;
        int rc = weft_join(h[i], &v);
        CHECK(rc == 0 && v == i, "coroutine %d: rc %d result %lld", i, rc, (long long)v);
        sum += v;
    }
    CHECK(weft_join(ch, NULL) == 0, "completer");
    CHECK(sum == (int64_t)MANY * (MANY - 1) / 2, "sum %lld", (long long)sum);
    CHECK(atomic_load(&M->bad) == 0, "child yield failed");
    CHECK(atomic_load(&M->counts.drops) == MANY, "futures dropped %d times, want %d",
          atomic_load(&M->counts.drops), MANY);
    CHECK(weft_runtime_shutdown(rt, weft_now() + WT_SEC) == 0, "shutdown stragglers");
    for (int i = 0; i < MANY; i++)
        wt_flag_destroy(&M->flags[i]); /* wakers left registered hold task references */
    CHECK(weft_runtime_free(rt) == 0, "free");
    free(h);
    free(M->flags);
    free(M);
}

/* ---- 3. cancel while blocked ----------------------------------------------------- */

typedef struct cancel_arg {
    wt_counts_t counts;
    wt_flag_t never;
    _Atomic int await_rc;
    _Atomic int cleaned;
    _Atomic int blocked;
} cancel_arg_t;

static int cancel_coro(void *p)
{
    cancel_arg_t *a = p;
    char *buf = malloc(64); /* cleanup must free it (ASan: leak check) */
    wt_wait_flag_t wf = {&a->counts, &a->never, 0};
    atomic_store(&a->blocked, 1);
    int rc = weft_await(&wt_wait_flag_vt, &wf, NULL);
    atomic_store(&a->await_rc, rc);
    free(buf);
    atomic_store(&a->cleaned, 1);
    return 5;
}

static void cancel_round(void)
{
    weft_runtime_t *rt = wt_runtime(2);
    cancel_arg_t a;
    wt_counts_init(&a.counts);
    wt_flag_init(&a.never);
    atomic_init(&a.await_rc, 1);
    atomic_init(&a.cleaned, 0);
    atomic_init(&a.blocked, 0);
    weft_task_t *h;
    CHECK(weft_spawn_coro(rt, cancel_coro, &a, NULL, &h) == 0, "spawn");
    CHECK(wt_wait_int_ge(&a.counts.polls, 1, 10 * WT_SEC), "never blocked");
    CHECK(weft_task_cancel(h) == 0, "cancel");
    int64_t v = 0;
    int rc = weft_join(h, &v);
    CHECK(rc == -ECANCELED, "join after cancel: %d", rc);
    CHECK(atomic_load(&a.await_rc) == -ECANCELED, "await returned %d", atomic_load(&a.await_rc));
    CHECK(atomic_load(&a.cleaned) == 1, "cleanup did not run");
    CHECK(atomic_load(&a.counts.drops) == 1, "future dropped %d times",
          atomic_load(&a.counts.drops));
    CHECK(weft_runtime_shutdown(rt, weft_now() + WT_SEC) == 0, "shutdown stragglers");
    wt_flag_destroy(&a.never);
    CHECK(weft_runtime_free(rt) == 0, "free");
}

int main(void)
{
    int div = scale_div();
    int n = 1000000 / div;
    switch_round(1, 4, n / 4, false);
    switch_round(2, 8, n / 8, false);
    switch_round(2, 8, n / 8, true);
    many_round(2);
    many_round(1);
    cancel_round();
    printf("coro_switch: ok (%d suspensions x3, %d coroutines x2)\n", n, MANY);
    return 0;
}
