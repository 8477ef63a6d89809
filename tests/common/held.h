/*
 * held.h - keep a runtime's only worker busy, for Criterion tests that need
 * tasks to queue up behind it (include after <criterion/criterion.h> and
 * common/wt.h; the caller defines WAIT_NS, its watchdog for bounded waits).
 */
#ifndef WEFT_TESTS_HELD_H
#define WEFT_TESTS_HELD_H

/* One worker, held by a blocker task until release_worker. */
typedef struct held {
    wt_counts_t c;
    _Atomic int started, release;
    weft_task_t *h;
} held_t;

static void hold_worker(weft_runtime_t *rt, held_t *b)
{
    wt_counts_init(&b->c);
    atomic_init(&b->started, 0);
    atomic_init(&b->release, 0);
    wt_blocker_t st = {&b->c, &b->started, &b->release};
    cr_assert_eq(weft_spawn(rt, &wt_blocker_vt, &st, sizeof st, &b->h), 0);
    cr_assert(wt_wait_int_ge(&b->started, 1, WAIT_NS), "blocker never ran");
}

static void release_worker(held_t *b)
{
    atomic_store(&b->release, 1);
    cr_assert_eq(weft_task_join_wait(b->h, weft_now() + WAIT_NS, NULL), 0);
    cr_assert_eq(atomic_load(&b->c.drops), 1);
}

#endif /* WEFT_TESTS_HELD_H */
