/*
 * io/precise.c - the poller waits as precisely as the kernel allows: its
 * timeouts go to epoll_pwait2 unrounded (not to epoll_wait, which rounds
 * up to whole milliseconds), and every thread that waits in it runs with
 * the low timer slack (platform.h). A silent fallback would not fail any
 * timing-free test, only cost W6 its lateness figures; this one fails.
 * Kernels before 5.11 have no epoll_pwait2: skipped there.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/utsname.h>

#include "common/wt.h"
#include "platform/platform.h"

static bool kernel_has_pwait2(void)
{
    struct utsname u;
    int major = 0, minor = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &major, &minor) != 2)
        return false;
    return major > 5 || (major == 5 && minor >= 11);
}

/* The timer slack of this process's thread whose name ends in "-io" (the
 * driver thread), or -1 if there is none. */
static long driver_thread_slack(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    long slack = -1;
    struct dirent *e;
    while (slack < 0 && (e = readdir(d))) {
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        bool io = fgets(comm, sizeof comm, f) && strlen(comm) > 4 &&
                  strcmp(comm + strlen(comm) - 4, "-io\n") == 0;
        fclose(f);
        if (!io)
            continue;
        snprintf(path, sizeof path, "/proc/%s/timerslack_ns", e->d_name); /* per thread */
        if ((f = fopen(path, "r"))) {
            if (fscanf(f, "%ld", &slack) != 1)
                slack = -1;
            fclose(f);
        }
    }
    closedir(d);
    return slack;
}

typedef struct probe {
    int slack_rc;
    long slack;
    int sleep_rc;
} probe_t;

static int sleeper(void *arg)
{
    probe_t *p = arg;
    /* The worker is the poller here (or the driver thread is): a short
     * sleep makes the poller wait with a timeout. */
    p->sleep_rc = weft_sleep_for(2 * WT_MS);
    p->slack = (long)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    p->slack_rc = p->slack < 0 ? -1 : 0;
    return 0;
}

Test(io_precise, unrounded_waits_and_low_timer_slack, .timeout = 30)
{
    if (!kernel_has_pwait2())
        cr_skip_test("kernel before 5.11: no epoll_pwait2");
    weft_runtime_t *rt = wt_runtime(1);
    probe_t p = {0};
    int result = -1;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(weft_runtime_run_coro(rt, sleeper, &p, NULL, &result), 0);
    cr_expect_eq(p.sleep_rc, 0);
    cr_expect(weft__epoll_precise(), "epoll_pwait2 failed with ENOSYS: waits are ms-rounded");
    const char *drv = getenv("WEFT_TEST_DRIVER");
    if (drv && strcmp(drv, "thread") == 0) {
        long slack = driver_thread_slack();
        cr_expect_eq(slack, WEFT__POLL_TIMER_SLACK_NS, "driver thread timer slack %ld", slack);
    } else {
        cr_expect_eq(p.slack, WEFT__POLL_TIMER_SLACK_NS, "worker timer slack %ld", p.slack);
    }
    cr_expect_eq(wt_finish(rt), 0);
}
