/* portfwd-internal — test seam of cli/portfwd.c: its output parser. */
#ifndef KDIAG_CLI_PORTFWD_INTERNAL_H
#define KDIAG_CLI_PORTFWD_INTERNAL_H

#include "portfwd.h"

/* Parses one line of kubectl port-forward's output: 0 and the ports for
 * "Forwarding from 127.0.0.1:LOCAL -> REMOTE", -EINVAL otherwise. */
int portfwd_parse_line(const char *line, int *local, int *remote);

#endif
