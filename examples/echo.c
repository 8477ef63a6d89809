/*
 * echo.c - a TCP echo server and a client in one program, both coroutine
 * tasks on one runtime, over 127.0.0.1 (the README's I/O example; ctest
 * runs it). The client sends three lines a few milliseconds apart and
 * checks each echo; the server serves one connection until end of stream.
 */
#include <stdio.h>
#include <string.h>

#include <weft.h>

#define SEC 1000000000LL

static int serve(void *arg)
{
    weft_tcp_listener_t *l = arg;
    weft_tcp_stream_t *s;
    int rc = weft_tcp_accept(l, &s, NULL, weft_now() + 5 * SEC);
    if (rc != 0)
        return rc;
    char buf[256];
    int n;
    while ((n = weft_tcp_read(s, buf, sizeof buf, weft_now() + 5 * SEC)) > 0) {
        size_t done;
        if ((rc = weft_tcp_write_all(s, buf, (size_t)n, weft_now() + 5 * SEC, &done)) != 0)
            break;
    }
    weft_tcp_close(s);
    return n < 0 ? n : rc;
}

static int client(void *arg)
{
    (void)arg;
    weft_runtime_t *rt = weft_runtime_current();
    struct sockaddr_storage addr;
    socklen_t len;
    weft_addr_parse("127.0.0.1:0", &addr, &len);
    weft_tcp_listener_t *l;
    int rc = weft_tcp_listen(rt, (struct sockaddr *)&addr, len, 16, &l);
    if (rc != 0)
        return rc;
    weft_tcp_listener_local_addr(l, &addr); /* the port the kernel chose */
    weft_task_t *server;
    weft_spawn_coro(rt, serve, l, NULL, &server);

    weft_tcp_stream_t *s;
    if ((rc = weft_tcp_connect(rt, (struct sockaddr *)&addr, len, weft_now() + SEC, &s)) != 0)
        return rc;
    const char *lines[] = {"one\n", "two\n", "three\n"};
    for (int i = 0; i < 3 && rc == 0; i++) {
        size_t n = strlen(lines[i]), done;
        char back[16] = {0};
        weft_sleep_for(5000000); /* 5 ms: a timer, not a blocked thread */
        rc = weft_tcp_write_all(s, lines[i], n, weft_now() + SEC, &done);
        if (rc == 0)
            rc = weft_tcp_read_exact(s, back, n, weft_now() + SEC, &done);
        if (rc == 0 && memcmp(back, lines[i], n) != 0)
            rc = -EPROTO;
        if (rc == 0)
            printf("echoed %s", back);
    }
    weft_tcp_shutdown(s, WEFT_SHUT_WR); /* the server reads end of stream */
    int64_t srv = -1;
    weft_join(server, &srv);
    weft_tcp_close(s);
    weft_tcp_listener_close(l);
    return rc != 0 ? rc : (int)srv;
}

int main(void)
{
    weft_runtime_t *rt;
    int rc = weft_runtime_new(NULL, &rt);
    if (rc != 0)
        return 1;
    int result = -1;
    rc = weft_runtime_run_coro(rt, client, NULL, NULL, &result);
    weft_runtime_shutdown(rt, weft_now() + SEC);
    weft_runtime_free(rt);
    if (rc != 0 || result != 0) {
        fprintf(stderr, "echo: %s / %s\n", weft_strerror(rc), weft_strerror(result));
        return 1;
    }
    return 0;
}
