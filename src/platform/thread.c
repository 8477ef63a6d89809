/*
 * thread.c - starting and joining runtime threads.
 *
 * Owns: weft__thread_start and weft__thread_join.
 *
 * Invariants:
 * - Threads are joinable; whoever starts one joins it exactly once.
 * - Every weft thread runs with all signals blocked: the mask is set to
 *   "everything" around pthread_create, so the child inherits it from its
 *   first instruction and the caller's own mask is restored before we
 *   return. Asynchronous signals aimed at the process are therefore never
 *   delivered to a worker or the driver (they land on application threads);
 *   synchronous faults (SIGSEGV, SIGBUS, ...) are still delivered by the
 *   kernel, blocked or not.
 * - The name is set by the new thread on itself, before fn runs, so it is in
 *   place for any hook or debugger that looks; it is cut to the 15
 *   characters Linux keeps. A name that cannot be set is not an error.
 * - Errors are returned as negative errno; errno is never used.
 */
#include "platform/platform.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* Linux keeps 16 bytes of thread name, the NUL included. */
#define THREAD_NAME_LEN 15

struct start {
    void *(*fn)(void *);
    void *arg;
    char name[THREAD_NAME_LEN + 1];
};

static void *trampoline(void *p)
{
    struct start s = *(struct start *)p;

    free(p);
    if (s.name[0] != '\0')
        (void)pthread_setname_np(pthread_self(), s.name);
    return s.fn(s.arg);
}

int weft__thread_start(weft__thread_t *t, void *(*fn)(void *), void *arg, const char *name)
{
    struct start *s;
    sigset_t all, old;
    int rc;

    if (t == NULL || fn == NULL)
        return -EINVAL;
    s = malloc(sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->fn = fn;
    s->arg = arg;
    s->name[0] = '\0';
    if (name != NULL) {
        size_t n = strnlen(name, THREAD_NAME_LEN);

        memcpy(s->name, name, n);
        s->name[n] = '\0';
    }

    sigfillset(&all);
    rc = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (rc != 0) {
        free(s);
        return -rc;
    }
    rc = pthread_create(&t->id, NULL, trampoline, s);
    /* Restoring the mask just read cannot fail (only a bad `how` can). */
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        free(s);
        return -rc;
    }
    return 0;
}

int weft__thread_join(weft__thread_t *t)
{
    if (t == NULL)
        return -EINVAL;
    return -pthread_join(t->id, NULL);
}
