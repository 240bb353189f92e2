/* ps — `kubectl diag ps`: the pod's processes as the manager sees them. */
#ifndef KDIAG_CLI_PS_H
#define KDIAG_CLI_PS_H

#include <stdint.h>
#include <stdio.h>

#include "kdiag.pb-c.h"
#include "session.h"

typedef enum { PS_TABLE, PS_WIDE, PS_JSON } ps_format;

/* Calls Ps over the session's forward; *resp is freed with
 * kdiag__solo__io__ps_response__free_unpacked. */
int ps_fetch(session *s, Kdiag__Solo__Io__PsResponse **resp, char *err, size_t errlen);
/* Prints the listing. The table and wide views show control characters and
 * bytes that are not UTF-8 in names and command lines as '?' (as procps ps
 * does): a process cannot forge rows or send escape sequences to the
 * operator's terminal. JSON carries the exact text (JSON-escaped).
 * The JSON schema (stable):
 *   {"pod": str, "namespace": str, "container": str,
 *    "processes": [{"pid": int, "ppid": int, "name": str, "cmdline": str, "uid": int,
 *                   "state": str, "rssBytes": int, "startTime": RFC 3339 str or null,
 *                   "listen": [{"ip": str, "port": int, "protocol": "tcp"}],
 *                   "bound":  [{"ip": str, "port": int, "protocol": "udp"}]}]} */
void ps_print(FILE *out, const Kdiag__Solo__Io__PsResponse *r, ps_format fmt, const char *pod, const char *ns,
              const char *container);
/* Distinct TCP listening ports not bound to a loopback address, ascending. */
size_t ps_public_tcp_ports(const Kdiag__Solo__Io__PsResponse *r, uint16_t *ports, size_t max);

#endif
