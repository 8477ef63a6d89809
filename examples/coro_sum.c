/*
 * examples/coro_sum.c - coroutine tasks: plain C functions that
 * suspend. A root coroutine starts workers that each yield a few times and
 * return a value, then joins them in order (README, "Coroutines").
 */
#include <stdio.h>

#include <weft.h>

static int worker(void *arg)
{
    int n = (int)(intptr_t)arg;
    int acc = 0;
    for (int i = 0; i < 3; i++) {
        acc += n;
        if (weft_yield() == -ECANCELED) /* every await reports a cancel */
            return -1;
    }
    return acc; /* the task's output */
}

static int root(void *arg)
{
    (void)arg;
    weft_runtime_t *rt = weft_runtime_current();
    weft_task_t *h[10];
    for (int i = 0; i < 10; i++) {
        weft_coro_opts_t o = WEFT_CORO_OPTS_INIT;
        o.name = "worker";
        if (weft_spawn_coro(rt, worker, (void *)(intptr_t)i, &o, &h[i]) != 0)
            return -1;
    }
    int sum = 0;
    for (int i = 0; i < 10; i++) {
        int64_t v;
        if (weft_join(h[i], &v) != 0) /* suspends this coroutine only */
            return -1;
        sum += (int)v;
    }
    return sum;
}

int main(void)
{
    weft_runtime_t *rt;
    if (weft_runtime_new(NULL, &rt) != 0)
        return 1;
    int sum = 0;
    int rc = weft_runtime_run_coro(rt, root, NULL, NULL, &sum);
    printf("sum = %d (rc %d)\n", sum, rc);
    weft_runtime_shutdown(rt, weft_now() + 1000000000);
    weft_runtime_free(rt);
    return rc == 0 && sum == 135 ? 0 : 1;
}
