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
    int64_t release_at; /* release_worker_at */
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

/* Release the worker from another thread once weft_now() reaches `at`:
 * for a shutdown that must pass its deadline with the worker still held
 * (the blocker ends then, and stays a task whose handle the caller owns).
 * release_worker_joined waits for that thread. */
static inline void release_worker_at(held_t *b, int64_t at)
{
    b->release_at = at;
    cr_assert_eq(pthread_create(&b->releaser, NULL, held_releaser, b), 0);
}

static inline void release_worker_joined(held_t *b)
{
    pthread_join(b->releaser, NULL);
}

#endif /* WEFT_TESTS_HELD_H */
