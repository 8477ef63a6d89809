/*
 * backend.h - the seam between the driver and the kernel's readiness API.
 *
 * A backend watches fds for readiness, edge-triggered, both directions at
 * once, each fd under a 64-bit token chosen by the driver; and it can be
 * woken from any thread. Today there is one backend, epoll
 * (backend_epoll.c); an io_uring one would implement the same six calls.
 *
 * Contract: add/modify/del may be called from any thread, concurrently
 * with wait (epoll_ctl is thread-safe). wait is called by the driver
 * thread only. wake may be called from any thread and makes the current or
 * next wait return; the driver de-duplicates wakes itself. Events for the
 * wake are reported with token WEFT__TOKEN_WAKE (the backend has already
 * consumed the wake when it reports it).
 */
#ifndef WEFT_IO_BACKEND_H
#define WEFT_IO_BACKEND_H

#include <stdint.h>

#define WEFT__TOKEN_WAKE UINT64_MAX

/* Readiness bits reported by a backend (and kept per source). */
#define WEFT__RD 1u     /* readable, or read-side hang-up */
#define WEFT__WR 2u     /* writable, or an error / full hang-up */
#define WEFT__CLOSED 4u /* the source was deregistered */
#define WEFT__HUP 8u    /* peer hang-up or error seen: sticky, never cleared */
#define WEFT__PRI 16u   /* urgent data or another exceptional condition seen: sticky */

typedef struct weft__io_event {
    uint64_t token;
    uint32_t ready; /* WEFT__RD | WEFT__WR | WEFT__HUP | WEFT__PRI */
} weft__io_event_t;

typedef struct weft__backend_ops {
    const char *name;
    /* 0 or -errno; *out is the backend's state. */
    int (*create)(void **out);
    void (*destroy)(void *be);
    int (*add)(void *be, int fd, uint64_t token);
    int (*modify)(void *be, int fd, uint64_t token);
    int (*del)(void *be, int fd);
    /* Up to max events; timeout_ns < 0: no limit. Count, 0, or -errno. */
    int (*wait)(void *be, weft__io_event_t *evs, int max, int64_t timeout_ns);
    void (*wake)(void *be);
} weft__backend_ops_t;

extern const weft__backend_ops_t weft__backend_epoll;

#endif /* WEFT_IO_BACKEND_H */
