/*
 * stress/rescue.c - the inbox's second consumer: with the driver thread, a
 * worker stuck in one long poll has the tasks waiting in its inbox taken
 * by the driver (weft__sched_batch_rescue): pinned ones pushed back, the
 * others sent to the inject queue while the owner may drain the same
 * inbox at any moment.
 *
 * TASKS stackless tasks and COROS pinned coroutines each sleep ROUNDS
 * times for 0-800 us; every SPIN_EVERY-th wake-up busy-runs SPIN_NS in
 * its poll, so workers keep getting stuck while timers deliver to them.
 * Each task counts its runs and checks that no two polls of it overlap.
 * At the end: every task ran exactly ROUNDS times (nothing lost, nothing
 * run twice), every join reports 0, and the runtime frees with no task
 * left. The number of rescued tasks is printed (it depends on timing, so
 * it is not asserted). Exit 0 on success, 1 with a message.
 */
#define STRESS_NAME "stress_rescue"
#include <stdlib.h>

#include "common/stress.h"
#include "common/wt.h"
#include "io/driver.h"
#include "runtime/runtime_internal.h"

#define TASKS 48
#define COROS 16
#define ROUNDS (WT_TSAN ? 20 : 60)
#define SPIN_EVERY 8
#define SPIN_NS (3 * WT_MS)
#define WAIT_NS (120 * WT_SEC)

typedef struct counter {
    _Atomic int runs, in_poll, overlaps;
    unsigned seed;
} counter_t;

static int64_t next_sleep(counter_t *c)
{
    return weft_now() + (int64_t)(rand_r(&c->seed) % 800) * 1000;
}

/* One wake-up: count it, and check that no other poll of this task runs. */
static void on_wake(counter_t *c)
{
    if (atomic_exchange(&c->in_poll, 1) != 0)
        atomic_fetch_add(&c->overlaps, 1);
    int n = atomic_fetch_add(&c->runs, 1) + 1;
    if (n % SPIN_EVERY == 0)
        wt_spin_ns(SPIN_NS);
    atomic_store(&c->in_poll, 0);
}

typedef struct sleeper {
    weft_sleep_t sl;
    counter_t *c;
    int left;
} sleeper_t;

static weft_poll_t sleeper_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    sleeper_t *s = st;
    while (s->left > 0) {
        int64_t v;
        if (weft_sleep_vtable.poll(&s->sl, cx, &v) == WEFT_PENDING)
            return WEFT_PENDING;
        on_wake(s->c);
        s->left--;
        weft_sleep_init(&s->sl, next_sleep(s->c));
    }
    *out = 0;
    return WEFT_READY;
}

static void sleeper_drop(void *st)
{
    sleeper_t *s = st;
    weft_sleep_vtable.drop(&s->sl);
}

static const weft_future_vtable_t sleeper_vt = {sleeper_poll, sleeper_drop, "sleeper"};

static int coro_main(void *arg)
{
    counter_t *c = arg;
    for (int i = 0; i < ROUNDS; i++) {
        int rc = weft_sleep_until(next_sleep(c));
        if (rc != 0)
            return rc;
        on_wake(c);
    }
    return 0;
}

int main(void)
{
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = 2;
    cfg.driver = WEFT_DRIVER_THREAD;
    weft_runtime_t *rt = NULL;
    CHECK(weft_runtime_new(&cfg, &rt) == 0, "runtime");
    static counter_t c[TASKS + COROS];
    weft_task_t *h[TASKS + COROS];
    for (int i = 0; i < TASKS + COROS; i++) {
        c[i].seed = (unsigned)i * 2654435761u + 1;
        if (i < TASKS) {
            sleeper_t s = {.c = &c[i], .left = ROUNDS};
            weft_sleep_init(&s.sl, next_sleep(&c[i]));
            CHECK(weft_spawn(rt, &sleeper_vt, &s, sizeof s, &h[i]) == 0, "spawn");
        } else {
            CHECK(weft_spawn_coro(rt, coro_main, &c[i], NULL, &h[i]) == 0, "spawn coro");
        }
    }
    for (int i = 0; i < TASKS + COROS; i++) {
        int64_t out = -1;
        int rc = weft_task_join_wait(h[i], weft_now() + WAIT_NS, &out);
        CHECK(rc == 0 && out == 0, "task %d: join %d, output %lld", i, rc, (long long)out);
        CHECK(atomic_load(&c[i].runs) == ROUNDS, "task %d ran %d times, not %d", i,
              atomic_load(&c[i].runs), ROUNDS);
        CHECK(atomic_load(&c[i].overlaps) == 0, "task %d: two polls at once", i);
    }
    weft__driver_stats_t st;
    weft__driver_stats(weft__runtime_driver(rt), &st);
    CHECK(weft_runtime_shutdown(rt, weft_now() + WAIT_NS) == 0, "shutdown stragglers");
    CHECK(weft_runtime_free(rt) == 0, "free");
    printf("rescue: %d tasks x %d wake-ups, all counted once; %llu rescued\n", TASKS + COROS,
           ROUNDS, (unsigned long long)st.rescued);
    return 0;
}
