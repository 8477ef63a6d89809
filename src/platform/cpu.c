/*
 * cpu.c - how many CPUs this process may use, which ones, and binding a
 * thread to one.
 *
 * Owns: weft__cpu_count, which sizes the default worker pool;
 * weft__cpu_allowed (the affinity mask as a list) and weft__thread_pin,
 * for weft_config_t.pin_workers / cpus.
 *
 * The answer is the number of CPUs in the affinity mask (taskset, cpusets),
 * lowered to ceil(quota / period) when a cgroup CPU bandwidth limit applies
 * (docker --cpus, Kubernetes limits, systemd CPUQuota). cgroup v2 is read
 * from cpu.max ("<quota> <period>" or "max <period>"); only when v2 sets no
 * limit is cgroup v1 read from cpu.cfs_quota_us / cpu.cfs_period_us (quota
 * -1: none). For each version the process's own cgroup (from
 * /proc/self/cgroup) and every ancestor up to the mount point are checked
 * and the tightest limit wins; this also finds the limit inside a container
 * whose /proc/self/cgroup names a path that is not visible in its mount.
 *
 * Invariants: weft__cpu_count never fails and never returns 0; a missing
 * or unreadable file means "no limit from there". Called rarely (runtime
 * creation), so it reads files with stdio and does not cache. Every
 * function here preserves errno.
 */
#include "platform/platform.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CGROUP_ROOT "/sys/fs/cgroup"
#define CGROUP_V1_CPU CGROUP_ROOT "/cpu"

int weft__cpu_allowed(unsigned **cpus, unsigned *n)
{
    int saved = errno, rc = -EINVAL;
    /* Start at glibc's fixed cpu_set_t; grow while the kernel says the mask
     * is too small (EINVAL) for machines with more CPUs than that. */
    for (int max = CPU_SETSIZE; max <= (1 << 16); max *= 2) {
        size_t size = CPU_ALLOC_SIZE(max);
        cpu_set_t *set = CPU_ALLOC(max);
        if (set == NULL) {
            rc = -ENOMEM;
            break;
        }
        if (sched_getaffinity(0, size, set) != 0) {
            rc = -errno;
            CPU_FREE(set);
            if (rc == -EINVAL)
                continue; /* more CPUs than the mask holds: grow it */
            break;
        }
        unsigned count = (unsigned)CPU_COUNT_S(size, set), k = 0;
        unsigned *v = malloc((count ? count : 1) * sizeof *v);
        if (v != NULL)
            for (int c = 0; c < max && k < count; c++)
                if (CPU_ISSET_S(c, size, set))
                    v[k++] = (unsigned)c;
        CPU_FREE(set);
        if (v == NULL) {
            rc = -ENOMEM;
            break;
        }
        *cpus = v;
        *n = k;
        rc = 0;
        break;
    }
    errno = saved;
    return rc;
}

static unsigned affinity_count(void)
{
    unsigned *cpus, n;
    if (weft__cpu_allowed(&cpus, &n) == 0) {
        free(cpus);
        if (n > 0)
            return n;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (unsigned)online : 1;
}

int weft__thread_pin(unsigned cpu)
{
    int saved = errno;
    size_t size = CPU_ALLOC_SIZE(cpu + 1);
    cpu_set_t *set = CPU_ALLOC(cpu + 1);
    int rc = -ENOMEM;
    if (set != NULL) {
        CPU_ZERO_S(size, set);
        CPU_SET_S(cpu, size, set);
        rc = -pthread_setaffinity_np(pthread_self(), size, set);
        CPU_FREE(set);
    }
    errno = saved;
    return rc;
}

/* ceil(quota / period) as a CPU count; 0 for "no limit". */
static unsigned quota_cpus(long long quota, long long period)
{
    if (quota <= 0 || period <= 0)
        return 0;
    long long cpus = quota / period + (quota % period != 0);
    return cpus > UINT_MAX ? UINT_MAX : (unsigned)cpus;
}

/*
 * Reads up to n whitespace-separated integers from dir/name into vals, "max"
 * reading as -1. Returns how many were read (0 if the file is missing).
 */
static int read_values(const char *dir, const char *name, long long *vals, int n)
{
    char path[PATH_MAX], word[32];
    FILE *f;
    int i = 0;

    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return 0;
    f = fopen(path, "re");
    if (f == NULL)
        return 0;
    for (; i < n && fscanf(f, "%31s", word) == 1; i++) {
        char *end;

        if (strcmp(word, "max") == 0) {
            vals[i] = -1;
            continue;
        }
        vals[i] = strtoll(word, &end, 10);
        if (end == word || *end != '\0')
            break;
    }
    fclose(f);
    return i;
}

/* The limit set in one cgroup directory; 0 for none. */
static unsigned dir_limit(const char *dir, int v2)
{
    long long v[2];

    if (v2)
        return read_values(dir, "cpu.max", v, 2) == 2 ? quota_cpus(v[0], v[1]) : 0;
    if (read_values(dir, "cpu.cfs_quota_us", &v[0], 1) != 1 ||
        read_values(dir, "cpu.cfs_period_us", &v[1], 1) != 1)
        return 0;
    return quota_cpus(v[0], v[1]);
}

/*
 * The path of this process's cgroup for v2 (the "0::" line) or for v1's cpu
 * controller, from /proc/self/cgroup, into buf; "" if none is listed.
 */
static void own_cgroup(int v2, char *buf, size_t size)
{
    char line[PATH_MAX + 128];
    FILE *f = fopen("/proc/self/cgroup", "re");

    buf[0] = '\0';
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f) != NULL) {
        char *ctl = strchr(line, ':');
        char *path = ctl != NULL ? strchr(ctl + 1, ':') : NULL;
        int match = 0;

        if (path == NULL)
            continue;
        *ctl++ = '\0';
        *path++ = '\0';
        path[strcspn(path, "\n")] = '\0';
        if (v2) {
            match = strcmp(line, "0") == 0 && ctl[0] == '\0';
        } else {
            for (char *save, *tok = strtok_r(ctl, ",", &save); tok != NULL;
                 tok = strtok_r(NULL, ",", &save))
                match |= strcmp(tok, "cpu") == 0;
        }
        if (match && strlen(path) < size) {
            strcpy(buf, path);
            break;
        }
    }
    fclose(f);
}

/* The tightest limit from the process's cgroup up to the mount point. */
static unsigned cgroup_limit(int v2)
{
    const char *mount = v2 ? CGROUP_ROOT : CGROUP_V1_CPU;
    size_t base = strlen(mount);
    char own[PATH_MAX], dir[PATH_MAX];
    unsigned best = 0;

    own_cgroup(v2, own, sizeof own);
    if ((size_t)snprintf(dir, sizeof dir, "%s%s", mount, own) >= sizeof dir)
        snprintf(dir, sizeof dir, "%s", mount);
    for (;;) {
        size_t len = strlen(dir);
        unsigned lim;

        while (len > base && dir[len - 1] == '/')
            dir[--len] = '\0';
        lim = dir_limit(dir, v2);
        if (lim != 0 && (best == 0 || lim < best))
            best = lim;
        char *slash = strrchr(dir, '/');
        if (len <= base || slash == NULL || (size_t)(slash - dir) < base)
            break;
        *slash = '\0';
    }
    return best;
}

unsigned weft__cpu_count(void)
{
    int saved = errno;
    unsigned n = affinity_count();
    unsigned lim = cgroup_limit(1);

    if (lim == 0)
        lim = cgroup_limit(0);
    if (lim != 0 && lim < n)
        n = lim;
    errno = saved;
    return n > 0 ? n : 1;
}
