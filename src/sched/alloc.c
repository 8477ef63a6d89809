/*
 * alloc.c - task cells: a slab allocator with per-worker free lists.
 *
 * Cells come in classes of 64-byte steps (64..512 bytes, 64-byte aligned,
 * so neighbouring tasks never share a cache line). A worker takes a cell
 * from, in order: its own free list for the class (touched by it alone),
 * the runtime's shared pool for the class (a batch, under a mutex), or its
 * current 2 MiB chunk (bump allocation; chunks come from the platform's
 * page mapper and are kept until the runtime is freed). A freed cell goes
 * to the freeing worker's list; past WEFT__CACHE_MAX half the list moves to
 * the shared pool in one batch. A thread that is not one of this runtime's
 * workers allocates and frees through the shared pool.
 * Cells larger than the biggest class use malloc/free.
 *
 * A thread that is not a worker keeps a few cells of one runtime and one
 * class in a thread-local cache (FOREIGN_CACHE_MAX), so a thread spawning
 * or joining in a loop takes the pool lock once per batch, not per cell.
 * The cache is tagged with the runtime's generation, a process-unique
 * number never reused, so cells of a freed runtime are never handed out;
 * cells left in a cache when its thread exits or turns to another runtime
 * stay in their chunk until that runtime is freed.
 *
 * Memory is retained: a burst of a million tasks keeps its cells (in the
 * pools) until weft_runtime_free. Counters (allocs/frees per worker,
 * foreign_* for other threads) tell, after shutdown, whether any cell is
 * still referenced.
 */
#include <stdlib.h>

#include "sched/sched.h"

#define LARGE_CLASS 255u

static unsigned size_class(size_t total)
{
    return (unsigned)((total + 63) / 64) - 1; /* 64 -> 0, 128 -> 1, ... */
}

#define FOREIGN_CACHE_MAX 64

static _Atomic uint64_t next_gen = 1;

typedef struct foreign_cache {
    uint64_t gen; /* 0: empty */
    unsigned cls;
    unsigned n;
    weft__task_t *head;
} foreign_cache_t;

static _Thread_local foreign_cache_t fcache;

/* noinline: no TLS address is kept across calls (coroutine-safe). */
__attribute__((noinline)) static foreign_cache_t *foreign_cache(void)
{
    return &fcache;
}

void weft__alloc_init(weft__sched_t *s)
{
    /* Relaxed: only uniqueness matters. */
    s->gen = atomic_fetch_add_explicit(&next_gen, 1, memory_order_relaxed);
    for (unsigned c = 0; c < WEFT__CACHE_CLASSES; c++) {
        pthread_mutex_init(&s->pool[c].lock, NULL);
        s->pool[c].head = NULL;
        atomic_init(&s->pool[c].count, 0);
    }
    pthread_mutex_init(&s->chunks_lock, NULL);
    s->chunks = NULL;
}

void weft__alloc_destroy(weft__sched_t *s)
{
    void *c = s->chunks;
    while (c) {
        void *next = *(void **)c;
        weft__pages_unmap(c, WEFT__CHUNK_SIZE);
        c = next;
    }
    s->chunks = NULL;
    for (unsigned c = 0; c < WEFT__CACHE_CLASSES; c++)
        pthread_mutex_destroy(&s->pool[c].lock);
    pthread_mutex_destroy(&s->chunks_lock);
}

/* Take up to max cells of class c from the pool into a chain; count out. */
static weft__task_t *pool_take(weft__pool_t *p, unsigned max, unsigned *n)
{
    *n = 0;
    pthread_mutex_lock(&p->lock);
    weft__task_t *head = p->head, *t = head, *last = NULL;
    while (t && *n < max) {
        last = t;
        t = t->next;
        (*n)++;
    }
    if (last)
        last->next = NULL;
    p->head = t;
    atomic_store_explicit(&p->count, atomic_load_explicit(&p->count, memory_order_relaxed) - *n,
                          memory_order_relaxed);
    pthread_mutex_unlock(&p->lock);
    return *n ? head : NULL;
}

static void pool_put(weft__pool_t *p, weft__task_t *first, weft__task_t *last, size_t n)
{
    pthread_mutex_lock(&p->lock);
    last->next = p->head;
    p->head = first;
    atomic_store_explicit(&p->count, atomic_load_explicit(&p->count, memory_order_relaxed) + n,
                          memory_order_relaxed);
    pthread_mutex_unlock(&p->lock);
}

static char *new_chunk(weft__sched_t *s)
{
    char *c = weft__pages_map(WEFT__CHUNK_SIZE);
    if (!c)
        return NULL;
    pthread_mutex_lock(&s->chunks_lock);
    *(void **)c = s->chunks;
    s->chunks = c;
    pthread_mutex_unlock(&s->chunks_lock);
    return c;
}

/* Carve a cell of class c from the worker's chunk (or the foreign path). */
static weft__task_t *carve(weft__sched_t *s, weft__worker_t *w, unsigned c)
{
    size_t sz = (size_t)(c + 1) * 64;
    if (!w) {
        /* Foreign threads carve a private chunk they leave to the pool:
         * rare (remote spawns beyond the pool), so simplicity wins. */
        char *chunk = new_chunk(s);
        if (!chunk)
            return NULL;
        char *p = chunk + 64, *end = chunk + WEFT__CHUNK_SIZE;
        weft__task_t *first = (weft__task_t *)p, *prev = NULL;
        size_t n = 0;
        for (; p + sz <= end; p += sz, n++) {
            weft__task_t *t = (weft__task_t *)p;
            if (prev)
                prev->next = t;
            prev = t;
        }
        /* Keep the first, pool the rest. */
        weft__task_t *rest = first->next;
        if (rest)
            pool_put(&s->pool[c], rest, prev, n - 1);
        return first;
    }
    if (!w->bump || w->bump + sz > w->bump_end) {
        char *chunk = new_chunk(s);
        if (!chunk)
            return NULL;
        w->bump = chunk + 64; /* the first line links the chunk list */
        w->bump_end = chunk + WEFT__CHUNK_SIZE;
    }
    weft__task_t *t = (weft__task_t *)w->bump;
    w->bump += sz;
    return t;
}

/* Point this thread's cache at (s, c), returning what it held of s. */
static foreign_cache_t *foreign_cache_for(weft__sched_t *s, unsigned c)
{
    foreign_cache_t *fc = foreign_cache();
    if (fc->gen == s->gen && fc->cls == c)
        return fc;
    if (fc->gen == s->gen && fc->head) {
        /* Same runtime, other class: give those back. */
        weft__task_t *last = fc->head;
        while (last->next)
            last = last->next;
        pool_put(&s->pool[fc->cls], fc->head, last, fc->n);
    }
    /* Another runtime's cells are abandoned in their chunks (see top). */
    fc->gen = s->gen;
    fc->cls = c;
    fc->n = 0;
    fc->head = NULL;
    return fc;
}

static weft__task_t *foreign_alloc(weft__sched_t *s, unsigned c)
{
    foreign_cache_t *fc = foreign_cache_for(s, c);
    if (!fc->head) {
        unsigned n = 0;
        if (atomic_load_explicit(&s->pool[c].count, memory_order_relaxed))
            fc->head = pool_take(&s->pool[c], FOREIGN_CACHE_MAX, &n);
        fc->n = n;
        if (!fc->head)
            return carve(s, NULL, c);
    }
    weft__task_t *t = fc->head;
    fc->head = t->next;
    fc->n--;
    return t;
}

static void foreign_free(weft__sched_t *s, weft__task_t *t, unsigned c)
{
    foreign_cache_t *fc = foreign_cache_for(s, c);
    t->next = fc->head;
    fc->head = t;
    if (++fc->n >= 2 * FOREIGN_CACHE_MAX) {
        weft__task_t *first = fc->head, *last = first;
        for (unsigned i = 1; i < FOREIGN_CACHE_MAX; i++)
            last = last->next;
        fc->head = last->next;
        fc->n -= FOREIGN_CACHE_MAX;
        pool_put(&s->pool[c], first, last, FOREIGN_CACHE_MAX);
    }
}

weft__task_t *weft__cell_alloc(weft__sched_t *s, weft__worker_t *w, size_t total)
{
    unsigned c = size_class(total);
    weft__task_t *t = NULL;
    if (c >= WEFT__CACHE_CLASSES) {
        t = malloc((size_t)(c + 1) * 64);
        if (!t)
            return NULL;
        c = LARGE_CLASS;
    } else if (w && (t = w->cache[c]) != NULL) {
        w->cache[c] = t->next;
        w->cache_n[c]--;
    } else if (!w) {
        if (!(t = foreign_alloc(s, c)))
            return NULL;
    } else {
        unsigned n = 0;
        t = atomic_load_explicit(&s->pool[c].count, memory_order_relaxed)
                ? pool_take(&s->pool[c], w ? WEFT__CACHE_MAX / 2 : 1, &n)
                : NULL;
        if (t && w && n > 1) {
            w->cache[c] = t->next;
            w->cache_n[c] = n - 1;
        }
        if (!t && !(t = carve(s, w, c)))
            return NULL;
    }
    t->size_class = (uint8_t)c;
    if (w)
        w->allocs++;
    else
        /* Relaxed: read only after every worker thread has been joined. */
        atomic_fetch_add_explicit(&s->foreign_allocs, 1, memory_order_relaxed);
    return t;
}

void weft__cell_free(weft__sched_t *s, weft__task_t *t)
{
    weft__worker_t *w = weft__worker_current();
    if (w && w->s != s)
        w = NULL;
    unsigned c = t->size_class;
    if (w)
        w->frees++;
    else
        atomic_fetch_add_explicit(&s->foreign_frees, 1, memory_order_relaxed);
    if (c == LARGE_CLASS) {
        free(t);
        return;
    }
    if (!w) {
        foreign_free(s, t, c);
        return;
    }
    t->next = w->cache[c];
    w->cache[c] = t;
    if (++w->cache_n[c] > WEFT__CACHE_MAX) {
        /* Move half to the shared pool in one batch. */
        weft__task_t *first = w->cache[c], *last = first;
        for (unsigned i = 1; i < WEFT__CACHE_MAX / 2; i++)
            last = last->next;
        w->cache[c] = last->next;
        w->cache_n[c] -= WEFT__CACHE_MAX / 2;
        pool_put(&s->pool[c], first, last, WEFT__CACHE_MAX / 2);
    }
}
