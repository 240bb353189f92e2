/* remember — the sessions kubectl-diag remembers, one small file per pod
 * named on the command line, under $XDG_CACHE_HOME/kdiag/sessions (else
 * ~/.cache/kdiag/sessions; directories 0700, files 0600: they hold a token
 * and a secret). A record says which kubeconfig, context, namespace and pod
 * (the key) and what the proven start-up lines and the pod said; session.c
 * decides when it may be used (docs/contract.md, "Remembered sessions"). */
#ifndef KDIAG_CLI_REMEMBER_H
#define KDIAG_CLI_REMEMBER_H

#include <stdbool.h>

#include "contract.h"
#include "kube.h"

typedef struct {
    int grpc, tunnel;
    char container[64];
    unsigned caps;  /* EPHEM_* the debug container has */
    int privileged; /* 0 or 1 */
    int share_pid;  /* the pod's shareProcessNamespace */
    char token[CONTRACT_TOKEN_HEX_LEN + 1];
    char secret[CONTRACT_SECRET_HEX_LEN + 1];
    char ns[256];
    char req_target[256]; /* -t as given, "" for the default */
    char target[256];
    char target_id[256]; /* "" when unknown */
    char image[512];     /* the debug image the session asked for */
} remembered;

/* A record's key (its first line) fits in this many bytes, its NUL included:
 * a longer one (a context name of ~2000 bytes) is no record. */
#define REMEMBER_KEY_MAX 2048

/* Records older than this are removed when a record is saved. */
#define REMEMBER_MAX_AGE_DAYS 30

/* The record for pod under k's kubeconfig, context and namespace: true and
 * *r filled, or false (none, another key, unreadable). */
bool remember_read(const kube *k, const char *pod, remembered *r);
/* remember_read of the record at path, whose first line must be key (with
 * its newline). */
bool remember_read_at(const char *path, const char *key, remembered *r);
/* Saves r for pod (atomically: a temporary file renamed), then removes
 * records older than REMEMBER_MAX_AGE_DAYS: true when it was saved. A
 * record that cannot be written (the directory cannot be made or written,
 * the record's path is a directory) is said on stderr, once per process, and
 * the command goes on: it is a cache. So is no cache directory (neither
 * $XDG_CACHE_HOME nor $HOME an absolute path, or its path too long), and a
 * key over REMEMBER_KEY_MAX. */
bool remember_save(const kube *k, const char *pod, const remembered *r);
/* The context, namespace and pod of a record's key (its first line, with
 * the newline) into ctx, ns and pod, n bytes each, "-" for an empty one
 * (the kubeconfig's current one): false when it is no key. */
bool remember_key_fields(const char *key, char *ctx, char *ns, char *pod, size_t n);
/* The directory of the records (n bytes at most): false when there is no
 * cache directory. */
bool remember_dir(char *buf, size_t n);
/* The path of pod's record with suffix appended (a file beside it, e.g. the
 * kept forward's, cli/keep.h) and the key the record starts with; with
 * make, the directory is made. false when there is no cache directory. */
bool remember_path(const kube *k, const char *pod, const char *suffix, bool make, char *path, size_t n, char *key,
                   size_t keylen);

#endif
