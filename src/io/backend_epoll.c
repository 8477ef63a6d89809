/*
 * backend_epoll.c - the epoll backend: one epoll instance, every fd added
 * once with EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP | EPOLLET, and an eventfd
 * (level-triggered, token WEFT__TOKEN_WAKE) that wake() writes.
 *
 * Invariants: the event buffer is used only by the thread that holds the
 * driver's poll_lock (wait is called by it alone). The eventfd is drained by wait before the wake
 * is reported, so a wake written after that read makes the next wait return.
 */
#include <errno.h>
#include <stdlib.h>

#include "io/backend.h"
#include "platform/platform.h"

#define EP_BATCH 1024

typedef struct ep {
    int epfd;
    int evfd;
    weft__epoll_event_t evs[EP_BATCH];
} ep_t;

static int ep_create(void **out)
{
    ep_t *e = malloc(sizeof *e);
    if (!e)
        return -ENOMEM;
    e->epfd = weft__epoll_create();
    if (e->epfd < 0) {
        int rc = e->epfd;
        free(e);
        return rc;
    }
    e->evfd = weft__eventfd_create();
    int rc = e->evfd < 0 ? e->evfd
                         : weft__epoll_ctl(e->epfd, WEFT__EPOLL_ADD, e->evfd, WEFT__EP_IN,
                                           WEFT__TOKEN_WAKE);
    if (rc != 0) {
        if (e->evfd >= 0)
            weft__fd_close(e->evfd);
        weft__fd_close(e->epfd);
        free(e);
        return rc;
    }
    *out = e;
    return 0;
}

static void ep_destroy(void *be)
{
    ep_t *e = be;
    weft__fd_close(e->evfd);
    weft__fd_close(e->epfd);
    free(e);
}

#define EP_INTEREST (WEFT__EP_IN | WEFT__EP_PRI | WEFT__EP_OUT | WEFT__EP_RDHUP | WEFT__EP_ET)

static int ep_add(void *be, int fd, uint64_t token)
{
    return weft__epoll_ctl(((ep_t *)be)->epfd, WEFT__EPOLL_ADD, fd, EP_INTEREST, token);
}

static int ep_modify(void *be, int fd, uint64_t token)
{
    return weft__epoll_ctl(((ep_t *)be)->epfd, WEFT__EPOLL_MOD, fd, EP_INTEREST, token);
}

static int ep_del(void *be, int fd)
{
    return weft__epoll_ctl(((ep_t *)be)->epfd, WEFT__EPOLL_DEL, fd, 0, 0);
}

static int ep_wait(void *be, weft__io_event_t *evs, int max, int64_t timeout_ns)
{
    ep_t *e = be;
    if (max > EP_BATCH)
        max = EP_BATCH;
    int n = weft__epoll_wait(e->epfd, e->evs, max, timeout_ns);
    for (int i = 0; i < n; i++) {
        uint32_t k = e->evs[i].events;
        uint64_t token = e->evs[i].data;
        uint32_t r = 0;
        if (token == WEFT__TOKEN_WAKE)
            weft__eventfd_drain(e->evfd);
        /* A hang-up or an error wakes both directions: the next read or
         * write reports it. */
        if (k & (WEFT__EP_IN | WEFT__EP_RDHUP | WEFT__EP_HUP | WEFT__EP_ERR))
            r |= WEFT__RD;
        if (k & (WEFT__EP_OUT | WEFT__EP_HUP | WEFT__EP_ERR))
            r |= WEFT__WR;
        if (k & (WEFT__EP_RDHUP | WEFT__EP_HUP | WEFT__EP_ERR))
            r |= WEFT__HUP;
        /* Urgent data (TCP): a read stops short at its mark with more
         * data queued behind it, so a short read no longer says drained
         * (net/stream.c). Wakes nobody by itself. */
        if (k & WEFT__EP_PRI)
            r |= WEFT__PRI;
        evs[i].token = token;
        evs[i].ready = r;
    }
    return n;
}

static void ep_wake(void *be)
{
    weft__eventfd_signal(((ep_t *)be)->evfd);
}

const weft__backend_ops_t weft__backend_epoll = {
    .name = "epoll",
    .create = ep_create,
    .destroy = ep_destroy,
    .add = ep_add,
    .modify = ep_modify,
    .del = ep_del,
    .wait = ep_wait,
    .wake = ep_wake,
};
