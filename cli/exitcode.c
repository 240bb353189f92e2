#include "exitcode.h"

#include <assert.h>
#include <errno.h>

int exitcode_of(int rc)
{
    if (rc >= 0)
        return EXITCODE_OK;
    return rc == -EINVAL ? EXITCODE_USAGE : EXITCODE_FAILURE;
}

int exitcode_report(FILE *out, int rc, const char *err)
{
    if (rc < 0) {
        assert(err && *err && "a failing path returned without filling its message");
        fprintf(out, "error: %s\n", err && *err ? err : "failed without a message (a bug: please report it)");
    }
    return exitcode_of(rc);
}
