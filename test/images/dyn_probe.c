/* A dynamically linked probe for build-rootfs.sh's library copy: it only runs
 * inside a built root if the loader, libc and libjansson all came along. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    json_t *o = json_pack("{s:s}", "probe", "ok");
    char *s = json_dumps(o, JSON_COMPACT);

    puts(s);
    free(s);
    json_decref(o);
    return 0;
}
