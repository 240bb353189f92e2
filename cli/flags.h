/* flags — the command line of kubectl-diag.
 *
 * Global flags may come before or after the subcommand; `--` ends flag
 * parsing and what follows goes to the command (ash arguments for shell, the
 * command to run for logs). Parsing never prints: errors go into err as one
 * sentence naming the value and the fix, and the caller exits 2. */
#ifndef KDIAG_CLI_FLAGS_H
#define KDIAG_CLI_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    FLAGS_CMD_NONE = 0,
    FLAGS_CMD_REDIR,
    FLAGS_CMD_PS,
    FLAGS_CMD_SHELL,
    FLAGS_CMD_LOGS,
    FLAGS_CMD_LIST,
    FLAGS_CMD_MANAGE,
    FLAGS_CMD_VERSION,
    FLAGS_CMD_COMPLETION,
    FLAGS_CMD_HELP,
    FLAGS_CMD_COMPLETE, /* hidden: __complete, used by the completion scripts */
    FLAGS_CMD_CAPTURE,
    FLAGS_CMD_CP,
    FLAGS_CMD_EXEC,
    FLAGS_CMD_FORWARDS,
} flags_cmd;

/* How many of kubectl's connection flags (--as, --server, …) a command takes. */
#define FLAGS_CONN_MAX 16

/* The longest port name, with its NUL: a Service port's (a DNS label);
 * a container port's (an IANA service name) has at most 15 characters. */
#define FLAGS_PORT_NAME_MAX 64

/* PODPORT[:LOCALPORT]. PODPORT may be a port's name, as kubectl
 * port-forward takes it: pod_name set and pod_port 0 until the pod is
 * read (a container port's name; with svc/NAME, a Service port's), and a
 * local_port of 0 then stands for the number the name has. */
typedef struct {
    uint16_t pod_port;
    uint16_t local_port;
    char pod_name[FLAGS_PORT_NAME_MAX];
} flags_portpair;
/* "80", or "http" for a port given by its name. */
void flags_port_shown(const flags_portpair *pp, char *buf, size_t n);

/* "SELECTOR[:CONTAINER]" or "NAME[:CONTAINER]"; container NULL when absent. */
typedef struct {
    char *value;
    char *container;
} flags_selector;

typedef struct {
    flags_cmd cmd;
    /* global */
    const char *ns;
    const char *context;
    const char *kubeconfig;
    const char *kubectl;
    const char *target;
    const char *dbg_image;
    const char *pull_policy;
    int64_t timeout_ms;
    int64_t keep_ms; /* --keep-forward / $KDIAG_KEEP_FORWARD; 0: none */
    int verbose;
    bool help;
    bool no_color;
    bool privileged;
    const char *profile; /* --profile, validated; NULL: general */
    /* kubectl's connection flags as given ("--as=alice", "--insecure-skip-tls-verify"),
     * for every kubectl the CLI runs; NULL-terminated */
    char *conn[FLAGS_CONN_MAX + 1];
    size_t nconn;
    bool new_container; /* --new-container */
    /* pods: --pod NAME[:C] and pod/NAME (repeatable for logs) */
    flags_selector *pods;
    size_t npods;
    /* -l SELECTOR[:C] (repeatable for logs) */
    flags_selector *labels;
    size_t nlabels;
    /* deploy/NAME[:C], sts/, rs/, svc/ … as "deployment/NAME" etc. (repeatable for logs) */
    flags_selector *workloads;
    size_t nworkloads;
    /* redir */
    bool outgoing;
    bool include_probes;   /* incoming: redirect the node's connections (kubelet probes) too */
    bool include_loopback; /* outgoing: redirect the pod's connections to itself too */
    bool all_pods;         /* every running pod of -l at once */
    bool all_namespaces;   /* list -A */
    long tail;             /* logs --tail: lines of each container at start (-1: all) */
    bool tail_given;
    int64_t since_ms; /* logs --since: what was logged that long before the start; 0: not given */
    flags_portpair *ports;
    size_t nports;
    /* ps */
    const char *output; /* NULL, "wide" or "json" */
    /* logs */
    bool all;
    const char *container;
    int64_t drain_ms;
    /* capture */
    const char *iface;   /* -i: NULL = all interfaces */
    const char *filter;  /* -f */
    uint32_t snaplen;    /* -s: 0 = the manager's default */
    uint64_t count;      /* -c: 0 = no limit */
    int64_t duration_ms; /* -d: 0 = no limit */
    const char *write;   /* -w FILE or "-" (stdout); NULL = stdout unless it is a terminal */
    const char *format;  /* --format: "pcap", "pcapng", or NULL (pcapng with --all-pods, else pcap) */
    /* cp: SOURCE DEST as given */
    const char *cp_args[2];
    int ncp_args;
    unsigned stdio_closed; /* not a flag: bit fd, 0-2 closed when the CLI started (set by main) */
    /* exec */
    bool stdin_open; /* -i: pass stdin to the command */
    bool tty;        /* --tty (-it): on a terminal */
    bool stop;       /* forwards --stop: end the kept forwards */
    bool tools;      /* --tools: a busybox applet of the debug image */
    /* completion / help topic */
    const char *topic;
    /* after `--` */
    char **rest;
    int nrest;
    /* __complete: the words being completed */
    char **words;
    int nwords;
} flags;

/* Fills f from argv (argv[0] is the program). Returns 0, or -EINVAL with a
 * message in err. f must be released with flags_free either way. */
/* "redir" for FLAGS_CMD_REDIR; "" for none. */
const char *flags_cmd_name(flags_cmd c);
/* The command named s ("redir"), FLAGS_CMD_NONE for none. */
flags_cmd flags_cmd_of(const char *s);
/* The long name (without "--") of the i-th flag, NULL past the last (completion). */
const char *flags_long_name(unsigned i);
int flags_parse(int argc, char **argv, flags *f, char *err, size_t errlen);
void flags_free(flags *f);
/* Whether the flag word w ("--timeout", "-c") takes a value, for command cmd
 * (a letter may mean one flag per command). */
bool flags_takes_value(const char *w, flags_cmd cmd);
/* Where the word w names a container for command cmd, as flags_parse reads
 * it: -t/--target, and -c/--container where cmd takes it (not capture's -c,
 * its count), also after switches (-vt). The offset of the name in w when w
 * holds it (--target=NAME, -tNAME, -t=NAME; NAME may still be empty), 0 when
 * the name is the next word (--target, -t), -1 when w names no container. */
int flags_container_at(const char *w, flags_cmd cmd);
/* Whether cmd takes a bare pod name (NAME, as kubectl exec NAME takes it). */
bool flags_bare_pod(flags_cmd cmd);
/* What follows a pod/, pods/ or po/ prefix of s, or NULL without one. */
const char *flags_pod_ref(const char *s);

#endif
