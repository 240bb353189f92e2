/* target: locating the target process and reading its environment. */
#include "target.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *target_normalize_id(const char *raw)
{
    const char *sep = strstr(raw, "://");
    const char *id = sep ? sep + 3 : raw;
    size_t n = strlen(id);

    if (n == 0 || n > 128)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return NULL;
    }
    return id;
}

int target_resolve(const char *proc_root, const char *container_id, uint64_t pid, pid_t self, pid_t *out)
{
    *out = 1;
    if (container_id && *container_id) {
        const char *id = target_normalize_id(container_id);
        return id ? target_find_by_container_id(proc_root, id, self, out) : -EINVAL;
    }
    if (pid > INT_MAX)
        return -ERANGE;
    if (pid)
        *out = (pid_t)pid;
    return 0;
}

/* Reads a whole (small, procfs) file into a NUL-terminated heap buffer. */
static int read_file(const char *path, char **out, size_t *out_len)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int fd = -1, ret = 0;

    if (!buf)
        return -ENOMEM;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = -errno;
        goto out;
    }
    for (;;) {
        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                ret = -ENOMEM;
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    buf = NULL;
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return ret;
}

/* The prefixes runtimes put before a container id in a cgroup directory name:
 * "cri-containerd-<id>.scope" (containerd, systemd driver), "crio-<id>.scope"
 * or "crio-<id>" (CRI-O), "docker-<id>.scope" (Docker), "libpod-<id>.scope"
 * (Podman). The cgroupfs drivers of containerd and Docker use the bare id. */
static const char *const runtime_prefixes[] = {"cri-containerd-", "crio-", "docker-", "libpod-"};

/* One cgroup path component names the container id: "<id>", or a runtime
 * prefix + "<id>" with an optional ".scope" ("crio-conmon-<id>.scope", the
 * monitor next to a CRI-O container, is not the container). */
static int component_is_id(const char *c, size_t len, const char *id, size_t idlen)
{
    if (len >= 6 && memcmp(c + len - 6, ".scope", 6) == 0)
        len -= 6;
    if (len == idlen && memcmp(c, id, idlen) == 0)
        return 1;
    for (size_t i = 0; i < sizeof(runtime_prefixes) / sizeof(runtime_prefixes[0]); i++) {
        size_t pl = strlen(runtime_prefixes[i]);
        if (len == pl + idlen && memcmp(c, runtime_prefixes[i], pl) == 0 && memcmp(c + pl, id, idlen) == 0)
            return 1;
    }
    return 0;
}

/* Lines look like "hierarchy-id:controllers:path"; only the path is matched
 * (so an id never matches a controller name), one whole component at a time
 * (so an id never matches part of a longer id or of a pod uid). */
static int cgroup_has_id(const char *content, const char *id)
{
    const char *line = content;
    size_t idlen = strlen(id);

    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *c1 = memchr(line, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;

        for (const char *c = c2 ? c2 + 1 : line + len; c < line + len;) {
            const char *slash = memchr(c, '/', (size_t)(line + len - c));
            size_t clen = slash ? (size_t)(slash - c) : (size_t)(line + len - c);
            if (component_is_id(c, clen, id, idlen))
                return 1;
            c += clen + 1;
        }
        if (!end)
            break;
        line = end + 1;
    }
    return 0;
}

int target_find_by_container_id(const char *proc_root, const char *id, pid_t self, pid_t *out)
{
    DIR *d = opendir(proc_root);
    struct dirent *de;
    long best = -1;

    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        char *end, path[PATH_MAX], *content;
        size_t len;
        long pid = strtol(de->d_name, &end, 10);

        if (*end || end == de->d_name || pid <= 0 || pid == (long)self)
            continue;
        if (best != -1 && pid >= best)
            continue;
        snprintf(path, sizeof(path), "%s/%ld/cgroup", proc_root, pid);
        if (read_file(path, &content, &len) < 0)
            continue; /* exited meanwhile, or a kernel thread we may not read */
        if (cgroup_has_id(content, id))
            best = pid;
        free(content);
    }
    closedir(d);
    if (best == -1)
        return -ESRCH;
    *out = (pid_t)best;
    return 0;
}

int target_read_environ(const char *proc_root, pid_t pid, const char *term, char ***out_env)
{
    char path[PATH_MAX], *content = NULL, *block = NULL, **env = NULL;
    size_t len, n = 0, termlen = term ? strlen("TERM=") + strlen(term) + 1 : 0;
    int ret;

    snprintf(path, sizeof(path), "%s/%d/environ", proc_root, (int)pid);
    ret = read_file(path, &content, &len);
    if (ret < 0)
        return ret;
    for (size_t i = 0; i < len; i++)
        if (content[i] == '\0')
            n++;
    /* One allocation: pointer vector, then the strings (the target's, then TERM). */
    size_t vec = (n + 3) * sizeof(char *);
    block = malloc(vec + len + 1 + termlen);
    if (!block) {
        ret = -ENOMEM;
        goto out;
    }
    env = (char **)block;
    char *strs = block + vec, *p = strs;
    memcpy(strs, content, len);
    strs[len] = '\0';
    size_t k = 0;
    while (p < strs + len) {
        size_t l = strlen(p);
        if (l > 0 && strncmp(p, "TERM=", 5) != 0)
            env[k++] = p;
        p += l + 1;
    }
    if (term) {
        char *t = strs + len + 1;
        snprintf(t, termlen, "TERM=%s", term);
        env[k++] = t;
    }
    env[k] = NULL;
    *out_env = env;
    block = NULL;
out:
    free(content);
    free(block);
    return ret;
}

void target_env_free(char **env)
{
    free(env);
}
