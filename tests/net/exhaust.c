/*
 * net/exhaust.c - accept under descriptor exhaustion. A forked child runs
 * an echo server with RLIMIT_NOFILE lowered so that only a few
 * connections fit; the parent opens many more, each sending one message,
 * and keeps the answered ones open until the server reports (through its
 * on_exhaustion callback and a pipe) that its accepts fail with EMFILE and
 * answers stop, then closes them. The server must
 * back off (each failure is followed by a sleep: the failure count stays
 * below the milliseconds elapsed, instead of the millions a spinning
 * accept would rack up), count and report the failures, and answer every
 * connection once descriptors come back. Two more children have no fd at
 * all: with fail_on_exhaustion the accept reports -EMFILE at once, and a
 * back-off cut short by the accept's deadline is still counted.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "net/nt.h"

#define CONNS 60
#define SLOTS 12 /* fds the child has beyond what it holds before serving */
#define MSG 8

typedef struct report {
    int rc;
    uint64_t accepted, exhausted, backoff_ns;
    int last_error;
    int callbacks;
    int64_t elapsed_ms;
    int errors;
} report_t;

static _Atomic int callbacks;
static int notify_fd = -1; /* child -> parent: "an accept just ran out of fds" */

static void on_exhaustion(weft_tcp_listener_t *l, int err, int64_t backoff_ns, void *arg)
{
    (void)l;
    (void)arg;
    if ((err == -EMFILE || err == -ENFILE) && backoff_ns > 0)
        atomic_fetch_add(&callbacks, 1);
    char b = 'x';
    if (write(notify_fd, &b, 1) < 0) {
        /* a full pipe already says it */
    }
}

/* Highest open fd number (listing /proc/self/fd uses one fd itself). */
static int max_open_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 1024;
    int max = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (atoi(e->d_name) > max)
            max = atoi(e->d_name);
    closedir(d);
    return max;
}

static bool served_all(void *arg)
{
    nt_server_t *sv = arg;
    return atomic_load(&sv->finished) == CONNS;
}

static void child(int wfd)
{
    alarm(60); /* whatever happens, the child ends */
    int64_t t0 = weft_now();
    report_t r = {0};
    weft_runtime_t *rt = wt_runtime(2);
    struct sockaddr_storage a;
    socklen_t alen;
    nt_loopback(AF_INET, &a, &alen);
    weft_tcp_listen_opts_t o = WEFT_TCP_LISTEN_OPTS_INIT;
    o.backlog = 256;
    o.on_exhaustion = on_exhaustion;
    weft_tcp_listener_t *l;
    if ((r.rc = weft_tcp_listen_with(rt, (struct sockaddr *)&a, alen, &o, &l)) != 0)
        goto out;
    weft_tcp_listener_local_addr(l, &a);
    int port = weft_addr_port((struct sockaddr *)&a);

    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = (rlim_t)max_open_fd() + 1 + SLOTS;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
        r.rc = -errno;
        goto out;
    }
    if (write(wfd, &port, sizeof port) != sizeof port)
        _exit(3);

    nt_server_t sv;
    nt_server_init(&sv, l, CONNS);
    weft_task_t *h;
    if ((r.rc = weft_spawn_coro(rt, nt_accept_loop, &sv, NULL, &h)) != 0)
        goto out;
    int64_t v = 0;
    r.rc = weft_task_join_wait(h, weft_now() + 45 * WT_SEC, &v);
    if (r.rc == 0)
        r.rc = atomic_load(&sv.accept_rc);
    if (r.rc == 0 && !wt_wait_until(served_all, &sv, 10 * WT_SEC))
        r.rc = -ETIMEDOUT;
    weft_tcp_listener_stats_t st;
    weft_tcp_listener_stats(l, &st);
    r.accepted = st.accepted;
    r.exhausted = st.exhausted;
    r.backoff_ns = st.backoff_ns;
    r.last_error = st.last_error;
    r.callbacks = atomic_load(&callbacks);
    r.errors = atomic_load(&sv.errors);
    weft_tcp_listener_close(l);
    wt_finish(rt);
out:
    r.elapsed_ms = (weft_now() - t0) / WT_MS;
    if (write(wfd, &r, sizeof r) != sizeof r)
        _exit(3);
    _exit(0);
}

/* Read exactly len bytes from fd within timeout_ms; true on success. */
static bool read_full(int fd, void *buf, size_t len, int timeout_ms)
{
    size_t got = 0;
    int64_t end = weft_now() + (int64_t)timeout_ms * WT_MS;
    while (got < len) {
        struct pollfd p = {fd, POLLIN, 0};
        int left = (int)((end - weft_now()) / WT_MS);
        if (left <= 0 || poll(&p, 1, left) <= 0)
            return false;
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

Test(net_exhaust, accept_backs_off_and_recovers, .timeout = 90)
{
    int p[2], nt[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(pipe2(nt, O_NONBLOCK), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        close(nt[0]);
        notify_fd = nt[1];
        child(p[1]);
    }
    close(p[1]);
    close(nt[1]);
    int port = 0;
    cr_assert(read_full(p[0], &port, sizeof port, 20000), "the child reports its port");

    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fds[CONNS];
    bool echoed[CONNS] = {false}, closed[CONNS] = {false};
    for (int i = 0; i < CONNS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fds[i], 0);
        /* Completes through the backlog even when the server cannot accept. */
        cr_assert_eq(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0, "connect %d: %d", i,
                     errno);
        char m[MSG + 1];
        snprintf(m, sizeof m, "ping%04d", i);
        cr_assert_eq(write(fds[i], m, MSG), MSG);
    }
    /* Collect echoes. Once the server reports running out of fds and no
     * echo has come for a moment, release the answered connections (their
     * server ends close, fds come back). A server that stalls for 10 s
     * without reporting is released too (and the counts below fail). */
    int answered = 0, releases = 0;
    bool out_of_fds = false;
    int64_t end = weft_now() + 60 * WT_SEC, last_progress = weft_now();
    while (answered < CONNS && weft_now() < end) {
        struct pollfd pf[CONNS];
        int idx[CONNS], n = 0;
        for (int i = 0; i < CONNS; i++)
            if (!echoed[i]) {
                pf[n] = (struct pollfd){fds[i], POLLIN, 0};
                idx[n++] = i;
            }
        char drain[256];
        while (read(nt[0], drain, sizeof drain) > 0)
            out_of_fds = true;
        int k = poll(pf, (nfds_t)n, 50);
        for (int j = 0; k > 0 && j < n; j++) {
            if (!(pf[j].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int i = idx[j];
            char m[MSG + 1], want[MSG + 1];
            snprintf(want, sizeof want, "ping%04d", i);
            cr_assert(read_full(fds[i], m, MSG, 5000), "echo %d", i);
            cr_assert_eq(memcmp(m, want, MSG), 0, "echo %d intact", i);
            echoed[i] = true;
            answered++;
            last_progress = weft_now();
        }
        int64_t idle = weft_now() - last_progress;
        if (answered < CONNS && ((out_of_fds && idle > 100 * WT_MS) || idle > 10 * WT_SEC)) {
            out_of_fds = false;
            int freed = 0;
            for (int i = 0; i < CONNS; i++)
                if (echoed[i] && !closed[i]) {
                    close(fds[i]);
                    closed[i] = true;
                    freed++;
                }
            if (freed)
                releases++;
            last_progress = weft_now();
        }
    }
    for (int i = 0; i < CONNS; i++)
        if (!closed[i])
            close(fds[i]);
    cr_expect_eq(answered, CONNS, "every connection is served in the end (%d)", answered);
    cr_expect_gt(releases, 0, "the server ran out of fds at some point");

    report_t r;
    bool got = read_full(p[0], &r, sizeof r, 30000);
    close(p[0]);
    int status = 0;
    if (!got)
        kill(pid, SIGKILL);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(got, "the child reports");
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    cr_log_info("exhausted %llu times, %lld ms backing off, %d reports, %d releases, %lld ms",
                (unsigned long long)r.exhausted, (long long)(r.backoff_ns / WT_MS), r.callbacks,
                releases, (long long)r.elapsed_ms);
    cr_expect_eq(r.rc, 0, "child: %d (%s)", r.rc, weft_strerror(r.rc));
    cr_expect_eq(r.accepted, CONNS);
    cr_expect_gt(r.exhausted, 0, "exhaustion was counted");
    cr_expect(r.last_error == -EMFILE || r.last_error == -ENFILE, "last error %d", r.last_error);
    cr_expect_gt(r.callbacks, 0, "and reported");
    cr_expect_gt(r.backoff_ns, 0);
    /* Each failure is followed by a sleep of at least 1 ms (timers never
     * fire early): a spinning accept would fail millions of times. */
    cr_expect_leq(r.exhausted, (uint64_t)r.elapsed_ms + CONNS, "%llu failures in %lld ms",
                  (unsigned long long)r.exhausted, (long long)r.elapsed_ms);
    cr_expect_eq(r.errors, 0);
}

/*
 * A child with no descriptor left at all runs `run` (a coroutine given the
 * listener, made with `o`) while the parent keeps one connection queued,
 * then reports {rc1, rc2, exhausted, reports, backoff_ns} through the pipe.
 */
typedef struct fail_child {
    weft_tcp_listener_t *l;
    int rc1, rc2;
} fail_child_t;

static _Atomic int fail_reports;

static void no_fd_child(int wfd, weft_tcp_listen_opts_t *o, int (*run)(void *))
{
    alarm(60);
    weft_runtime_t *rt = wt_runtime(1);
    struct sockaddr_storage a;
    socklen_t alen;
    nt_loopback(AF_INET, &a, &alen);
    fail_child_t f = {NULL, 1, 1};
    int rc = weft_tcp_listen_with(rt, (struct sockaddr *)&a, alen, o, &f.l);
    if (rc != 0)
        _exit(10);
    weft_tcp_listener_local_addr(f.l, &a);
    int port = weft_addr_port((struct sockaddr *)&a);
    /* No fd left at all. */
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = (rlim_t)max_open_fd() + 1;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0)
        _exit(11);
    while (dup(0) >= 0) {
        /* fill the holes below the limit: not a single fd is left */
    }
    if (write(wfd, &port, sizeof port) != sizeof port)
        _exit(12);
    int result = 0;
    if (weft_runtime_run_coro(rt, run, &f, NULL, &result) != 0)
        _exit(13);
    weft_tcp_listener_stats_t st;
    weft_tcp_listener_stats(f.l, &st);
    int64_t report[5] = {f.rc1, f.rc2, (int64_t)st.exhausted, atomic_load(&fail_reports),
                         (int64_t)st.backoff_ns};
    weft_tcp_listener_close(f.l);
    wt_finish(rt);
    if (write(wfd, report, sizeof report) != sizeof report)
        _exit(14);
    _exit(0);
}

/* Fork the child, connect once to the port it reports, collect its report. */
static void run_no_fd_child(weft_tcp_listen_opts_t *o, int (*run)(void *), int64_t report[5])
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        no_fd_child(p[1], o, run);
    }
    close(p[1]);
    int port = 0;
    cr_assert(read_full(p[0], &port, sizeof port, 20000), "the child reports its port");
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    bool got = read_full(p[0], report, 5 * sizeof report[0], 30000);
    close(p[0]);
    close(fd);
    int status = 0;
    if (!got)
        kill(pid, SIGKILL);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(got, "the child reports (status %d)", status);
}

/*
 * fail_on_exhaustion: the accept reports -EMFILE (after counting it and
 * calling on_exhaustion with no back-off) instead of sleeping; the
 * connection stays queued and is accepted once an fd is free.
 */
static int accept_twice(void *arg)
{
    fail_child_t *f = arg;
    weft_tcp_stream_t *s = NULL;
    f->rc1 = weft_tcp_accept(f->l, &s, NULL, weft_now() + 20 * WT_SEC);
    if (f->rc1 == 0)
        weft_tcp_close(s);
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur += 4; /* fds come back */
    setrlimit(RLIMIT_NOFILE, &lim);
    f->rc2 = weft_tcp_accept(f->l, &s, NULL, weft_now() + 20 * WT_SEC);
    if (f->rc2 == 0)
        weft_tcp_close(s);
    return 0;
}

static void on_fail(weft_tcp_listener_t *l, int err, int64_t backoff_ns, void *arg)
{
    (void)l;
    (void)arg;
    if (err == -EMFILE && backoff_ns == 0)
        atomic_fetch_add(&fail_reports, 1);
}

Test(net_exhaust, fail_on_exhaustion_reports, .timeout = 60)
{
    weft_tcp_listen_opts_t o = WEFT_TCP_LISTEN_OPTS_INIT;
    o.fail_on_exhaustion = true;
    o.on_exhaustion = on_fail;
    int64_t report[5] = {1, 1, -1, -1, -1};
    run_no_fd_child(&o, accept_twice, report);
    cr_expect_eq(report[0], -EMFILE, "first accept: %lld", (long long)report[0]);
    cr_expect_eq(report[1], 0, "second accept, with fds back: %lld", (long long)report[1]);
    cr_expect_eq(report[2], 1, "counted once");
    cr_expect_eq(report[3], 1, "reported once, with no back-off");
}

/*
 * A back-off cut short by the accept's deadline still counts the time it
 * slept in the statistics (no more than the back-off's length).
 */
#define LONG_BACKOFF (300 * WT_MS)

static int accept_until_deadline(void *arg)
{
    fail_child_t *f = arg;
    weft_tcp_stream_t *s = NULL;
    f->rc1 = weft_tcp_accept(f->l, &s, NULL, weft_now() + 50 * WT_MS);
    if (f->rc1 == 0)
        weft_tcp_close(s);
    return 0;
}

Test(net_exhaust, backoff_cut_short_is_counted, .timeout = 60)
{
    weft_tcp_listen_opts_t o = WEFT_TCP_LISTEN_OPTS_INIT;
    o.backoff_min_ns = o.backoff_max_ns = LONG_BACKOFF;
    int64_t report[5] = {1, 1, -1, -1, -1};
    run_no_fd_child(&o, accept_until_deadline, report);
    cr_expect_eq(report[0], -ETIMEDOUT, "the accept: %lld", (long long)report[0]);
    cr_expect_eq(report[2], 1, "exhausted once");
    cr_expect(report[4] > 0 && report[4] <= LONG_BACKOFF, "slept %lld ns of a %lld ns back-off",
              (long long)report[4], (long long)LONG_BACKOFF);
}
