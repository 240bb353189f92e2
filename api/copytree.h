/* copytree — a file tree as a stream of CopyChunk messages (api/kdiag.proto,
 * docs/cp.md), both ways; used by the manager (inside a container's root) and
 * by the CLI (on the local side).
 *
 * copytree_send walks a tree and hands each chunk to a callback: directories
 * recursively, symlinks as links, sparse files as data and holes
 * (SEEK_DATA/SEEK_HOLE), one CONTRACT_COPY_DATA_MAX buffer whatever the size.
 * A copytree_recv writes chunks into a tree: every new file, symlink and
 * directory under a temporary name (.kdiag-cp-<hex>) in its destination
 * directory, renamed into place once complete, with its mode, owner (when
 * allowed) and mtime; freeing an unfinished one removes what is still under a
 * temporary name. Entry names never contain '/', ".." or ".": nothing is
 * created outside the destination and no symlink is followed below it.
 *
 * Paths the user gave are resolved with openat2 and `resolve` (RESOLVE_* of
 * linux/openat2.h): RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS with a
 * container's root as rootfd keeps ".." and absolute symlinks inside it; 0
 * with AT_FDCWD is the plain local meaning.
 *
 * Functions return 0 or -errno and, on failure, one line in err naming the
 * path and the cause: "cannot copy /etc/x: No such file or directory (ENOENT)".
 * Paths in it have their control bytes escaped and, when long, their middle
 * cut; the cause is never cut. */
#ifndef KDIAG_COPYTREE_H
#define KDIAG_COPYTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kdiag.pb-c.h"

typedef struct {
    uint64_t entries; /* files, directories and symlinks */
    uint64_t bytes;   /* file content (holes not counted) */
} copytree_stats;

/* Called with each chunk (valid during the call). A negative return stops the
 * walk; copytree_send returns it (err is then left to the caller). */
typedef int (*copytree_emit_fn)(void *ud, const Kdiag__Solo__Io__CopyChunk *c);

/* Streams path (resolved under rootfd). A path whose last component is "."
 * or "..", or "/", streams a directory's contents (root entry name ""); one
 * with a trailing '/' must be a directory (a final symlink followed), sent
 * under its last component. FIFOs, sockets and devices are skipped in a tree
 * and refused when named. A file that shrinks while it is read fails the
 * copy (-ENODATA) rather than be padded with zeros. stats may be NULL. */
int copytree_send(int rootfd, const char *path, uint64_t resolve, copytree_emit_fn emit, void *ud,
                  copytree_stats *stats, char *err, size_t errlen);

/* Streams the regular file open at fd, from offset from to its end, as the
 * one entry name (a single name), with fd's mode, owner and mtime; shown
 * names it in err. Done, fd's offset is at the end of what was sent. A file
 * that shrinks while it is read fails it (-ENODATA), as in copytree_send. A
 * kernel file (procfs, sysfs, ...), whose size says nothing, is read from
 * fd's offset to its end first, as copytree_send reads one named. */
int copytree_send_file(int fd, off_t from, const char *name, const char *shown, copytree_emit_fn emit, void *ud,
                       copytree_stats *stats, char *err, size_t errlen);

typedef struct copytree_recv copytree_recv;

/* Prepares to write a stream to dest (resolved under rootfd): an existing
 * directory (a final symlink followed) receives the tree under its root
 * entry's name; a file is replaced by it, through a final symlink (followed
 * hop by hop under rootfd, a dangling one refused); a missing dest is
 * created (its parent must exist). A dest ending in '/', "." or ".." must be
 * an existing directory. A FIFO, socket or device is refused, as dest or
 * where an entry would go. keep says what of the source's is kept besides
 * the permission bits and mtime: owners (failures for lack of privilege are
 * ignored), set-uid and set-gid bits. The destination is checked here,
 * before any data. */
enum {
    COPYTREE_KEEP_OWNER = 1 << 0,
    COPYTREE_KEEP_SETID = 1 << 1, /* else a set-uid root program from a pod is not one here */
};
int copytree_recv_new(copytree_recv **ret, int rootfd, const char *dest, uint64_t resolve, unsigned keep,
                      char *err, size_t errlen);
/* Prepares to write the content of a stream's one regular file to fd (a
 * pipe, a terminal: holes become zeros), in order; a directory, symlink or a
 * second entry is refused. name is fd's for messages ("stdout"). fd stays
 * the caller's; what was written stays written. A signal that interrupts a
 * write to fd ends the stream (-EINTR): a write blocked on a reader that
 * does not read is stopped by a signal to the writing thread. */
int copytree_recv_new_stream(copytree_recv **ret, int fd, const char *name, char *err, size_t errlen);
/* The next chunk of the stream, its zstd decoded here (api/copyz.h). -EPROTO
 * for a stream that breaks the rules. */
int copytree_recv_chunk(copytree_recv *r, const Kdiag__Solo__Io__CopyChunk *c, char *err, size_t errlen);
/* The stream ended: completes the last file and the open directories and
 * renames the tree into place. */
int copytree_recv_finish(copytree_recv *r, char *err, size_t errlen);
const copytree_stats *copytree_recv_stats(const copytree_recv *r);
/* Frees r; unless finished, removes every temporary name it made. NULL is fine. */
void copytree_recv_free(copytree_recv *r);

/* "No such file or directory (ENOENT)" for -ENOENT: the message tail of every error. */
const char *copytree_strerror(int rc, char *buf, size_t len);

#endif
