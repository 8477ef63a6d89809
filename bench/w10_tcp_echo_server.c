/*
 * W10 tcp_echo server: `w10_tcp_echo_server <workers> <port> [--coro|--stackless]`.
 *
 * Listens on 127.0.0.1:<port> only, prints READY once listening, then
 * echoes every byte back on every connection until SIGTERM (or SIGINT):
 * one task per connection, a 4 KiB buffer per connection, read then
 * write-all, TCP_NODELAY on accepted sockets - the same program as
 * peers/tokio/src/bin/w10_tcp_echo_server.rs. The load is
 * peers/client/echo_client or bench/load_echo (see WORKLOADS.md); this
 * program prints no RESULT line.
 *
 * Default: stackless tasks (runtime label weft); --coro: coroutine tasks
 * (weft-coro). On SIGTERM: shut the runtime down (every connection task is
 * cancelled and closes its stream), close the listener, exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft.h>
#include <weft/net.h>

#define BUF 4096

static void die(const char *what, int rc)
{
    fprintf(stderr, "w10_tcp_echo_server: %s: %s (%d)\n", what, weft_strerror(rc), rc);
    exit(1);
}

/* ---- stackless ------------------------------------------------------------------------------ */

typedef struct echo_conn {
    weft_tcp_stream_t *s;
    bool writing; /* false: reading into buf; true: writing buf[0, n) back */
    bool live;    /* op holds an initialised future */
    size_t n;
    union {
        weft_tcp_read_t rd;
        weft_tcp_write_all_t wr;
    } op;
    char buf[BUF];
} echo_conn_t;

static weft_poll_t echo_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    echo_conn_t *c = state;
    for (;;) {
        int64_t v = 0;
        if (!c->writing) {
            if (!c->live)
                weft_tcp_read_init(&c->op.rd, c->s, c->buf, BUF, WEFT_FOREVER);
            c->live = true;
            if (weft_tcp_read_vtable.poll(&c->op.rd, cx, &v) == WEFT_PENDING)
                return WEFT_PENDING;
            weft_tcp_read_vtable.drop(&c->op.rd);
            c->live = false;
            if (v <= 0)
                break; /* end of stream or error */
            c->n = (size_t)v;
            c->writing = true;
        } else {
            if (!c->live)
                weft_tcp_write_all_init(&c->op.wr, c->s, c->buf, c->n, WEFT_FOREVER, NULL);
            c->live = true;
            if (weft_tcp_write_all_vtable.poll(&c->op.wr, cx, &v) == WEFT_PENDING)
                return WEFT_PENDING;
            weft_tcp_write_all_vtable.drop(&c->op.wr);
            c->live = false;
            if (v < 0)
                break;
            c->writing = false;
        }
    }
    *out = 0;
    return WEFT_READY;
}

static void echo_drop(void *state)
{
    echo_conn_t *c = state;
    if (c->live)
        (c->writing ? weft_tcp_write_all_vtable : weft_tcp_read_vtable).drop(&c->op);
    c->live = false;
    weft_tcp_close(c->s);
}

static const weft_future_vtable_t echo_vt = {echo_poll, echo_drop, "w10_echo"};

typedef struct acceptor {
    weft_tcp_listener_t *l;
    bool live;
    weft_tcp_stream_t *s;
    weft_tcp_accept_t acc;
} acceptor_t;

static weft_poll_t acceptor_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    acceptor_t *a = state;
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
        weft_tcp_set_nodelay(a->s, true);
        /* The task state holds the buffer: one allocation per connection. */
        static _Thread_local echo_conn_t init;
        init.s = a->s;
        int rc = weft_spawn(weft_runtime_current(), &echo_vt, &init, sizeof init, NULL);
        if (rc != 0)
            weft_tcp_close(a->s);
    }
}

static void acceptor_drop(void *state)
{
    acceptor_t *a = state;
    if (a->live)
        weft_tcp_accept_vtable.drop(&a->acc);
    a->live = false;
}

static const weft_future_vtable_t acceptor_vt = {acceptor_poll, acceptor_drop, "w10_accept"};

/* ---- coroutines ----------------------------------------------------------------------------- */

static int echo_coro(void *arg)
{
    weft_tcp_stream_t *s = arg;
    char *buf = malloc(BUF); /* off the coroutine stack, like the stackless buffer */
    int n;
    while (buf && (n = weft_tcp_read(s, buf, BUF, WEFT_FOREVER)) > 0)
        if (weft_tcp_write_all(s, buf, (size_t)n, WEFT_FOREVER, NULL) < 0)
            break;
    free(buf);
    weft_tcp_close(s);
    return 0;
}

static int acceptor_coro(void *arg)
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
        weft_tcp_set_nodelay(s, true);
        if (weft_spawn_coro(weft_runtime_current(), echo_coro, s, NULL, NULL) != 0)
            weft_tcp_close(s);
    }
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    unsigned workers = weft_default_workers();
    long port = -1;
    int coro = 0, npos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--coro") == 0) {
            coro = 1;
        } else if (strcmp(argv[i], "--stackless") == 0) {
            coro = 0;
        } else {
            char *end;
            long v = strtol(argv[i], &end, 10);
            if (*end || (npos == 0 && (v < 1 || v > WEFT_MAX_WORKERS)) ||
                (npos == 1 && (v < 0 || v > 65535)) || npos > 1) {
                fprintf(stderr, "usage: w10_tcp_echo_server <workers> <port> [--coro]\n");
                return 2;
            }
            if (npos++ == 0)
                workers = (unsigned)v;
            else
                port = v;
        }
    }
    if (port < 0) {
        fprintf(stderr, "usage: w10_tcp_echo_server <workers> <port> [--coro]\n");
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
    weft_config_init(&cfg);
    cfg.workers = workers;
    weft_runtime_t *rt;
    int rc = weft_runtime_new(&cfg, &rt);
    if (rc != 0)
        die("weft_runtime_new", rc);

    char text[32];
    snprintf(text, sizeof text, "127.0.0.1:%ld", port);
    struct sockaddr_storage addr;
    socklen_t alen;
    weft_addr_parse(text, &addr, &alen);
    weft_tcp_listener_t *l;
    rc = weft_tcp_listen(rt, (struct sockaddr *)&addr, alen, 1024, &l);
    if (rc != 0)
        die("listen", rc);

    if (coro) {
        rc = weft_spawn_coro(rt, acceptor_coro, l, NULL, NULL);
    } else {
        acceptor_t a = {l, false, NULL, {0}};
        rc = weft_spawn(rt, &acceptor_vt, &a, sizeof a, NULL);
    }
    if (rc != 0)
        die("spawn", rc);
    printf("READY\n");
    fflush(stdout);

    int sig;
    sigwait(&sigs, &sig);
    weft_runtime_shutdown(rt, weft_now() + 2000000000LL);
    weft_tcp_listener_close(l);
    rc = weft_runtime_free(rt);
    if (rc != 0)
        die("weft_runtime_free", rc);
    return 0;
}
