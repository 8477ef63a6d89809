/*
 * W10 tcp_echo server: `w10_tcp_echo_server <workers> <port> [--coro|--coro-pinned|--stackless]`.
 *
 * Listens on 127.0.0.1:<port> only, prints READY once listening, then
 * echoes every byte back on every connection until SIGTERM (or SIGINT):
 * one task per connection, a 4 KiB buffer per connection, read then
 * write-all, TCP_NODELAY on accepted sockets - the same program as
 * peers/tokio/src/bin/w10_tcp_echo_server.rs. The load is
 * peers/client/echo_client or bench/load_echo (see WORKLOADS.md); this
 * program prints no RESULT line.
 *
 * Default: stackless tasks (runtime label weft); --coro: migratable
 * coroutine tasks (weft-coro); --coro-pinned: pinned ones (server.h says
 * why). On SIGTERM: shut the runtime down (every connection task is
 * cancelled and closes its stream), close the listener, exit 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define BUF 4096

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

/* ---- main ----------------------------------------------------------------------------------- */

/* Spawn the connection's task; it owns s (server.h). */
static int start(weft_tcp_stream_t *s, int coro)
{
    if (coro)
        return bench_spawn_conn_coro(echo_coro, s, coro);
    /* The task state holds the buffer: one allocation per connection. */
    static _Thread_local echo_conn_t init;
    init.s = s;
    return weft_spawn(weft_runtime_current(), &echo_vt, &init, sizeof init, NULL);
}

int main(int argc, char **argv)
{
    return bench_server_main(argc, argv, "w10_tcp_echo_server", start);
}
