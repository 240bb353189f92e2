/* fuzz_cluster — libFuzzer target for what the CLI reads from the cluster
 * through kubectl: Pod and PodList objects (cli/pod.c), watch lines
 * (cli/podwatch.c), workload selectors and Service ports (cli/podsel.c).
 * Their fields are written by users of the cluster (names, labels, ports),
 * so nothing in them may crash the CLI. Properties beyond "no crash, no
 * leak, no UB":
 *   - every container a pod lists is found again by its name;
 *   - the newest running pod is one of the list, and running;
 *   - a Service port maps to a port, or to a port's name that fits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "podsel.h"
#include "podwatch-internal.h"

static void check_pod(const pod_info *p)
{
    char age[32], err[512];
    const pod_container *c;
    pod_is_running(p);
    pod_is_ready(p);
    pod_format_age(pod_age_seconds(p->created), age, sizeof age);
    for (size_t i = 0; i < p->ncontainers; i++) {
        const pod_container *want = &p->containers[i];
        if (want->name && (!(c = pod_container_find(p, want->name)) || strcmp(c->name, want->name) != 0))
            abort();
        for (size_t k = 0; k < want->nports; k++)
            if (!pod_port_by_name(p, want->ports[k].name))
                abort();
        podsel_target(p, want->name, &c, err, sizeof err);
    }
    for (size_t i = 0; i < p->nephemeral; i++)
        if (p->ephemeral[i].name && !pod_ephemeral_find(p, p->ephemeral[i].name))
            abort();
    podsel_target(p, NULL, &c, err, sizeof err);
    podsel_target(p, "no-such-container", &c, err, sizeof err);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    char *s = malloc(n + 1), rv[64], err[512];
    if (!s)
        return 0;
    memcpy(s, d, n);
    s[n] = '\0';

    pod_info *pods = NULL;
    size_t npods = 0;
    if (pod_list_parse(s, &pods, &npods) == 0) {
        for (size_t i = 0; i < npods; i++)
            check_pod(&pods[i]);
        const pod_info *newest = pod_newest_running(pods, npods);
        if (newest && (newest < pods || newest >= pods + npods || !pod_is_running(newest)))
            abort();
        pod_list_free(pods, npods);
    }

    podwatch_event ev;
    memset(&ev, 0, sizeof ev);
    rv[0] = '\0';
    if (podwatch_parse_line(s, &ev, rv, sizeof rv) == PODWATCH_LINE_EVENT) {
        check_pod(&ev.pod);
        pod_free(&ev.pod);
    }

    char *sel = NULL;
    podsel_selector_of("deployment/fuzz", s, &sel, err, sizeof err);
    free(sel);

    podsel_svc_port *ports = NULL;
    size_t nports = 0;
    if (podsel_service_ports(s, &ports, &nports) == 0)
        for (size_t i = 0; i < nports; i++)
            if (!ports[i].port || (!ports[i].target && !ports[i].target_name[0]) ||
                strnlen(ports[i].target_name, sizeof ports[i].target_name) == sizeof ports[i].target_name)
                abort();
    free(ports);
    free(s);
    return 0;
}
