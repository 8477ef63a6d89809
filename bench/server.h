/*
 * server.h - the skeleton the server workloads (W10, W11) share
 * (header-only): argument parsing, the listener on 127.0.0.1, an accept
 * loop as a stackless future or a coroutine, READY, and a clean shutdown
 * on SIGTERM/SIGINT.
 *
 *   <prog> <workers> <port> [--coro|--coro-pinned|--stackless]
 *
 * Each accepted stream gets TCP_NODELAY and is handed to the program's
 * start(s, coro), which spawns the connection's task (a coroutine when
 * coro, through bench_spawn_conn_coro) and owns s from then on; if start
 * fails, the stream is closed.
 *
 * --coro spawns the connection coroutines migratable (weft/coro.h,
 * "Threads"): they hold no address of a thread-local across an await (no
 * errno read after one; malloc and free only between awaits), so they may
 * resume on whichever worker polled their socket, as stackless tasks and
 * goroutines do. --coro-pinned keeps the default (a coroutine stays on the
 * worker that first ran it): W10 at 2 workers costs ~15 us of CPU per
 * request that way against ~9 migratable (docs/io.md, "Help"), since the
 * worker that polls an event must hand every other worker's coroutine
 * over and wake that worker. On
 * SIGTERM the runtime is shut down (every connection task is cancelled and
 * closes its stream), the listener closed, and the program exits 0.
 */
#ifndef WEFT_BENCH_SERVER_H
#define WEFT_BENCH_SERVER_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft.h>

#include "common.h"

typedef int (*bench_conn_start_t)(weft_tcp_stream_t *s, int coro);

#define BENCH_CORO_MIGRATABLE 1 /* --coro */
#define BENCH_CORO_PINNED 2     /* --coro-pinned */

/* Spawn fn(s) as the connection's coroutine (detached), as `coro` says. */
static inline int bench_spawn_conn_coro(int (*fn)(void *), weft_tcp_stream_t *s, int coro)
{
    weft_coro_opts_t o = WEFT_CORO_OPTS_INIT;
    o.migratable = coro == BENCH_CORO_MIGRATABLE;
    return weft_spawn_coro(weft_runtime_current(), fn, s, &o, NULL);
}

static const char *bench_server_prog;
static bench_conn_start_t bench_server_start;
static int bench_server_coro; /* BENCH_CORO_* for the accept coroutine's connections */

static inline void bench_server_die(const char *what, int rc)
{
    fprintf(stderr, "%s: %s: %s (%d)\n", bench_server_prog, what, weft_strerror(rc), rc);
    exit(1);
}

static inline void bench_server_hand_off(weft_tcp_stream_t *s, int coro)
{
    weft_tcp_set_nodelay(s, true);
    if (bench_server_start(s, coro) != 0)
        weft_tcp_close(s);
}

typedef struct bench_acceptor {
    weft_tcp_listener_t *l;
    bool live; /* acc holds an initialised future */
    weft_tcp_stream_t *s;
    weft_tcp_accept_t acc;
} bench_acceptor_t;

static inline weft_poll_t bench_acceptor_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    bench_acceptor_t *a = state;
    for (;;) {
        if (!a->live)
            weft_tcp_accept_init(&a->acc, a->l, &a->s, NULL, WEFT_FOREVER);
        a->live = true;
        int64_t v = 0;
        if (weft_tcp_accept_vtable.poll(&a->acc, cx, &v) == WEFT_PENDING)
            return WEFT_PENDING;
        weft_tcp_accept_vtable.drop(&a->acc);
        a->live = false;
        if (v < 0) {
            fprintf(stderr, "accept: %s\n", weft_strerror((int)v));
            *out = v;
            return WEFT_READY;
        }
        bench_server_hand_off(a->s, 0);
    }
}

static inline void bench_acceptor_drop(void *state)
{
    bench_acceptor_t *a = state;
    if (a->live)
        weft_tcp_accept_vtable.drop(&a->acc);
    a->live = false;
}

static const weft_future_vtable_t bench_acceptor_vt = {bench_acceptor_poll, bench_acceptor_drop,
                                                       "bench_accept"};

static inline int bench_acceptor_coro(void *arg)
{
    weft_tcp_listener_t *l = arg;
    for (;;) {
        weft_tcp_stream_t *s;
        int rc = weft_tcp_accept(l, &s, NULL, WEFT_FOREVER);
        if (rc == -ECANCELED)
            return 0;
        if (rc < 0) {
            fprintf(stderr, "accept: %s\n", weft_strerror(rc));
            return rc;
        }
        bench_server_hand_off(s, bench_server_coro);
    }
}

static inline int bench_server_main(int argc, char **argv, const char *prog,
                                    bench_conn_start_t start)
{
    bench_server_prog = prog;
    bench_server_start = start;
    unsigned workers = weft_default_workers();
    long port = -1;
    int coro = 0, npos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--coro") == 0) {
            coro = BENCH_CORO_MIGRATABLE;
        } else if (strcmp(argv[i], "--coro-pinned") == 0) {
            coro = BENCH_CORO_PINNED;
        } else if (strcmp(argv[i], "--stackless") == 0) {
            coro = 0;
        } else {
            char *end;
            long v = strtol(argv[i], &end, 10);
            if (*end || (npos == 0 && (v < 1 || v > WEFT_MAX_WORKERS)) ||
                (npos == 1 && (v < 0 || v > 65535)) || npos > 1) {
                port = -1;
                npos = 3;
                break;
            }
            if (npos++ == 0)
                workers = (unsigned)v;
            else
                port = v;
        }
    }
    if (port < 0) {
        fprintf(stderr, "usage: %s <workers> <port> [--coro|--coro-pinned|--stackless]\n", prog);
        return 2;
    }

    /* SIGTERM/SIGINT are taken by sigwait below; weft's threads block all
     * signals, so blocking them here covers the whole process. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    weft_config_t cfg;
    bench_config(&cfg, workers);
    weft_runtime_t *rt;
    int rc = weft_runtime_new(&cfg, &rt);
    if (rc != 0)
        bench_server_die("weft_runtime_new", rc);

    char text[32];
    snprintf(text, sizeof text, "127.0.0.1:%ld", port);
    struct sockaddr_storage addr;
    socklen_t alen;
    weft_addr_parse(text, &addr, &alen);
    weft_tcp_listener_t *l;
    rc = weft_tcp_listen(rt, (struct sockaddr *)&addr, alen, 1024, &l);
    if (rc != 0)
        bench_server_die("listen", rc);

    if (coro) {
        bench_server_coro = coro;
        rc = weft_spawn_coro(rt, bench_acceptor_coro, l, NULL, NULL);
    } else {
        bench_acceptor_t a = {l, false, NULL, {0}};
        rc = weft_spawn(rt, &bench_acceptor_vt, &a, sizeof a, NULL);
    }
    if (rc != 0)
        bench_server_die("spawn", rc);
    printf("READY\n");
    fflush(stdout);

    int sig;
    sigwait(&sigs, &sig);
    weft_runtime_shutdown(rt, weft_now() + 2000000000LL);
    weft_tcp_listener_close(l);
    rc = weft_runtime_free(rt);
    if (rc != 0)
        bench_server_die("weft_runtime_free", rc);
    return 0;
}

#endif /* WEFT_BENCH_SERVER_H */
