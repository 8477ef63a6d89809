/*
 * W11 http_hello server: `w11_http_server <workers> <port> [--coro|--coro-pinned|--stackless]`.
 *
 * A minimal HTTP/1.1 keep-alive responder on weft's TCP streams (no HTTP
 * library), the same program as peers/tokio/src/bin/w11_http_server.rs:
 * listens on 127.0.0.1:<port> only, prints READY once listening, and
 * answers every request (a header block ending in "\r\n\r\n"; GETs without
 * bodies) with a fixed 13-byte "Hello, World!" response. Several requests
 * arriving in one read (pipelining) are all answered, in order, with one
 * write; a partial request is kept until the rest arrives; a header block
 * over 64 KiB drops the connection. TCP_NODELAY on accepted sockets. Load:
 * `wrk -t1 -c64 -d5s --latency http://127.0.0.1:<port>/`; this program
 * prints no RESULT line. Runs until SIGTERM (or SIGINT), then shuts down
 * cleanly.
 *
 * Default: stackless tasks (runtime label weft); --coro: migratable
 * coroutine tasks (weft-coro); --coro-pinned: pinned ones (server.h says
 * why).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
#define RESPONSE_LEN (sizeof RESPONSE - 1)
#define BUF_INIT 4096
#define MAX_REQUEST (64 * 1024)

/* ---- the connection's buffers, shared by both kinds of task --------------------------------- */

typedef struct http_io {
    char *buf;
    size_t cap, filled; /* buf[0, filled) holds unparsed input */
    char *out;
    size_t out_cap, out_len; /* responses to write */
} http_io_t;

static bool http_io_init(http_io_t *h)
{
    h->buf = malloc(BUF_INIT);
    h->cap = BUF_INIT;
    h->filled = 0;
    h->out = malloc(RESPONSE_LEN * 4);
    h->out_cap = RESPONSE_LEN * 4;
    h->out_len = 0;
    return h->buf && h->out;
}

static void http_io_free(http_io_t *h)
{
    free(h->buf);
    free(h->out);
    h->buf = h->out = NULL;
}

/* Room to read into: false if the header block is too large (or no memory). */
static bool http_room(http_io_t *h)
{
    if (h->filled < h->cap)
        return true;
    if (h->cap >= MAX_REQUEST)
        return false;
    char *nb = realloc(h->buf, h->cap * 2);
    if (!nb)
        return false;
    h->buf = nb;
    h->cap *= 2;
    return true;
}

/*
 * n new bytes were read at buf[filled]: answer every complete request in
 * out (out_len), drop them from buf. False only without memory.
 */
static bool http_parse(http_io_t *h, size_t n)
{
    /* Resume a few bytes back so a terminator split across reads is found. */
    size_t scan = h->filled >= 3 ? h->filled - 3 : 0;
    h->filled += n;
    size_t consumed = 0;
    h->out_len = 0;
    while (h->filled - scan >= 4) {
        char *p = memmem(h->buf + scan, h->filled - scan, "\r\n\r\n", 4);
        if (!p)
            break;
        consumed = (size_t)(p - h->buf) + 4;
        scan = consumed;
        if (h->out_len + RESPONSE_LEN > h->out_cap) {
            char *no = realloc(h->out, h->out_cap * 2);
            if (!no)
                return false;
            h->out = no;
            h->out_cap *= 2;
        }
        memcpy(h->out + h->out_len, RESPONSE, RESPONSE_LEN);
        h->out_len += RESPONSE_LEN;
    }
    if (consumed > 0) {
        memmove(h->buf, h->buf + consumed, h->filled - consumed);
        h->filled -= consumed;
    }
    return true;
}

/* ---- stackless ------------------------------------------------------------------------------ */

typedef struct http_conn {
    weft_tcp_stream_t *s;
    bool writing, live;
    http_io_t io;
    weft_tcp_xfer_t op;
} http_conn_t;

static weft_poll_t http_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    http_conn_t *c = state;
    http_io_t *h = &c->io;
    if (!h->buf && !http_io_init(h))
        goto done;
    for (;;) {
        int64_t v = 0;
        if (!c->writing) {
            if (!c->live) {
                if (!http_room(h))
                    break;
                weft_tcp_read_init(&c->op, c->s, h->buf + h->filled, h->cap - h->filled,
                                   WEFT_FOREVER);
            }
            c->live = true;
            if (weft_tcp_read_vtable.poll(&c->op, cx, &v) == WEFT_PENDING)
                return WEFT_PENDING;
            weft_tcp_read_vtable.drop(&c->op);
            c->live = false;
            if (v <= 0 || !http_parse(h, (size_t)v))
                break;
            c->writing = h->out_len > 0;
        } else {
            if (!c->live)
                weft_tcp_write_all_init(&c->op, c->s, h->out, h->out_len, WEFT_FOREVER, NULL);
            c->live = true;
            if (weft_tcp_write_all_vtable.poll(&c->op, cx, &v) == WEFT_PENDING)
                return WEFT_PENDING;
            weft_tcp_write_all_vtable.drop(&c->op);
            c->live = false;
            if (v < 0)
                break;
            c->writing = false;
        }
    }
done:
    *out = 0;
    return WEFT_READY;
}

static void http_drop(void *state)
{
    http_conn_t *c = state;
    if (c->live)
        weft_tcp_read_vtable.drop(&c->op); /* one drop for every transfer future */
    c->live = false;
    http_io_free(&c->io);
    weft_tcp_close(c->s);
}

static const weft_future_vtable_t http_vt = {http_poll, http_drop, "w11_http"};

/* ---- coroutines ----------------------------------------------------------------------------- */

static int http_coro(void *arg)
{
    weft_tcp_stream_t *s = arg;
    http_io_t h;
    if (http_io_init(&h)) {
        for (;;) {
            if (!http_room(&h))
                break;
            int n = weft_tcp_read(s, h.buf + h.filled, h.cap - h.filled, WEFT_FOREVER);
            if (n <= 0 || !http_parse(&h, (size_t)n))
                break;
            if (h.out_len > 0 && weft_tcp_write_all(s, h.out, h.out_len, WEFT_FOREVER, NULL) < 0)
                break;
        }
    }
    http_io_free(&h);
    weft_tcp_close(s);
    return 0;
}

/* ---- main ----------------------------------------------------------------------------------- */

/* Spawn the connection's task; it owns s (server.h). */
static int start(weft_tcp_stream_t *s, int coro)
{
    if (coro)
        return bench_spawn_conn_coro(http_coro, s, coro);
    http_conn_t init = {.s = s}; /* buffers are allocated on the first poll */
    return weft_spawn(weft_runtime_current(), &http_vt, &init, sizeof init, NULL);
}

int main(int argc, char **argv)
{
    return bench_server_main(argc, argv, "w11_http_server", start);
}
