#include "list-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ephem.h"
#include "exitcode.h"
#include "podsel.h"

/* A debug container kubectl diag added: a row of the table. */
static bool list_shown(const pod_container *c)
{
    return strncmp(c->name, EPHEM_NAME_PREFIX, strlen(EPHEM_NAME_PREFIX)) == 0;
}

/* The STATE cell of c: Running, Exited(CODE), the reason it waits, Pending. */
static void list_state(const pod_container *c, char *buf, size_t n)
{
    if (c->state == POD_STATE_TERMINATED)
        snprintf(buf, n, "Exited(%d)", c->exit_code);
    else if (c->state == POD_STATE_WAITING && c->reason)
        snprintf(buf, n, "%s", c->reason);
    else
        snprintf(buf, n, "%s", c->has_status ? pod_state_name(c->state) : "Pending");
}

static void list_widen(int *w, const char *s)
{
    if ((int)strlen(s) > *w)
        *w = (int)strlen(s);
}

size_t list_print(FILE *out, const pod_info *pods, size_t n, bool namespaces)
{
    size_t rows = 0;
    char state[48];
    /* every column is as wide as its longest cell shown (NAMESPACE at least
     * 20), as kubectl get -A's, so every row lines up */
    int nsw = 20, podw = (int)strlen("POD"), ctrw = (int)strlen("CONTAINER"), imgw = (int)strlen("IMAGE"),
        statew = (int)strlen("STATE");
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < pods[i].nephemeral; j++) {
            const pod_container *c = &pods[i].ephemeral[j];
            if (!list_shown(c))
                continue;
            if (namespaces && pods[i].ns)
                list_widen(&nsw, pods[i].ns);
            list_widen(&podw, pods[i].name);
            list_widen(&ctrw, c->name);
            list_widen(&imgw, c->image ? c->image : "-");
            list_state(c, state, sizeof state);
            list_widen(&statew, state);
        }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < pods[i].nephemeral; j++) {
            const pod_container *c = &pods[i].ephemeral[j];
            if (!list_shown(c))
                continue;
            rows++;
            if (rows == 1 && namespaces)
                fprintf(out, "%-*s ", nsw, "NAMESPACE");
            if (rows == 1)
                fprintf(out, "%-*s %-*s %-*s %-*s %s\n", podw, "POD", ctrw, "CONTAINER", imgw, "IMAGE", statew,
                        "STATE", "AGE");
            char age[32] = "-";
            if (c->started)
                pod_format_age(pod_age_seconds(c->started), age, sizeof(age));
            list_state(c, state, sizeof state);
            if (namespaces)
                fprintf(out, "%-*s ", nsw, pods[i].ns ? pods[i].ns : "-");
            fprintf(out, "%-*s %-*s %-*s %-*s %s\n", podw, pods[i].name, ctrw, c->name, imgw,
                    c->image ? c->image : "-", statew, state, age);
        }
    return rows;
}

int list_main(const flags *f, const kube *k)
{
    pod_info *pods = NULL;
    size_t n = 0;
    char err[2048] = "";
    char *wsel = NULL;
    const char *sel = f->nlabels ? f->labels[0].value : NULL;
    int rc = 0;
    if (f->nworkloads && (rc = podsel_workload(k, f->workloads[0].value, f->timeout_ms, &wsel, err, sizeof(err))) < 0)
        return exitcode_report(stderr, rc, err);
    if (wsel)
        sel = wsel;
    if (f->npods) {
        pods = calloc(1, sizeof(*pods));
        rc = pods ? podsel_fetch(k, f->pods[0].value, f->timeout_ms, pods, err, sizeof(err)) : -ENOMEM;
        if (!pods)
            snprintf(err, sizeof(err), "cannot list debug containers: out of memory");
        n = rc == 0 ? 1 : 0; /* pod_list_free frees the array either way */
    } else {
        rc = podsel_list_in(k, sel, f->all_namespaces, f->timeout_ms, &pods, &n, err, sizeof(err));
    }
    if (rc == 0 && list_print(stdout, pods, n, f->all_namespaces) == 0) {
        char in[512];
        snprintf(in, sizeof(in), "namespace %s", k->ns);
        fprintf(stderr, "no kubectl diag debug containers in %s%s%s%s\n",
                f->npods                   ? "pod/"
                : sel && f->all_namespaces ? "any namespace's pods matching "
                : sel                      ? "the pods matching "
                : f->all_namespaces        ? "any namespace"
                : k->ns                    ? in
                                           : "the current namespace",
                f->npods ? f->pods[0].value
                : sel    ? sel
                         : "",
                f->nworkloads ? " of " : "", f->nworkloads ? f->workloads[0].value : "");
    }
    pod_list_free(pods, n);
    free(wsel);
    return exitcode_report(stderr, rc, err);
}
