/*
 * held.h - keep a runtime's only worker busy, for Criterion tests that need
 * tasks to queue up behind it (include after <criterion/criterion.h> and
 * common/wt.h; the caller defines WAIT_NS, its watchdog for bounded waits).
 */
#ifndef WEFT_TESTS_HELD_H
#define WEFT_TESTS_HELD_H

#include <pthread.h>
#include <unistd.h>

/* One worker, held by a blocker task until release_worker. */
typedef struct held {
    wt_counts_t c;
    _Atomic int started, release;
    weft_task_t *h;
    int64_t release_at; /* shutdown_past_held_worker */
    pthread_t releaser;
} held_t;

static inline void hold_worker(weft_runtime_t *rt, held_t *b)
{
    wt_counts_init(&b->c);
    atomic_init(&b->started, 0);
    atomic_init(&b->release, 0);
    wt_blocker_t st = {&b->c, &b->started, &b->release};
    cr_assert_eq(weft_spawn(rt, &wt_blocker_vt, &st, sizeof st, &b->h), 0);
    cr_assert(wt_wait_int_ge(&b->started, 1, WAIT_NS), "blocker never ran");
}

static inline void release_worker(held_t *b)
{
    atomic_store(&b->release, 1);
    cr_assert_eq(weft_task_join_wait(b->h, weft_now() + WAIT_NS, NULL), 0);
    cr_assert_eq(atomic_load(&b->c.drops), 1);
}

static inline void *held_releaser(void *arg)
{
    held_t *b = arg;
    while (weft_now() < b->release_at)
        usleep(1000);
    atomic_store(&b->release, 1);
    return NULL;
}

/*
 * Shut rt down past its deadline with every task but the blocker still
 * waiting: hold the only worker, give shutdown a 20 ms deadline, and let
 * a thread release the worker 1 s after it (so the worker cannot get to
 * the others before shutdown has stopped it). Returns shutdown's result
 * (the stragglers, the blocker included); the blocker's handle b->h is
 * still the caller's.
 */
static inline int shutdown_past_held_worker(weft_runtime_t *rt, held_t *b)
{
    hold_worker(rt, b);
    int64_t deadline = weft_now() + 20 * WT_MS;
    b->release_at = deadline + WT_SEC;
    cr_assert_eq(pthread_create(&b->releaser, NULL, held_releaser, b), 0);
    int rc = weft_runtime_shutdown(rt, deadline);
    pthread_join(b->releaser, NULL);
    return rc;
}

#endif /* WEFT_TESTS_HELD_H */
