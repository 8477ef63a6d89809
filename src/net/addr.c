/*
 * addr.c - numeric socket addresses as text: "a.b.c.d:port",
 * "[v6]:port", "[v6%scope]:port", both ways.
 *
 * Owns nothing; pure functions over sockaddr_in / sockaddr_in6 (inet_pton
 * and inet_ntop are libc conversions, not system calls). Invariants: parse
 * accepts only what format writes (plus any valid inet_pton spelling of the
 * address), never looks a name up, and zeroes the whole sockaddr_storage it
 * fills; format always NUL-terminates when it returns >= 0.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <weft/net.h>

/* Decimal digits of [s, e) as a number <= max, or -1. */
static long parse_num(const char *s, const char *e, long max)
{
    if (s == e || e - s > 10)
        return -1;
    long v = 0;
    for (const char *p = s; p < e; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > max)
            return -1;
    }
    return v;
}

int weft_addr_parse(const char *text, struct sockaddr_storage *out, socklen_t *len)
{
    if (!text || !out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    char host[INET6_ADDRSTRLEN];
    const char *colon;
    long scope = 0;
    bool v6 = text[0] == '[';
    if (v6) {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        colon = close + 1;
        const char *pct = memchr(text + 1, '%', (size_t)(close - text - 1));
        const char *hend = pct ? pct : close;
        if (pct && (scope = parse_num(pct + 1, close, UINT32_MAX)) < 0)
            return -EINVAL;
        size_t hlen = (size_t)(hend - (text + 1));
        if (hlen == 0 || hlen >= sizeof host)
            return -EINVAL;
        memcpy(host, text + 1, hlen);
        host[hlen] = '\0';
    } else {
        colon = strrchr(text, ':');
        if (!colon)
            return -EINVAL;
        size_t hlen = (size_t)(colon - text);
        if (hlen == 0 || hlen >= sizeof host)
            return -EINVAL;
        memcpy(host, text, hlen);
        host[hlen] = '\0';
    }
    long port = parse_num(colon + 1, colon + 1 + strlen(colon + 1), 65535);
    if (port < 0)
        return -EINVAL;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -EINVAL;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_scope_id = (uint32_t)scope;
        if (len)
            *len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)out;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -EINVAL;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (len)
            *len = sizeof *a;
    }
    return 0;
}

int weft_addr_format(const struct sockaddr *addr, char *buf, size_t cap)
{
    if (!addr || !buf)
        return -EINVAL;
    char host[INET6_ADDRSTRLEN];
    int n;
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
        if (!inet_ntop(AF_INET, &a->sin_addr, host, sizeof host))
            return -EINVAL;
        n = snprintf(buf, cap, "%s:%u", host, (unsigned)ntohs(a->sin_port));
    } else if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
        if (!inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host))
            return -EINVAL;
        if (a->sin6_scope_id)
            n = snprintf(buf, cap, "[%s%%%u]:%u", host, (unsigned)a->sin6_scope_id,
                         (unsigned)ntohs(a->sin6_port));
        else
            n = snprintf(buf, cap, "[%s]:%u", host, (unsigned)ntohs(a->sin6_port));
    } else {
        return -EINVAL;
    }
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= cap) {
        if (cap > 0)
            buf[0] = '\0';
        return -ENOSPC;
    }
    return n;
}

socklen_t weft_addr_len(const struct sockaddr *addr)
{
    if (!addr)
        return 0;
    if (addr->sa_family == AF_INET)
        return sizeof(struct sockaddr_in);
    if (addr->sa_family == AF_INET6)
        return sizeof(struct sockaddr_in6);
    return 0;
}

int weft_addr_port(const struct sockaddr *addr)
{
    if (!addr)
        return -EINVAL;
    if (addr->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)addr)->sin_port);
    if (addr->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
    return -EINVAL;
}
