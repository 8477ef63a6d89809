/*
 * task/waker.c - the waker helpers and the atomic waker slot.
 *
 * The slot is tested with a counting thread waker (no runtime needed) for
 * its register / wake / take semantics, then under contention: 4 producer
 * threads make a condition true and wake while a consumer re-registers in a
 * loop, with a deterministic lost-wake check, once with plain threads and
 * once with a real task as the consumer.
 */
#include <criterion/criterion.h>

#include "common/wt.h"

#define WAIT_NS (10 * WT_SEC)

/* ---- waker helpers ----------------------------------------------------------- */

Test(waker, empty_waker_is_inert, .timeout = 10)
{
    weft_waker_t e = WEFT_WAKER_NONE, d = {(void *)1, (void *)1};
    cr_assert_eq(weft_waker_clone(&e, &d), 0);
    cr_assert_null(d.vtable, "a clone of the empty waker is empty");
    cr_assert_eq(weft_waker_wake(&e), 0);
    cr_assert_eq(weft_waker_wake_by_ref(&e), 0);
    cr_assert_eq(weft_waker_drop(&e), 0);
    cr_assert_null(weft_cx_waker(NULL));
}

Test(waker, helpers_dispatch_and_consume, .timeout = 10)
{
    wt_thread_waker_t t;
    memset(&t, 0, sizeof t);
    weft_waker_t w = wt_thread_waker(&t), c1, c2;
    cr_assert_eq(weft_waker_clone(&w, &c1), 0);
    cr_assert_eq(weft_waker_clone(&w, &c2), 0);
    cr_assert_eq(atomic_load(&t.clones), 2);
    cr_assert(weft_waker_will_wake(&w, &c1));
    cr_assert_eq(weft_waker_wake_by_ref(&c1), 0);
    cr_assert_eq(atomic_load(&t.wake_refs), 1);
    cr_assert_not_null(c1.vtable, "wake_by_ref does not consume");
    cr_assert_eq(weft_waker_wake(&c1), 0);
    cr_assert_eq(atomic_load(&t.wakes), 1);
    cr_assert_null(c1.vtable, "wake consumes");
    cr_assert_eq(weft_waker_wake(&c1), 0); /* consumed: now empty, a no-op */
    cr_assert_eq(atomic_load(&t.wakes), 1);
    cr_assert_eq(weft_waker_drop(&c2), 0);
    cr_assert_null(c2.vtable, "drop consumes");
    cr_assert_eq(weft_waker_drop(&c2), 0);
    cr_assert_eq(atomic_load(&t.drops), 1);
    cr_assert_eq(wt_tw_live(&t), 0);
}

Test(waker, will_wake, .timeout = 10)
{
    wt_thread_waker_t t1, t2;
    memset(&t1, 0, sizeof t1);
    memset(&t2, 0, sizeof t2);
    weft_waker_t a = wt_thread_waker(&t1), b = wt_thread_waker(&t1), c = wt_thread_waker(&t2);
    weft_waker_t e = WEFT_WAKER_NONE;
    cr_assert(weft_waker_will_wake(&a, &b));
    cr_assert_not(weft_waker_will_wake(&a, &c));
    cr_assert_not(weft_waker_will_wake(&a, &e));
    cr_assert_not(weft_waker_will_wake(NULL, &a));
    cr_assert_not(weft_waker_will_wake(&a, NULL));
}

/* ---- atomic waker: single-threaded semantics ------------------------------------ */

Test(atomic_waker, register_then_wake, .timeout = 10)
{
    wt_thread_waker_t t;
    memset(&t, 0, sizeof t);
    weft_waker_t w = wt_thread_waker(&t);
    weft_atomic_waker_t aw = WEFT_ATOMIC_WAKER_INIT;
    cr_assert_eq(weft_atomic_waker_register(&aw, &w), 0);
    cr_assert_eq(atomic_load(&t.clones), 1, "register stores a clone");
    cr_assert_eq(atomic_load(&t.woken), 0);
    cr_assert_eq(weft_atomic_waker_wake(&aw), 0);
    cr_assert_eq(atomic_load(&t.woken), 1);
    cr_assert_eq(atomic_load(&t.wakes), 1, "wake consumes the stored clone");
    /* The slot is empty now: a second wake does nothing. */
    cr_assert_eq(weft_atomic_waker_wake(&aw), 0);
    cr_assert_eq(atomic_load(&t.wakes) + atomic_load(&t.wake_refs), 1);
    weft_atomic_waker_destroy(&aw);
    cr_assert_eq(wt_tw_live(&t), 0);
}

Test(atomic_waker, register_replaces_older, .timeout = 10)
{
    wt_thread_waker_t t1, t2;
    memset(&t1, 0, sizeof t1);
    memset(&t2, 0, sizeof t2);
    weft_waker_t w1 = wt_thread_waker(&t1), w2 = wt_thread_waker(&t2);
    weft_atomic_waker_t aw;
    weft_atomic_waker_init(&aw);
    cr_assert_eq(weft_atomic_waker_register(&aw, &w1), 0);
    cr_assert_eq(weft_atomic_waker_register(&aw, &w2), 0);
    cr_assert_eq(atomic_load(&t1.drops), 1, "the older waker is dropped");
    cr_assert_eq(atomic_load(&t1.woken), 0, "... and not woken");
    cr_assert_eq(wt_tw_live(&t1), 0);
    cr_assert_eq(weft_atomic_waker_wake(&aw), 0);
    cr_assert_eq(atomic_load(&t2.woken), 1);
    cr_assert_eq(atomic_load(&t1.woken), 0);
    /* Re-registering the same waker also replaces the stored clone. */
    cr_assert_eq(weft_atomic_waker_register(&aw, &w1), 0);
    cr_assert_eq(weft_atomic_waker_register(&aw, &w1), 0);
    cr_assert_eq(wt_tw_live(&t1), 1);
    weft_atomic_waker_destroy(&aw);
    cr_assert_eq(wt_tw_live(&t1), 0);
    cr_assert_eq(wt_tw_live(&t2), 0);
    cr_assert_eq(atomic_load(&t1.woken), 0, "destroy drops without waking");
}

Test(atomic_waker, wake_with_nothing_registered, .timeout = 10)
{
    wt_thread_waker_t t;
    memset(&t, 0, sizeof t);
    weft_waker_t w = wt_thread_waker(&t);
    weft_atomic_waker_t aw = WEFT_ATOMIC_WAKER_INIT;
    cr_assert_eq(weft_atomic_waker_wake(&aw), 0);
    cr_assert_eq(weft_atomic_waker_wake(&aw), 0);
    /* A wake that found no waker is not remembered. */
    cr_assert_eq(weft_atomic_waker_register(&aw, &w), 0);
    cr_assert_eq(atomic_load(&t.woken), 0);
    weft_atomic_waker_destroy(&aw);
    cr_assert_eq(wt_tw_live(&t), 0);
}

Test(atomic_waker, take, .timeout = 10)
{
    wt_thread_waker_t t;
    memset(&t, 0, sizeof t);
    weft_waker_t w = wt_thread_waker(&t), out = {(void *)1, (void *)1};
    weft_atomic_waker_t aw = WEFT_ATOMIC_WAKER_INIT;
    cr_assert_eq(weft_atomic_waker_take(&aw, &out), 0);
    cr_assert_null(out.vtable, "take from an empty slot gives the empty waker");
    cr_assert_eq(weft_atomic_waker_register(&aw, &w), 0);
    cr_assert_eq(weft_atomic_waker_take(&aw, &out), 0);
    cr_assert(weft_waker_will_wake(&out, &w));
    cr_assert_eq(atomic_load(&t.woken), 0, "take does not wake");
    cr_assert_eq(weft_atomic_waker_wake(&aw), 0);
    cr_assert_eq(atomic_load(&t.woken), 0, "the slot is empty after take");
    cr_assert_eq(weft_waker_wake(&out), 0);
    cr_assert_eq(atomic_load(&t.woken), 1);
    weft_atomic_waker_destroy(&aw);
    cr_assert_eq(wt_tw_live(&t), 0);
}

/* A registration that finds the slot held by another registrant (two
 * consumers: a slot reused under a stale io handle does this) cannot store
 * its waker, so it wakes it: the task polls again instead of sleeping. The
 * held state is set by hand, as a second registrant would leave it. */
Test(atomic_waker, busy_slot_wakes_the_registrant, .timeout = 10)
{
    wt_thread_waker_t t;
    memset(&t, 0, sizeof t);
    weft_waker_t w = wt_thread_waker(&t);
    weft_atomic_waker_t aw = WEFT_ATOMIC_WAKER_INIT;
    atomic_store(&aw.state_, 1); /* REGISTERING */
    cr_assert_eq(weft_atomic_waker_register(&aw, &w), 0);
    cr_assert_eq(atomic_load(&t.wake_refs), 1,
                 "a waker the slot could not take is woken, not dropped");
    cr_assert_null(aw.waker_.vtable, "nothing was stored");
    atomic_store(&aw.state_, 3); /* REGISTERING | WAKING */
    cr_assert_eq(weft_atomic_waker_register(&aw, &w), 0);
    cr_assert_eq(atomic_load(&t.wake_refs), 2);
    atomic_store(&aw.state_, 0);
    weft_atomic_waker_destroy(&aw);
    cr_assert_eq(wt_tw_live(&t), 0);
}

Test(atomic_waker, destroy_drops_stored, .timeout = 10)
{
    wt_thread_waker_t t;
    memset(&t, 0, sizeof t);
    weft_waker_t w = wt_thread_waker(&t);
    weft_atomic_waker_t aw = WEFT_ATOMIC_WAKER_INIT;
    weft_atomic_waker_destroy(&aw); /* empty: nothing happens */
    cr_assert_eq(weft_atomic_waker_register(&aw, &w), 0);
    weft_atomic_waker_destroy(&aw);
    cr_assert_eq(atomic_load(&t.drops), 1);
    cr_assert_eq(atomic_load(&t.woken), 0);
    weft_atomic_waker_destroy(NULL);
}

/* ---- atomic waker: concurrent producers vs a re-registering consumer ---------- */

#define PRODUCERS 4
#if WT_TSAN || WT_ASAN
#define PER_PRODUCER 50000
#else
#define PER_PRODUCER 200000
#endif

typedef struct race {
    weft_atomic_waker_t aw;
    _Atomic long produced;
    _Atomic int done; /* producers that made their last wake */
    _Atomic int go;
} race_t;

static void *producer(void *arg)
{
    race_t *r = arg;
    while (!atomic_load(&r->go))
        sched_yield();
    for (int i = 0; i < PER_PRODUCER; i++) {
        /* Producer protocol: make the condition true, then wake. */
        atomic_fetch_add(&r->produced, 1);
        weft_atomic_waker_wake(&r->aw);
        if ((i & 1023) == 0)
            sched_yield();
    }
    atomic_fetch_add(&r->done, 1);
    return NULL;
}

Test(atomic_waker, concurrent_wakes_no_lost_wakeup, .timeout = 60)
{
    static race_t r;
    weft_atomic_waker_init(&r.aw);
    atomic_store(&r.produced, 0);
    atomic_store(&r.done, 0);
    atomic_store(&r.go, 0);
    wt_thread_waker_t t;
    memset(&t, 0, sizeof t);
    weft_waker_t w = wt_thread_waker(&t);
    pthread_t th[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, producer, &r), 0);
    atomic_store(&r.go, 1);
    const long total = (long)PRODUCERS * PER_PRODUCER;
    long seen = 0, rounds = 0, blocked = 0;
    int lost = 0;
    int64_t watchdog = weft_now() + 40 * WT_SEC;
    while (seen < total && !lost) {
        /* Consumer protocol: clear, register, then check the condition. */
        atomic_store(&t.woken, 0);
        weft_atomic_waker_register(&r.aw, &w);
        long p = atomic_load(&r.produced);
        if (p != seen) {
            seen = p;
            rounds++;
            continue;
        }
        /* Nothing new: wait for a wake. Every increment after our check is
         * followed by a wake that must reach the waker registered before
         * the check (or trigger a wake during registration). */
        blocked++;
        while (!atomic_load(&t.woken)) {
            if (atomic_load(&r.done) == PRODUCERS && !atomic_load(&t.woken)) {
                /* Every producer made its last wake. If anything was
                 * produced after our check, a wake was lost. */
                if (atomic_load(&r.produced) != p)
                    lost = 1;
                break;
            }
            cr_assert_lt(weft_now(), watchdog, "consumer stuck (seen %ld of %ld)", seen, total);
            sched_yield();
        }
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_not(lost, "lost wake-up: produced %ld, consumer saw %ld and was never woken",
                  atomic_load(&r.produced), seen);
    cr_assert_eq(seen, total);
    weft_atomic_waker_destroy(&r.aw);
    cr_assert_eq(wt_tw_live(&t), 0, "a registered clone leaked or was dropped twice");
    cr_log_info("atomic_waker race: %ld rounds, %ld waits, %d wakes, %d wake_by_ref", rounds,
                blocked, atomic_load(&t.wakes), atomic_load(&t.wake_refs));
}

/* The same race with a task as the consumer: it re-registers on every poll
 * and completes once it has seen everything; a lost wake leaves it pending
 * forever and the join times out. */
typedef struct consumer_task {
    wt_counts_t *c;
    race_t *r;
    long total;
} consumer_task_t;

static weft_poll_t consumer_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    consumer_task_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    weft_atomic_waker_register(&s->r->aw, weft_cx_waker(cx));
    long p = atomic_load(&s->r->produced);
    if (p == s->total) {
        *out = p;
        return WEFT_READY;
    }
    return WEFT_PENDING;
}

static const weft_future_vtable_t consumer_vt = {consumer_poll, wt_counted_drop, "consumer"};

Test(atomic_waker, concurrent_wakes_task_consumer, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        weft_runtime_t *rt = wt_runtime(workers);
        static race_t r;
        weft_atomic_waker_init(&r.aw);
        atomic_store(&r.produced, 0);
        atomic_store(&r.done, 0);
        atomic_store(&r.go, 0);
        wt_counts_t c;
        wt_counts_init(&c);
        consumer_task_t st = {&c, &r, (long)PRODUCERS * PER_PRODUCER};
        weft_task_t *h;
        cr_assert_eq(weft_spawn(rt, &consumer_vt, &st, sizeof st, &h), 0);
        cr_assert(wt_wait_int_ge(&c.polls, 1, WAIT_NS));
        pthread_t th[PRODUCERS];
        for (int i = 0; i < PRODUCERS; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, producer, &r), 0);
        atomic_store(&r.go, 1);
        for (int i = 0; i < PRODUCERS; i++)
            pthread_join(th[i], NULL);
        int64_t out = 0;
        int rc = weft_task_join_wait(h, weft_now() + 20 * WT_SEC, &out);
        cr_assert_eq(rc, 0, "lost wake-up: the consumer task never saw the last item (%s)",
                     weft_strerror(rc));
        cr_assert_eq(out, st.total);
        cr_assert_eq(atomic_load(&c.drops), 1);
        weft_atomic_waker_destroy(&r.aw); /* the last registration's clone */
        cr_log_info("task consumer (%u workers): %d polls", workers, atomic_load(&c.polls));
        cr_assert_eq(wt_finish(rt), 0);
    }
}
