/*
 * coro/guard.c - a coroutine that overflows its stack hits the guard page
 * and the process dies of SIGSEGV after printing a message naming the
 * task; any other fault in a coroutine is passed on untouched. Each case
 * runs in a forked child whose stderr the test reads. Stacks are mapped in
 * batches (coro/stack.c), their guards either guard markers or mprotect
 * (platform/stack.c): the overflow is caught in a later stack of a batch
 * and with the mprotect guards too.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/wt.h"
#include "platform/platform.h"

static volatile int depth_limit = 1 << 30; /* never reached: the stack ends first */

__attribute__((noinline)) static int recurse(volatile char *prev, int depth)
{
    volatile char frame[512];
    frame[0] = (char)depth;
    frame[511] = prev ? prev[0] : 0;
    if (depth >= depth_limit)
        return 0;
    return recurse(frame, depth + 1) + frame[0]; /* not a tail call */
}

static int overflow_coro(void *arg)
{
    (void)arg;
    if (weft_yield() != 0)
        return -1;
    return recurse(NULL, 0);
}

static int bad_load_coro(void *arg)
{
    volatile int *p = arg; /* an inaccessible page, not NULL (UBSan stops NULL) */
    return *p;
}

/* Runs a few coroutines that take the first stacks of the worker's batch
 * and stay alive, then overflows in another one. */
static int stay(void *arg)
{
    while (!atomic_load((_Atomic int *)arg))
        if (weft_yield() != 0)
            return -1;
    return 0;
}

static int later_overflow_coro(void *arg)
{
    (void)arg;
    static _Atomic int never;
    weft_runtime_t *rt = weft_runtime_current();
    for (int i = 0; i < 5; i++)
        if (weft_spawn_coro(rt, stay, &never, NULL, NULL) != 0)
            return -1;
    for (int i = 0; i < 20; i++) /* they start meanwhile */
        if (weft_yield() != 0)
            return -1;
    weft_coro_opts_t o = WEFT_CORO_OPTS_INIT;
    o.name = "deep-later";
    weft_task_t *h;
    if (weft_spawn_coro(rt, overflow_coro, NULL, &o, &h) != 0)
        return -1;
    return weft_join(h, NULL);
}

static bool child_fallback; /* the child maps stacks the old way */

/* Fork; the child runs fn as a coroutine named `name`. Returns the wait
 * status; *err receives the child's stderr. */
static int run_child(int (*fn)(void *), void *arg, const char *name, char *err, size_t cap)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        if (child_fallback)
            weft__stack_map_fallback();
        weft_runtime_t *rt;
        weft_config_t cfg;
        weft_config_init(&cfg);
        cfg.workers = 2;
        if (weft_runtime_new(&cfg, &rt) != 0)
            _exit(3);
        weft_coro_opts_t o = WEFT_CORO_OPTS_INIT;
        o.name = name;
        int res;
        weft_runtime_run_coro(rt, fn, arg, &o, &res);
        _exit(4); /* not reached */
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fds[0], err + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = '\0';
    close(fds[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return status;
}

Test(coro_guard, overflow_dies_with_message, .timeout = 60)
{
    char err[4096];
    int st = run_child(overflow_coro, NULL, "deep-one", err, sizeof err);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
              "the child must die of SIGSEGV (status 0x%x); stderr: %s", st, err);
    cr_assert_not_null(strstr(err, "weft: coroutine task "), "stderr: %s", err);
    cr_assert_not_null(strstr(err, "\"deep-one\" overflowed its 65536-byte stack"), "stderr: %s",
                       err);
}

Test(coro_guard, overflow_in_a_later_stack_of_a_batch, .timeout = 60)
{
    char err[4096];
    int st = run_child(later_overflow_coro, NULL, "root", err, sizeof err);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status 0x%x; stderr: %s", st, err);
    cr_assert_not_null(strstr(err, "\"deep-later\" overflowed its 65536-byte stack"), "stderr: %s",
                       err);
}

Test(coro_guard, overflow_caught_by_mprotect_guards, .timeout = 60)
{
    char err[4096];
    child_fallback = true;
    int st = run_child(later_overflow_coro, NULL, "root", err, sizeof err);
    child_fallback = false;
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status 0x%x; stderr: %s", st, err);
    cr_assert_not_null(strstr(err, "\"deep-later\" overflowed its 65536-byte stack"), "stderr: %s",
                       err);
}

Test(coro_guard, other_faults_pass_through, .timeout = 60)
{
    char err[4096];
    void *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(page, MAP_FAILED);
    int st = run_child(bad_load_coro, page, "bad-load", err, sizeof err);
    /* The previous handler gets it: the default action (SIGSEGV), or under
     * ASan its own report (then abort). */
    if (WT_ASAN)
        cr_assert(strstr(err, "SEGV on unknown address"), "stderr: %s", err);
    else
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status 0x%x; stderr: %s", st, err);
    cr_assert_null(strstr(err, "overflowed"), "not reported as an overflow: %s", err);
    munmap(page, 4096);
}
