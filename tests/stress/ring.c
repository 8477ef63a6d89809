/*
 * stress/ring.c - single-threaded edge cases and a multi-threaded stress
 * test for the per-worker run queue (src/sched/ring.c).
 *
 * A plain main() program so that it runs under ThreadSanitizer (Criterion
 * cannot). Part 1 checks the ring's semantics one operation at a time,
 * including index wrap-around past UINT32_MAX (the indices are set near it
 * directly, which is test-only knowledge of the layout) and a randomised
 * comparison against a simple FIFO model. Part 2 runs one owner against 1,
 * 2, 3 and 4 thieves: the owner pushes unique items, pops some, overflows
 * full halves into a mutex-protected inject list and refills from it;
 * thieves steal into their own rings (mostly from the owner, sometimes from
 * each other), pop from them and drain the inject list. Every item must be
 * consumed exactly once. Exit status 0 on success, 1 with a message on any
 * failure, including a run past the wall-clock limit.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sched/ring.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* Items per round (one round per thief count 1..4). 4 x 2.5M push calls. */
/* TSan needs no scaling: the full count takes ~12 s under it on 2 cores. */
#ifndef ITEMS_PER_ROUND
#define ITEMS_PER_ROUND 2500000u
#endif
#define MAX_THIEVES 4
#ifndef TASK_SPINS
#define TASK_SPINS 64
#endif
#define TIME_LIMIT_NS (120LL * 1000000000LL)
#define CAP WEFT__RING_CAP
#define HALF (WEFT__RING_CAP / 2)

/* ------------------------------------------------------------------------ */
/* Failure reporting                                                         */

static _Atomic int failed;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&fail_lock);
    if (!atomic_exchange(&failed, 1)) {
        fprintf(stderr, "stress_ring: FAIL: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&fail_lock);
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "stress_ring: FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);           \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* Part 1 items: unique integers cast to pointers (never NULL). */
static void *item_of(uintptr_t i)
{
    return (void *)(i + 1);
}

/* Test-only: place the indices anywhere (e.g. near UINT32_MAX). */
static void set_indices(weft__ring_t *r, uint32_t steal, uint32_t real, uint32_t tail)
{
    atomic_store(&r->head, ((uint64_t)steal << 32) | real);
    atomic_store(&r->tail, tail);
}

static weft__ring_t *ring_new(void)
{
    weft__ring_t *r = aligned_alloc(64, sizeof(*r));

    CHECK(r != NULL);
    weft__ring_init(r);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Part 1: single-threaded edge cases                                        */

static void test_empty(void)
{
    weft__ring_t *a = ring_new(), *b = ring_new();

    CHECK(weft__ring_len(a) == 0);
    CHECK(weft__ring_is_empty(a));
    CHECK(weft__ring_remaining(a) == CAP);
    CHECK(weft__ring_pop(a) == NULL);
    CHECK(weft__ring_steal_into(a, b) == NULL);
    CHECK(weft__ring_len(b) == 0);
    void *out[HALF];
    CHECK(weft__ring_claim_half(a, out) == 0);
    free(a);
    free(b);
}

static void test_full_and_claim(uint32_t base)
{
    weft__ring_t *a = ring_new();
    void *out[HALF];

    set_indices(a, base, base, base);
    for (uintptr_t i = 0; i < CAP; i++) {
        CHECK(weft__ring_push(a, item_of(i)));
        CHECK(weft__ring_len(a) == i + 1);
    }
    CHECK(!weft__ring_push(a, item_of(999)));
    CHECK(weft__ring_remaining(a) == 0);
    CHECK(weft__ring_len(a) == CAP);
    void *batch[3] = {item_of(1000), item_of(1001), item_of(1002)};
    CHECK(weft__ring_push_batch(a, batch, 3) == 0);

    /* claim_half takes exactly the 128 oldest, in order. */
    CHECK(weft__ring_claim_half(a, out) == HALF);
    for (uintptr_t i = 0; i < HALF; i++)
        CHECK(out[i] == item_of(i));
    CHECK(weft__ring_len(a) == HALF);
    CHECK(weft__ring_remaining(a) == HALF);
    /* Not full any more: a second claim refuses. */
    CHECK(weft__ring_claim_half(a, out) == 0);

    /* The rest pops FIFO. */
    for (uintptr_t i = HALF; i < CAP; i++)
        CHECK(weft__ring_pop(a) == item_of(i));
    CHECK(weft__ring_pop(a) == NULL);
    CHECK(weft__ring_len(a) == 0);
    CHECK(weft__ring_remaining(a) == CAP);
    free(a);
}

static void test_push_batch(uint32_t base)
{
    weft__ring_t *a = ring_new();
    void *items[100];

    set_indices(a, base, base, base);
    for (uintptr_t i = 0; i < 200; i++)
        CHECK(weft__ring_push(a, item_of(i)));
    for (uintptr_t i = 0; i < 100; i++)
        items[i] = item_of(200 + i);
    /* Partial fit: a prefix of 56 goes in. */
    CHECK(weft__ring_push_batch(a, items, 100) == 56);
    CHECK(weft__ring_len(a) == CAP);
    CHECK(weft__ring_push_batch(a, items + 56, 44) == 0);
    for (uintptr_t i = 0; i < CAP; i++)
        CHECK(weft__ring_pop(a) == item_of(i));
    CHECK(weft__ring_pop(a) == NULL);
    CHECK(weft__ring_push_batch(a, items, 0) == 0);
    CHECK(weft__ring_push_batch(a, items, 100) == 100);
    for (uintptr_t i = 0; i < 100; i++)
        CHECK(weft__ring_pop(a) == item_of(200 + i));
    free(a);
}

static void test_steal_basic(uint32_t sbase, uint32_t dbase)
{
    weft__ring_t *src = ring_new(), *dst = ring_new();

    set_indices(src, sbase, sbase, sbase);
    set_indices(dst, dbase, dbase, dbase);

    /* One item: returned, nothing left in dst. */
    CHECK(weft__ring_push(src, item_of(7)));
    CHECK(weft__ring_steal_into(src, dst) == item_of(7));
    CHECK(weft__ring_len(src) == 0 && weft__ring_len(dst) == 0);
    CHECK(weft__ring_remaining(src) == CAP);

    /* Five items: n = 3; the third is returned, the first two go to dst. */
    for (uintptr_t i = 1; i <= 5; i++)
        CHECK(weft__ring_push(src, item_of(i)));
    CHECK(weft__ring_steal_into(src, dst) == item_of(3));
    CHECK(weft__ring_len(dst) == 2);
    CHECK(weft__ring_len(src) == 2);
    CHECK(weft__ring_remaining(src) == CAP - 2);
    CHECK(weft__ring_pop(dst) == item_of(1));
    CHECK(weft__ring_pop(dst) == item_of(2));
    CHECK(weft__ring_pop(dst) == NULL);
    CHECK(weft__ring_pop(src) == item_of(4));
    CHECK(weft__ring_pop(src) == item_of(5));

    /* Full source: 128 taken, 127 land in dst in order. */
    for (uintptr_t i = 0; i < CAP; i++)
        CHECK(weft__ring_push(src, item_of(i)));
    CHECK(weft__ring_steal_into(src, dst) == item_of(HALF - 1));
    CHECK(weft__ring_len(dst) == HALF - 1);
    CHECK(weft__ring_len(src) == HALF);
    for (uintptr_t i = 0; i < HALF - 1; i++)
        CHECK(weft__ring_pop(dst) == item_of(i));
    for (uintptr_t i = HALF; i < CAP; i++)
        CHECK(weft__ring_pop(src) == item_of(i));
    free(src);
    free(dst);
}

static void test_steal_dst_limit(void)
{
    weft__ring_t *src = ring_new(), *dst = ring_new();

    for (uintptr_t i = 0; i < CAP; i++)
        CHECK(weft__ring_push(src, item_of(i)));
    /* dst holds 129 (more than half full): refuse, src untouched. */
    for (uintptr_t i = 0; i < HALF + 1; i++)
        CHECK(weft__ring_push(dst, item_of(1000 + i)));
    CHECK(weft__ring_steal_into(src, dst) == NULL);
    CHECK(weft__ring_len(src) == CAP);
    CHECK(weft__ring_len(dst) == HALF + 1);
    /* dst holds exactly 128 (half): a full half (128, 127 kept) still fits. */
    CHECK(weft__ring_pop(dst) == item_of(1000));
    CHECK(weft__ring_steal_into(src, dst) == item_of(HALF - 1));
    CHECK(weft__ring_len(dst) == CAP - 1);
    CHECK(weft__ring_len(src) == HALF);
    for (uintptr_t i = 1; i < HALF + 1; i++)
        CHECK(weft__ring_pop(dst) == item_of(1000 + i));
    for (uintptr_t i = 0; i < HALF - 1; i++)
        CHECK(weft__ring_pop(dst) == item_of(i));
    CHECK(weft__ring_pop(dst) == NULL);
    free(src);
    free(dst);
}

/*
 * A steal "in progress" (steal != real), set up by hand: no second steal,
 * no claim_half, push limited by the steal head, pop moves real only.
 */
static void test_steal_in_progress(uint32_t base)
{
    weft__ring_t *src = ring_new(), *dst = ring_new();
    void *out[HALF];

    set_indices(src, base, base, base);
    for (uintptr_t i = 0; i < CAP; i++)
        CHECK(weft__ring_push(src, item_of(i)));
    set_indices(src, base, base + 3, base + CAP); /* a thief holds 0..2 */
    CHECK(weft__ring_len(src) == CAP - 3);
    CHECK(weft__ring_remaining(src) == 0);
    CHECK(!weft__ring_push(src, item_of(999)));
    CHECK(weft__ring_claim_half(src, out) == 0);
    CHECK(weft__ring_steal_into(src, dst) == NULL);
    CHECK(weft__ring_pop(src) == item_of(3));
    uint64_t h = atomic_load(&src->head);
    CHECK((uint32_t)(h >> 32) == base && (uint32_t)h == base + 4);
    /* Slots base..base+3 are not free until the steal head passes them. */
    void *more[8] = {item_of(900), item_of(901), item_of(902), item_of(903),
                     item_of(904), item_of(905), item_of(906), item_of(907)};
    CHECK(!weft__ring_push(src, item_of(999)));
    CHECK(weft__ring_push_batch(src, more, 8) == 0);
    CHECK(weft__ring_remaining(src) == 0);
    /* The thief finishes (steal = real): room for 4. */
    set_indices(src, base + 4, base + 4, base + CAP);
    CHECK(weft__ring_remaining(src) == 4);
    CHECK(weft__ring_push(src, item_of(CAP)));
    CHECK(weft__ring_push_batch(src, more, 8) == 3);
    set_indices(src, base + 4, base + 4, base + CAP);
    for (uintptr_t i = 0; i < 4; i++)
        CHECK(weft__ring_push(src, item_of(CAP + i)));
    CHECK(!weft__ring_push(src, item_of(999)));
    for (uintptr_t i = 4; i < CAP + 4; i++)
        CHECK(weft__ring_pop(src) == item_of(i));
    free(src);
    free(dst);
}

/* A FIFO model of one ring. */
typedef struct model {
    uintptr_t buf[CAP];
    unsigned head, len;
} model_t;

static void model_push(model_t *m, uintptr_t v)
{
    CHECK(m->len < CAP);
    m->buf[(m->head + m->len++) % CAP] = v;
}

static uintptr_t model_pop(model_t *m)
{
    uintptr_t v;

    CHECK(m->len > 0);
    v = m->buf[m->head];
    m->head = (m->head + 1) % CAP;
    m->len--;
    return v;
}

/*
 * Random single-threaded operations on two rings whose indices start near
 * UINT32_MAX, each result compared with the model. Every operation type
 * runs across the wrap many times.
 */
static void test_model(uint32_t abase, uint32_t bbase, uint64_t seed, unsigned ops)
{
    weft__ring_t *r[2] = {ring_new(), ring_new()};
    model_t m[2];
    uintptr_t next = 0;
    void *out[HALF];
    void *batch[CAP];

    memset(m, 0, sizeof(m));
    set_indices(r[0], abase, abase, abase);
    set_indices(r[1], bbase, bbase, bbase);
    for (unsigned op = 0; op < ops; op++) {
        unsigned w = xorshift(&seed) & 1;
        unsigned kind = xorshift(&seed) % 100;
        weft__ring_t *a = r[w], *b = r[!w];
        model_t *ma = &m[w], *mb = &m[!w];

        if (kind < 40) { /* push */
            bool ok = weft__ring_push(a, item_of(next));
            CHECK(ok == (ma->len < CAP));
            if (ok)
                model_push(ma, next);
            next++;
        } else if (kind < 70) { /* pop */
            void *p = weft__ring_pop(a);
            if (ma->len == 0)
                CHECK(p == NULL);
            else
                CHECK(p == item_of(model_pop(ma)));
        } else if (kind < 80) { /* push_batch */
            unsigned n = xorshift(&seed) % (CAP + 1);
            unsigned fit = CAP - ma->len < n ? CAP - ma->len : n;
            for (unsigned i = 0; i < n; i++)
                batch[i] = item_of(next + i);
            CHECK(weft__ring_push_batch(a, batch, n) == fit);
            for (unsigned i = 0; i < fit; i++)
                model_push(ma, next + i);
            next += n;
        } else if (kind < 90) { /* claim_half */
            unsigned got = weft__ring_claim_half(a, out);
            if (ma->len == CAP) {
                CHECK(got == HALF);
                for (unsigned i = 0; i < HALF; i++)
                    CHECK(out[i] == item_of(model_pop(ma)));
            } else {
                CHECK(got == 0);
            }
        } else { /* steal from b into a */
            void *p = weft__ring_steal_into(b, a);
            if (mb->len == 0 || ma->len > HALF) {
                CHECK(p == NULL);
            } else {
                unsigned n = mb->len - mb->len / 2;
                for (unsigned i = 0; i + 1 < n; i++)
                    model_push(ma, model_pop(mb));
                CHECK(p == item_of(model_pop(mb)));
            }
        }
        CHECK(weft__ring_len(a) == ma->len);
        CHECK(weft__ring_remaining(a) == CAP - ma->len);
        CHECK(weft__ring_len(b) == mb->len);
    }
    free(r[0]);
    free(r[1]);
}

static void run_edge_tests(void)
{
    static const uint32_t bases[] = {0,
                                     UINT32_MAX,
                                     UINT32_MAX - 1,
                                     UINT32_MAX - 5,
                                     UINT32_MAX - 127,
                                     UINT32_MAX - 128,
                                     UINT32_MAX - 200,
                                     UINT32_MAX - 255,
                                     UINT32_MAX - 256,
                                     UINT32_MAX - 300,
                                     (uint32_t)INT32_MAX - 10};
    const unsigned nb = sizeof(bases) / sizeof(bases[0]);

    test_empty();
    test_steal_dst_limit();
    for (unsigned i = 0; i < nb; i++) {
        test_full_and_claim(bases[i]);
        test_push_batch(bases[i]);
        test_steal_in_progress(bases[i]);
        for (unsigned j = 0; j < nb; j++)
            test_steal_basic(bases[i], bases[j]);
    }
    for (unsigned i = 0; i < nb; i++)
        test_model(bases[i], bases[(i + 3) % nb], 0x9e3779b97f4a7c15ull * (i + 1), 200000);
    printf("stress_ring: edge cases ok (%u index bases, model %u x 200000 ops)\n", nb, nb);
}

/* ------------------------------------------------------------------------ */
/* Part 2: one owner, N thieves                                              */

/* The inject list: a mutex-protected stack of items (order is irrelevant). */
static struct {
    pthread_mutex_t lock;
    void **items;
    size_t len;
    _Atomic size_t alen; /* hint for lock-free emptiness checks */
} inject = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void inject_push(void *const *items, size_t n)
{
    pthread_mutex_lock(&inject.lock);
    if (inject.len + n > ITEMS_PER_ROUND) {
        pthread_mutex_unlock(&inject.lock);
        fail("inject overflow: %zu + %zu items (duplicates?)", inject.len, n);
        return;
    }
    memcpy(inject.items + inject.len, items, n * sizeof(void *));
    inject.len += n;
    atomic_store_explicit(&inject.alen, inject.len, memory_order_relaxed);
    pthread_mutex_unlock(&inject.lock);
}

static size_t inject_take(void **out, size_t max)
{
    size_t n;

    if (atomic_load_explicit(&inject.alen, memory_order_relaxed) == 0)
        return 0;
    pthread_mutex_lock(&inject.lock);
    n = inject.len < max ? inject.len : max;
    inject.len -= n;
    memcpy(out, inject.items + inject.len, n * sizeof(void *));
    atomic_store_explicit(&inject.alen, inject.len, memory_order_relaxed);
    pthread_mutex_unlock(&inject.lock);
    return n;
}

/*
 * Part 2 items are pointers into `payload`. The producer writes an item's
 * `check` with a plain store before its first push and every consumer reads
 * it with a plain load (then overwrites it), so under TSan a missing
 * release/acquire edge anywhere on the path owner -> (thief -> thief)* ->
 * consumer is reported as a data race, not just a wrong count.
 */
typedef struct payload {
    uint64_t check;
} payload_t;

static payload_t *payload;

static uint64_t check_of(uintptr_t i)
{
    return (i + 1) * 0x9e3779b97f4a7c15ull;
}

/* Per-round shared state. */
static _Atomic unsigned char *seen; /* consumption count per item */
static _Atomic uint64_t consumed;
static int64_t deadline;
static weft__ring_t *owner_ring;
static weft__ring_t *thief_ring[MAX_THIEVES];
static unsigned nthieves;
static pthread_barrier_t start_line; /* owner and thieves start together */

typedef struct stats {
    uint64_t push_calls; /* weft__ring_push calls (successful or not) */
    uint64_t pushed;     /* items that entered a ring (push + batch) */
    uint64_t popped;
    uint64_t claims; /* claim_half returning 128 */
    uint64_t claim_refused;
    uint64_t steals; /* successful steal_into */
    uint64_t stolen; /* items moved by those steals */
    uint64_t injected;
    uint64_t from_inject; /* items taken out of the inject list */
    uint64_t dst_full;    /* steal attempts with our ring more than half full */
    uint64_t throttled;   /* owner iterations without pushes (inject list long) */
} stats_t;

/*
 * Stand-in for running a task: ~100 ns of register-only arithmetic, so that
 * consuming costs more than queueing, the owner cannot drain everything by
 * itself and stealing pays off, as in a runtime. Returns 0 (kept opaque to
 * the compiler so the loop is not removed).
 */
static uint64_t run_task(uintptr_t i)
{
    uint64_t x = i | 1;

    for (unsigned k = 0; k < TASK_SPINS; k++)
        x = xorshift(&x);
    return x == 0;
}

static void consume(void *p)
{
    uintptr_t off = (uintptr_t)p - (uintptr_t)payload;
    uintptr_t i = off / sizeof(payload_t);

    if (p == NULL || (uintptr_t)p < (uintptr_t)payload || off % sizeof(payload_t) != 0 ||
        i >= ITEMS_PER_ROUND) {
        fail("bad item %p", p);
        return;
    }
    if (atomic_fetch_add_explicit(&seen[i], 1, memory_order_relaxed) != 0) {
        fail("item %" PRIuPTR " consumed twice", i);
        return;
    }
    if (payload[i].check != check_of(i)) {
        fail("item %" PRIuPTR ": payload %#" PRIx64 ", expected %#" PRIx64
             " (producer's write not visible)",
             i, payload[i].check, check_of(i));
        return;
    }
    payload[i].check = ~check_of(i) ^ run_task(i);
    atomic_fetch_add_explicit(&consumed, 1, memory_order_relaxed);
}

static bool done(void)
{
    return atomic_load_explicit(&consumed, memory_order_relaxed) == ITEMS_PER_ROUND ||
           atomic_load_explicit(&failed, memory_order_relaxed);
}

static bool timed_out(const char *who)
{
    if (now_ns() < deadline)
        return false;
    fail("%s: wall-clock limit hit; consumed %" PRIu64 " of %u", who, atomic_load(&consumed),
         ITEMS_PER_ROUND);
    return true;
}

/* Owner push with Tokio's overflow policy. */
static void owner_push(void *item, stats_t *st)
{
    void *batch[HALF + 1];
    unsigned n;

    st->push_calls++;
    if (weft__ring_push(owner_ring, item)) {
        st->pushed++;
        return;
    }
    n = weft__ring_claim_half(owner_ring, batch);
    if (n == HALF) {
        st->claims++;
        batch[n++] = item;
    } else {
        /* A thief is mid-steal (or just took some): send only this one. */
        st->claim_refused++;
        batch[0] = item;
        n = 1;
    }
    inject_push(batch, n);
    st->injected += n;
}

/* Refill the owner's ring from the inject list; leftovers go back. */
static void owner_refill(stats_t *st)
{
    void *buf[HALF];
    size_t n, fit;

    /*
     * Take up to HALF whatever the room, so that push_batch's own room check
     * (against the steal head) is what limits it.
     */
    n = inject_take(buf, HALF);
    if (n == 0)
        return;
    st->from_inject += n;
    /*
     * Rewrite the payloads (same value) so that, under TSan, the consumers'
     * reads must be ordered by push_batch's release, not by the inject lock.
     */
    for (size_t k = 0; k < n; k++) {
        uintptr_t i = (uintptr_t)((payload_t *)buf[k] - payload);
        payload[i].check = check_of(i);
    }
    fit = weft__ring_push_batch(owner_ring, buf, (unsigned)n);
    st->pushed += fit;
    if (fit < n) {
        inject_push(buf + fit, n - fit);
        st->injected += n - fit;
    }
}

static void *owner_main(void *arg)
{
    stats_t *st = arg;
    uint64_t rng = 0x2545f4914f6cdd1dull;
    uintptr_t next = 0;
    unsigned iter = 0;

    pthread_barrier_wait(&start_line);
    while (next < ITEMS_PER_ROUND && !atomic_load_explicit(&failed, memory_order_relaxed)) {
        /*
         * Push slightly more than we pop on average, so the ring fills and
         * overflows now and then unless thieves keep up.
         */
        unsigned burst = (unsigned)(xorshift(&rng) % 64) + 1;
        unsigned pops = (unsigned)(xorshift(&rng) % 64);

        /*
         * Back-pressure: while the inject list is long, push nothing new, so
         * that the owner cannot run ahead of the thieves (on 2 cores it
         * easily would) and most items pass through rings, not the list.
         */
        if (atomic_load_explicit(&inject.alen, memory_order_relaxed) > 4 * CAP) {
            burst = 0;
            st->throttled++;
            if (weft__ring_is_empty(owner_ring))
                sched_yield();
        }
        for (unsigned k = 0; k < burst && next < ITEMS_PER_ROUND; k++, next++) {
            payload[next].check = check_of(next);
            owner_push(&payload[next], st);
        }
        for (unsigned k = 0; k < pops; k++) {
            void *p = weft__ring_pop(owner_ring);
            if (p == NULL)
                break;
            st->popped++;
            consume(p);
        }
        /*
         * Refill when low, and every 64th time whatever the length, so that
         * push_batch also meets a nearly full ring with a steal in progress.
         */
        ++iter;
        if ((((iter & 15) == 0 || burst == 0) && weft__ring_len(owner_ring) < HALF) ||
            (iter & 63) == 0)
            owner_refill(st);
        if ((iter & 1023) == 0 && timed_out("owner"))
            return NULL;
    }
    /* Drain: own ring first, then the inject list, until all are consumed. */
    while (!done()) {
        void *p = weft__ring_pop(owner_ring);

        if (p != NULL) {
            st->popped++;
            consume(p);
            continue;
        }
        owner_refill(st);
        if (weft__ring_is_empty(owner_ring))
            sched_yield();
        if ((++iter & 255) == 0 && timed_out("owner drain"))
            return NULL;
    }
    return NULL;
}

typedef struct thief {
    unsigned id;
    stats_t st;
} thief_t;

static void *thief_main(void *arg)
{
    thief_t *t = arg;
    weft__ring_t *mine = thief_ring[t->id];
    uint64_t rng = 0x9e3779b97f4a7c15ull * (t->id + 1);
    unsigned iter = 0;
    void *buf[8];

    pthread_barrier_wait(&start_line);
    while (!done()) {
        weft__ring_t *victim = owner_ring;
        bool hoard = (iter & 255) < 16;
        bool found = false;
        void *p;

        /* Mostly steal from the owner; one time in 8 from another thief. */
        if (nthieves > 1 && (xorshift(&rng) & 7) == 0) {
            unsigned v = (unsigned)(xorshift(&rng) % (nthieves - 1));
            victim = thief_ring[v >= t->id ? v + 1 : v];
        }
        /* Our own tail (only we write it) tells how many the steal kept. */
        uint32_t before = atomic_load_explicit(&mine->tail, memory_order_relaxed);
        if (weft__ring_len(mine) > HALF)
            t->st.dst_full++;
        p = weft__ring_steal_into(victim, mine);
        if (p != NULL) {
            found = true;
            t->st.steals++;
            t->st.stolen += atomic_load_explicit(&mine->tail, memory_order_relaxed) - before + 1;
            consume(p);
        }
        /*
         * Pop some (not all), so that other thieves can steal from us. In
         * a hoarding stretch (16 iterations in 256) pop none, so that
         * our ring gets more than half full and steal_into must refuse.
         */
        unsigned pops = hoard ? 0 : (unsigned)(xorshift(&rng) % 48);
        for (unsigned k = 0; k < pops; k++) {
            p = weft__ring_pop(mine);
            if (p == NULL)
                break;
            found = true;
            t->st.popped++;
            consume(p);
        }
        if (!found) {
            size_t n = inject_take(buf, 8);

            t->st.from_inject += n;
            for (size_t k = 0; k < n; k++)
                consume(buf[k]);
            if (n == 0) {
                /* Nothing anywhere visible: drain our own ring, then yield. */
                while (!hoard && (p = weft__ring_pop(mine)) != NULL) {
                    t->st.popped++;
                    consume(p);
                }
                sched_yield();
            }
        }
        if ((++iter & 255) == 0 && timed_out("thief"))
            return NULL;
    }
    return NULL;
}

static void add_stats(stats_t *a, const stats_t *b)
{
    a->push_calls += b->push_calls;
    a->pushed += b->pushed;
    a->popped += b->popped;
    a->claims += b->claims;
    a->claim_refused += b->claim_refused;
    a->steals += b->steals;
    a->stolen += b->stolen;
    a->injected += b->injected;
    a->from_inject += b->from_inject;
    a->dst_full += b->dst_full;
    a->throttled += b->throttled;
}

static void run_round(unsigned thieves, stats_t *total)
{
    pthread_t owner_tid, tid[MAX_THIEVES];
    thief_t th[MAX_THIEVES];
    stats_t st = {0};
    int64_t t0 = now_ns();
    uint64_t missing = 0, dup = 0;

    memset(th, 0, sizeof(th));
    for (uint32_t i = 0; i < ITEMS_PER_ROUND; i++)
        atomic_init(&seen[i], 0);
    atomic_store(&consumed, 0);
    inject.len = 0;
    atomic_store(&inject.alen, 0);
    weft__ring_init(owner_ring);
    nthieves = thieves;
    for (unsigned i = 0; i < thieves; i++) {
        weft__ring_init(thief_ring[i]);
        th[i].id = i;
    }
    CHECK(pthread_barrier_init(&start_line, NULL, thieves + 1) == 0);
    CHECK(pthread_create(&owner_tid, NULL, owner_main, &st) == 0);
    for (unsigned i = 0; i < thieves; i++)
        CHECK(pthread_create(&tid[i], NULL, thief_main, &th[i]) == 0);
    pthread_join(owner_tid, NULL);
    for (unsigned i = 0; i < thieves; i++) {
        pthread_join(tid[i], NULL);
        add_stats(&st, &th[i].st);
    }
    pthread_barrier_destroy(&start_line);
    if (atomic_load(&failed))
        return;

    for (uint32_t i = 0; i < ITEMS_PER_ROUND; i++) {
        unsigned c = atomic_load_explicit(&seen[i], memory_order_relaxed);
        if (c == 0 && missing++ == 0)
            fprintf(stderr, "stress_ring: item %" PRIu32 " never consumed\n", i);
        if (c > 1 && dup++ == 0)
            fprintf(stderr, "stress_ring: item %" PRIu32 " consumed %u times\n", i, c);
    }
    if (missing || dup) {
        fail("round with %u thieves: %" PRIu64 " items lost, %" PRIu64 " duplicated", thieves,
             missing, dup);
        return;
    }
    if (!weft__ring_is_empty(owner_ring) || inject.len != 0) {
        fail("round with %u thieves: queues not empty at the end", thieves);
        return;
    }
    /* Quiescent: every steal finished, so steal == real in every ring. */
    for (unsigned i = 0; i <= thieves; i++) {
        uint64_t h = atomic_load(i == thieves ? &owner_ring->head : &thief_ring[i]->head);
        if ((uint32_t)(h >> 32) != (uint32_t)h) {
            fail("round with %u thieves: ring %u left with steal %" PRIu32 " != real %" PRIu32,
                 thieves, i, (uint32_t)(h >> 32), (uint32_t)h);
            return;
        }
    }
    printf("stress_ring: thieves=%u items=%u push_calls=%" PRIu64 " pushed=%" PRIu64
           " pops=%" PRIu64 " steals=%" PRIu64 " stolen=%" PRIu64 " dst_full=%" PRIu64
           " claims=%" PRIu64 " claim_refused=%" PRIu64 " injected=%" PRIu64 " throttled=%" PRIu64
           " ms=%.0f\n",
           thieves, ITEMS_PER_ROUND, st.push_calls, st.pushed, st.popped, st.steals, st.stolen,
           st.dst_full, st.claims, st.claim_refused, st.injected, st.throttled,
           (double)(now_ns() - t0) / 1e6);
    add_stats(total, &st);
}

int main(void)
{
    stats_t total = {0};
    int64_t t0 = now_ns();

#ifndef STRESS_RING_SKIP_EDGE /* for mutation-testing the concurrent part alone */
    run_edge_tests();
#endif

    inject.items = malloc(ITEMS_PER_ROUND * sizeof(void *));
    seen = malloc(ITEMS_PER_ROUND * sizeof(*seen));
    payload = calloc(ITEMS_PER_ROUND, sizeof(*payload));
    owner_ring = ring_new();
    for (unsigned i = 0; i < MAX_THIEVES; i++)
        thief_ring[i] = ring_new();
    CHECK(inject.items != NULL && seen != NULL && payload != NULL);
    deadline = t0 + TIME_LIMIT_NS;

    for (unsigned n = 1; n <= MAX_THIEVES && !atomic_load(&failed); n++)
        run_round(n, &total);
    if (atomic_load(&failed))
        return 1;
    if (ITEMS_PER_ROUND >= 2500000u && total.push_calls < 10000000u) {
        fprintf(stderr, "stress_ring: FAIL: only %" PRIu64 " push calls\n", total.push_calls);
        return 1;
    }
    if (total.steals == 0 || total.claims == 0) {
        fprintf(stderr,
                "stress_ring: FAIL: no steal (%" PRIu64 ") or no overflow (%" PRIu64 ") happened\n",
                total.steals, total.claims);
        return 1;
    }
    printf("stress_ring: OK %s rounds=%u items=%u push_calls=%" PRIu64 " pushed=%" PRIu64
           " steals=%" PRIu64 " stolen=%" PRIu64 " claims=%" PRIu64 " claim_refused=%" PRIu64
           " from_inject=%" PRIu64 " total_ms=%.0f\n",
           UNDER_TSAN ? "tsan" : "normal", MAX_THIEVES, MAX_THIEVES * ITEMS_PER_ROUND,
           total.push_calls, total.pushed, total.steals, total.stolen, total.claims,
           total.claim_refused, total.from_inject, (double)(now_ns() - t0) / 1e6);
    free(inject.items);
    free((void *)seen);
    free(payload);
    free(owner_ring);
    for (unsigned i = 0; i < MAX_THIEVES; i++)
        free(thief_ring[i]);
    return 0;
}
