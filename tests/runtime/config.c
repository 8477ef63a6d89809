/*
 * runtime/config.c - configuration defaults, worker counts, thread names
 * and the on_thread_start / on_thread_stop hooks, weft_runtime_current and
 * weft_runtime_workers, weft_strerror.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "common/wt.h"

#define WAIT_NS (10 * WT_SEC)

Test(config, defaults, .timeout = 10)
{
    weft_config_t cfg;
    memset(&cfg, 0xa5, sizeof cfg);
    cr_assert_eq(weft_config_init(&cfg), 0);
    cr_assert_eq(cfg.workers, 0, "0 means the default worker count");
    cr_assert_not_null(cfg.thread_name);
    cr_assert_str_eq(cfg.thread_name, "weft");
    cr_assert_null(cfg.on_thread_start);
    cr_assert_null(cfg.on_thread_stop);
    cr_assert_null(cfg.hook_arg);
    cr_assert_eq(cfg.driver, WEFT_DRIVER_WORKERS);
    cr_assert_eq(cfg.help_delay_ns, 0, "0 means WEFT_HELP_DELAY_DEFAULT_NS");
    cr_assert_eq(cfg.pin_workers, 0, "workers are not bound by default");
    cr_assert_null(cfg.cpus);
    cr_assert_eq(cfg.ncpus, 0);
    unsigned n = weft_default_workers();
    cr_assert_geq(n, 1);
    cr_assert_leq(n, WEFT_MAX_WORKERS);
    cpu_set_t set;
    CPU_ZERO(&set);
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    cr_assert_leq(n, (unsigned)CPU_COUNT(&set), "never more than the affinity mask allows");
}

Test(config, default_worker_count, .timeout = 30)
{
    weft_config_t cfg;
    weft_config_init(&cfg);
    weft_runtime_t *rt = wt_runtime_cfg(&cfg);
    cr_assert_eq(weft_runtime_workers(rt), (int)weft_default_workers());
    cr_assert_eq(wt_finish(rt), 0);
    /* A NULL config means the defaults too. */
    rt = NULL;
    cr_assert_eq(weft_runtime_new(NULL, &rt), 0);
    cr_assert_not_null(rt);
    cr_assert_eq(weft_runtime_workers(rt), (int)weft_default_workers());
    cr_assert_eq(wt_finish(rt), 0);
}

Test(config, explicit_worker_counts, .timeout = 60)
{
    unsigned counts[] = {1, 2, 3, 8, 33};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        weft_runtime_t *rt = wt_runtime(counts[i]);
        cr_assert_eq(weft_runtime_workers(rt), (int)counts[i]);
        /* Every worker count runs tasks. */
        wt_counts_t c;
        wt_counts_init(&c);
        wt_ready_t r = {&c, (int64_t)counts[i]};
        int64_t out = 0;
        cr_assert_eq(weft_runtime_run(rt, &wt_ready_vt, &r, sizeof r, &out), 0);
        cr_assert_eq(out, (int64_t)counts[i]);
        cr_assert_eq(wt_finish(rt), 0);
    }
}

Test(config, max_workers, .timeout = 60)
{
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = WEFT_MAX_WORKERS + 1;
    weft_runtime_t *rt = (weft_runtime_t *)&cfg;
    cr_assert_eq(weft_runtime_new(&cfg, &rt), -EINVAL);
    cr_assert_null(rt, "*out is cleared on failure");
    cfg.workers = UINT32_MAX;
    cr_assert_eq(weft_runtime_new(&cfg, &rt), -EINVAL);
    int64_t out;
    wt_ready_t r = {NULL, 1};
    cr_assert_eq(weft_run(&cfg, &wt_ready_vt, &r, sizeof r, &out), -EINVAL);
    /* The maximum itself is accepted. */
    cfg.workers = WEFT_MAX_WORKERS;
    rt = wt_runtime_cfg(&cfg);
    cr_assert_eq(weft_runtime_workers(rt), WEFT_MAX_WORKERS);
    out = 0;
    cr_assert_eq(weft_runtime_run(rt, &wt_ready_vt, &r, sizeof r, &out), 0);
    cr_assert_eq(out, 1);
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- hooks and thread names --------------------------------------------------------- */

#define HOOK_MAX 8

typedef struct hooks {
    _Atomic int started[HOOK_MAX];
    _Atomic int stopped[HOOK_MAX];
    _Atomic int bad; /* index out of range, wrong arg, stop before start */
    _Atomic int tid_mismatch;
    pid_t tid[HOOK_MAX];
    char name[HOOK_MAX][16];
    _Atomic int runtime_ok[HOOK_MAX];
} hooks_t;

static hooks_t H;

static void on_start(unsigned index, void *arg)
{
    if (arg != &H || index >= HOOK_MAX) {
        atomic_fetch_add(&H.bad, 1);
        return;
    }
    H.tid[index] = gettid();
    pthread_getname_np(pthread_self(), H.name[index], sizeof H.name[index]);
    atomic_fetch_add(&H.started[index], 1);
}

static void on_stop(unsigned index, void *arg)
{
    if (arg != &H || index >= HOOK_MAX || atomic_load(&H.started[index]) != 1) {
        atomic_fetch_add(&H.bad, 1);
        return;
    }
    if (H.tid[index] != gettid())
        atomic_fetch_add(&H.tid_mismatch, 1);
    atomic_fetch_add(&H.stopped[index], 1);
}

static void run_hooks(unsigned workers, const char *prefix, const char *expect_prefix)
{
    memset(&H, 0, sizeof H);
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = workers;
    cfg.thread_name = prefix;
    cfg.on_thread_start = on_start;
    cfg.on_thread_stop = on_stop;
    cfg.hook_arg = &H;
    weft_runtime_t *rt = wt_runtime_cfg(&cfg);
    for (unsigned i = 0; i < workers; i++)
        cr_assert(wt_wait_int_ge(&H.started[i], 1, WAIT_NS), "worker %u never started", i);
    for (unsigned i = 0; i < workers; i++) {
        cr_assert_eq(atomic_load(&H.started[i]), 1, "start hook ran %d times for worker %u",
                     atomic_load(&H.started[i]), i);
        cr_assert_eq(atomic_load(&H.stopped[i]), 0, "stop hook before shutdown");
        char want[32];
        snprintf(want, sizeof want, "%s-w%u", expect_prefix, i);
        cr_assert_str_eq(H.name[i], want, "worker %u is named \"%s\", want \"%s\"", i, H.name[i],
                         want);
    }
    /* Distinct threads. */
    for (unsigned i = 0; i < workers; i++)
        for (unsigned j = i + 1; j < workers; j++)
            cr_assert_neq(H.tid[i], H.tid[j]);
    cr_assert_eq(wt_finish(rt), 0);
    for (unsigned i = 0; i < workers; i++) {
        cr_assert_eq(atomic_load(&H.started[i]), 1);
        cr_assert_eq(atomic_load(&H.stopped[i]), 1, "stop hook ran %d times for worker %u",
                     atomic_load(&H.stopped[i]), i);
    }
    for (unsigned i = workers; i < HOOK_MAX; i++)
        cr_assert_eq(atomic_load(&H.started[i]), 0, "hook index %u out of range", i);
    cr_assert_eq(atomic_load(&H.bad), 0);
    cr_assert_eq(atomic_load(&H.tid_mismatch), 0, "stop hook on another thread");
}

Test(config, hooks_and_names, .timeout = 30)
{
    run_hooks(1, "weft", "weft");
    run_hooks(4, "pool", "pool");
    /* At most 10 characters of the prefix are used. */
    run_hooks(2, "abcdefghijklmnop", "abcdefghij");
    /* An empty or NULL prefix falls back to the default. */
    run_hooks(2, "", "weft");
    run_hooks(2, NULL, "weft");
}

/* Threads of this process whose name is `name` (/proc/self/task). */
static int threads_named(const char *name)
{
    DIR *dir = opendir("/proc/self/task");
    cr_assert_not_null(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = {0};
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* the thread just exited */
        if (fgets(comm, sizeof comm, f)) {
            comm[strcspn(comm, "\n")] = 0;
            n += strcmp(comm, name) == 0;
        }
        fclose(f);
    }
    closedir(dir);
    return n;
}

/* Threads name themselves as they start: wait (bounded) for n of them. */
static bool named_ge(const char *name, int n)
{
    int64_t end = weft_now() + WAIT_NS;
    while (threads_named(name) < n && weft_now() < end)
        wt_sleep_ns(WT_MS);
    return threads_named(name) >= n;
}

Test(config, driver_choice, .timeout = 30)
{
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = 2;
    weft_runtime_t *rt = (weft_runtime_t *)1;
    cfg.driver = 2;
    cr_expect_eq(weft_runtime_new(&cfg, &rt), -EINVAL);
    cr_expect_null(rt);
    cfg.driver = -1;
    cr_expect_eq(weft_runtime_new(&cfg, &rt), -EINVAL);
    /* A thread of its own: "<prefix>-io" runs while the runtime lives. */
    cfg.driver = WEFT_DRIVER_THREAD;
    cfg.thread_name = "drvt";
    cr_assert_eq(weft_runtime_new(&cfg, &rt), 0);
    cr_expect(named_ge("drvt-io", 1));
    cr_expect_eq(threads_named("drvt-io"), 1);
    cr_assert_eq(wt_finish(rt), 0);
    cr_expect_eq(threads_named("drvt-io"), 0, "joined at shutdown");
    /* The default: the workers poll, no extra thread. */
    cfg.driver = WEFT_DRIVER_WORKERS;
    cfg.thread_name = "drvw";
    cr_assert_eq(weft_runtime_new(&cfg, &rt), 0);
    cr_expect(named_ge("drvw-w0", 1) && named_ge("drvw-w1", 1));
    cr_expect_eq(threads_named("drvw-io"), 0);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(config, help_delay_range, .timeout = 30)
{
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = 1;
    weft_runtime_t *rt = (weft_runtime_t *)1;
    int64_t bad[] = {-2, INT64_MIN, WEFT_HELP_DELAY_MAX_NS + 1, INT64_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.help_delay_ns = bad[i];
        cr_expect_eq(weft_runtime_new(&cfg, &rt), -EINVAL, "help_delay_ns %lld", (long long)bad[i]);
        cr_expect_null(rt);
    }
    int64_t good[] = {WEFT_HELP_AT_ONCE, 0, 1, WEFT_HELP_DELAY_MAX_NS};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cfg.help_delay_ns = good[i];
        cr_assert_eq(weft_runtime_new(&cfg, &rt), 0, "help_delay_ns %lld", (long long)good[i]);
        cr_assert_eq(wt_finish(rt), 0);
    }
}

/* Which CPUs each worker may run on, as its on_thread_start hook saw. */
#define PIN_WORKERS 3
typedef struct pin_seen {
    _Atomic int started;
    int ncpu[PIN_WORKERS];  /* CPUs in the worker's mask */
    int first[PIN_WORKERS]; /* the lowest of them */
} pin_seen_t;

static void pin_hook(unsigned index, void *arg)
{
    pin_seen_t *p = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (index < PIN_WORKERS && pthread_getaffinity_np(pthread_self(), sizeof set, &set) == 0) {
        p->ncpu[index] = CPU_COUNT(&set);
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &set)) {
                p->first[index] = c;
                break;
            }
    }
    atomic_fetch_add(&p->started, 1);
}

/* The process's CPUs, ascending (at most CPU_SETSIZE). */
static int allowed_cpus(unsigned *out)
{
    cpu_set_t set;
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            out[n++] = (unsigned)c;
    return n;
}

static void check_pins(weft_config_t *cfg, const unsigned *want, unsigned nwant)
{
    static pin_seen_t seen;
    memset(&seen, 0, sizeof seen);
    cfg->workers = PIN_WORKERS;
    cfg->on_thread_start = pin_hook;
    cfg->hook_arg = &seen;
    weft_runtime_t *rt;
    cr_assert_eq(weft_runtime_new(cfg, &rt), 0);
    cr_assert(wt_wait_int_ge(&seen.started, PIN_WORKERS, WAIT_NS));
    for (unsigned i = 0; i < PIN_WORKERS; i++) {
        cr_expect_eq(seen.ncpu[i], 1, "worker %u is bound to one CPU", i);
        cr_expect_eq(seen.first[i], (int)want[i % nwant], "worker %u on CPU %u", i,
                     want[i % nwant]);
    }
    cr_assert_eq(wt_finish(rt), 0);
}

Test(config, pin_workers_binds_worker_i_to_the_ith_cpu, .timeout = 30)
{
    static unsigned cpus[CPU_SETSIZE];
    int n = allowed_cpus(cpus);
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.pin_workers = 1;
    check_pins(&cfg, cpus, (unsigned)n); /* 3 workers: wraps on 2 CPUs */
    /* An explicit list: every worker on the last allowed CPU. */
    weft_config_init(&cfg);
    unsigned last = cpus[n - 1];
    cfg.cpus = &last;
    cfg.ncpus = 1;
    check_pins(&cfg, &last, 1);
}

Test(config, bad_cpu_bindings, .timeout = 30)
{
    static unsigned cpus[CPU_SETSIZE];
    int n = allowed_cpus(cpus);
    unsigned outside = CPU_SETSIZE + 5;
    for (unsigned c = 0; c < CPU_SETSIZE; c++) {
        bool in = false;
        for (int i = 0; i < n; i++)
            in = in || cpus[i] == c;
        if (!in) {
            outside = c;
            break;
        }
    }
    struct {
        int pin;
        const unsigned *cpus;
        unsigned ncpus;
    } bad[] = {{2, NULL, 0}, {-1, NULL, 0}, {1, cpus, 1},
               {0, NULL, 1}, {0, cpus, 0},  {0, &outside, 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        weft_config_t cfg;
        weft_config_init(&cfg);
        cfg.workers = 1;
        cfg.pin_workers = bad[i].pin;
        cfg.cpus = bad[i].cpus;
        cfg.ncpus = bad[i].ncpus;
        weft_runtime_t *rt = (weft_runtime_t *)1;
        cr_expect_eq(weft_runtime_new(&cfg, &rt), -EINVAL, "case %zu", i);
        cr_expect_null(rt);
    }
}

/* The name seen from inside a task, and weft_runtime_current there. */
typedef struct where {
    wt_counts_t *c;
    weft_runtime_t *_Atomic *rt_seen;
    char *name;
} where_t;

static weft_poll_t where_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    where_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    atomic_store(s->rt_seen, weft_runtime_current());
    pthread_getname_np(pthread_self(), s->name, 16);
    *out = 0;
    return WEFT_READY;
}

static const weft_future_vtable_t where_vt = {where_poll, wt_counted_drop, "where"};

Test(config, runtime_current_and_name_in_task, .timeout = 30)
{
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = 1;
    cfg.thread_name = "tsk";
    weft_runtime_t *rt = wt_runtime_cfg(&cfg);
    cr_assert_null(weft_runtime_current(), "not a runtime thread");
    wt_counts_t c;
    wt_counts_init(&c);
    weft_runtime_t *_Atomic seen = NULL;
    char name[16] = {0};
    where_t st = {&c, &seen, name};
    cr_assert_eq(weft_runtime_run(rt, &where_vt, &st, sizeof st, NULL), 0);
    cr_assert_eq(atomic_load(&seen), rt);
    cr_assert_str_eq(name, "tsk-w0");
    cr_assert_eq(wt_finish(rt), 0);
}

Test(config, two_runtimes_side_by_side, .timeout = 30)
{
    weft_runtime_t *a = wt_runtime(1), *b = wt_runtime(2);
    wt_counts_t c;
    wt_counts_init(&c);
    weft_runtime_t *_Atomic seen = NULL;
    char name[16];
    where_t st = {&c, &seen, name};
    cr_assert_eq(weft_runtime_run(b, &where_vt, &st, sizeof st, NULL), 0);
    cr_assert_eq(atomic_load(&seen), b);
    cr_assert_eq(weft_runtime_run(a, &where_vt, &st, sizeof st, NULL), 0);
    cr_assert_eq(atomic_load(&seen), a);
    cr_assert_eq(wt_finish(a), 0);
    cr_assert_eq(wt_finish(b), 0);
}

/* ---- strerror ------------------------------------------------------------------------ */

Test(config, strerror_codes, .timeout = 10)
{
    /* weft's own meanings, then errors the TCP calls pass on from the system */
    const int codes[] = {0,         -EINVAL,       -ENOMEM,       -ECANCELED,  -ETIMEDOUT,
                         -EPIPE,    -EAGAIN,       -ESHUTDOWN,    -EDEADLK,    -EBUSY,
                         -EPERM,    -ECONNREFUSED, -ECONNRESET,   -EADDRINUSE, -EBADF,
                         -ENOTCONN, -EAFNOSUPPORT, -EHOSTUNREACH, -EMFILE};
    const size_t n = sizeof codes / sizeof codes[0];
    const char *unknown = weft_strerror(-99999);
    cr_assert_not_null(unknown);
    cr_assert_str_eq(unknown, "unknown error");
    cr_assert_not_null(weft_strerror(1));
    cr_assert_not_null(weft_strerror(INT32_MIN));
    for (size_t i = 0; i < n; i++) {
        const char *s = weft_strerror(codes[i]);
        cr_assert_not_null(s, "code %d", codes[i]);
        cr_assert_gt(strlen(s), 0);
        cr_assert_str_neq(s, unknown, "code %d has no text", codes[i]);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(s, weft_strerror(codes[j]), "codes %d and %d share \"%s\"", codes[i],
                              codes[j], s);
    }
}

Test(config, now_is_monotonic, .timeout = 10)
{
    int64_t prev = weft_now();
    cr_assert_gt(prev, 0);
    for (int i = 0; i < 100000; i++) {
        int64_t t = weft_now();
        cr_assert_geq(t, prev);
        prev = t;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t mono = (int64_t)ts.tv_sec * WT_SEC + ts.tv_nsec;
    cr_assert_geq(mono, prev, "weft_now is CLOCK_MONOTONIC");
}
