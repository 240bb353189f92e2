/* target: find the process `enter` should join and read what it needs from it
 * (container id lookup through cgroup paths, environment). */
#ifndef KDIAG_SCRATCH_TARGET_H
#define KDIAG_SCRATCH_TARGET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Strips a runtime prefix ("containerd://", "docker://", "cri-o://", any
 * "<scheme>://") in place and checks the rest is a plausible id
 * ([A-Za-z0-9._-], 1..128 chars). Returns the id or NULL if invalid. */
const char *target_normalize_id(const char *raw);

/* Lowest PID under proc_root (normally "/proc") whose /proc/PID/cgroup path
 * has a component naming the container id (the bare id, or the runtimes'
 * "cri-containerd-<id>.scope", "crio-<id>.scope", "docker-<id>.scope", ...),
 * skipping `self`. 0 / -ESRCH (no match) / -errno. */
int target_find_by_container_id(const char *proc_root, const char *id, pid_t self, pid_t *out);

/* The PID a request's target names (the Target message of api/kdiag.proto):
 * the lowest PID of container_id (raw: any "<runtime>://" prefix) when it is
 * not empty, else pid when it is not 0, else 1 (the first process of the
 * manager's PID namespace). 0; -EINVAL for a container id of the wrong form;
 * -ERANGE for a pid over INT_MAX (cut to a pid_t it would name another
 * process); as target_find_by_container_id when no process has the id. */
int target_resolve(const char *proc_root, const char *container_id, uint64_t pid, pid_t self, pid_t *out);

/* Reads proc_root/PID/environ into a NULL-terminated vector whose strings
 * live in one block; `term` (may be NULL) replaces any TERM of the target.
 * Free with target_env_free(). 0 / -errno. */
int target_read_environ(const char *proc_root, pid_t pid, const char *term, char ***out_env);
void target_env_free(char **env);

#endif
