#include "completion.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cp-internal.h"
#include "ephem.h"
#include "flags.h"
#include "podsel.h"

static const char bash_script[] =
    "# bash completion for kubectl-diag\n"
    "_kubectl_diag() {\n"
    "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" out i w=()\n"
    "  # bash splits --flag=value at '=': the words as typed (the answer is what follows the '=')\n"
    "  for ((i = 1; i <= COMP_CWORD; i++)); do\n"
    "    if [[ ${#w[@]} -gt 0 && ( ${COMP_WORDS[i]} == = || ${COMP_WORDS[i-1]} == = ) ]]; then\n"
    "      w[${#w[@]}-1]+=${COMP_WORDS[i]}\n"
    "    else w+=(\"${COMP_WORDS[i]}\"); fi\n"
    "  done\n"
    "  [[ $cur == = ]] && cur=\n"
    "  out=$(\"${COMP_WORDS[0]}\" __complete \"${w[@]}\" 2>/dev/null)\n"
    "  COMPREPLY=( $(compgen -W \"$(grep -v '^:' <<<\"$out\")\" -- \"$cur\") )\n"
    "  # directive 0 (the last line): file names when nothing else fits\n"
    "  [[ ${#COMPREPLY[@]} -eq 0 && \"${out##*$'\\n'}\" == :0 ]] && COMPREPLY=( $(compgen -f -- \"$cur\") )\n"
    "}\n"
    "complete -F _kubectl_diag kubectl-diag\n";

static const char zsh_script[] =
    "#compdef kubectl-diag\n"
    "# zsh completion for kubectl-diag\n"
    "_kubectl_diag() {\n"
    "  local -a out\n"
    "  out=(\"${(@f)$(${words[1]} __complete \"${(@)words[2,CURRENT]}\" 2>/dev/null)}\")\n"
    "  local dir=\"${out[-1]}\"\n"
    "  out=(\"${(@)out:#:*}\")\n"
    "  if (( ${#out} == 0 )) && [[ $dir == :0 ]]; then _files; else compadd -- \"${(@)out}\"; fi\n"
    "}\n"
    "compdef _kubectl_diag kubectl-diag\n";

int completion_script(FILE *out, const char *shell)
{
    if (strcmp(shell, "bash") == 0)
        fputs(bash_script, out);
    else if (strcmp(shell, "zsh") == 0)
        fputs(zsh_script, out);
    else
        return -EINVAL; /* flags_parse refuses other shells first */
    return 0;
}

#define COMPLETION_KUBECTL_MS 5000 /* a completion that waits longer is worse than none */

static const char *const commands[] = {"redir", "ps",       "shell",   "exec",       "logs", "capture", "cp",
                                       "list",  "forwards", "version", "completion", "help", NULL};

/* cobra's directives, the last line of __complete's output */
#define DIRECTIVE_FILES "0" /* nothing fits: the shell completes file names */
#define DIRECTIVE_NO_FILES "4"

static void emit(FILE *out, const char *prefix, const char *cand, const char *partial)
{
    size_t pl = strlen(partial);
    char full[512];
    snprintf(full, sizeof(full), "%s%s", prefix, cand);
    if (strncmp(full, partial, pl) == 0)
        fprintf(out, "%s\n", full);
}

static void emit_list(FILE *out, const char *const *l, const char *partial)
{
    for (int i = 0; l[i]; i++)
        emit(out, "", l[i], partial);
}

/* Runs kubectl and offers each output line (with prefix; with bare, also without
 * it: a pod as kubectl exec NAME takes it). */
static void from_kubectl(FILE *out, const kube *k, const char *const *args, const char *prefix, bool bare,
                         const char *partial)
{
    kube_result r;
    char err[512];
    if (kube_run(k, "complete", args, NULL, 0, COMPLETION_KUBECTL_MS, &r, err, sizeof(err)) ==
        0) { /* no messages while completing */
        char *save = NULL;
        for (char *line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            const char *name = strchr(line, '/') ? strchr(line, '/') + 1 : line;
            emit(out, prefix, name, partial);
            if (bare)
                emit(out, "", name, partial);
        }
    }
    kube_result_free(&r);
}

/* The one pod the words name (pod/NAME, --pod NAME, a bare NAME, cp's
 * [NAMESPACE/]POD:PATH), read by the command's own parser (--help added: a
 * line still missing its command or operands parses); 0 when it names one,
 * with its namespace in ns when cp's operand gave one. */
static int line_pod(char **words, int n, char *pod, size_t podlen, char *ns, size_t nslen)
{
    char **argv = calloc((size_t)n + 3, sizeof *argv), err[512];
    flags f = {0};
    int rc = argv ? 0 : -ENOMEM;
    if (rc == 0) {
        argv[0] = "kubectl-diag";
        memcpy(argv + 1, words, (size_t)n * sizeof *argv);
        argv[n + 1] = "--help";
        rc = flags_parse(n + 2, argv, &f, err, sizeof err);
    }
    pod[0] = ns[0] = '\0';
    if (rc == 0 && f.npods == 1)
        snprintf(pod, podlen, "%s", f.pods[0].value);
    for (int i = 0; rc == 0 && f.cmd == FLAGS_CMD_CP && !f.npods && i < f.ncp_args; i++) {
        cp_operand op;
        if (cp_parse_operand(f.cp_args[i], &op, err, sizeof err) == 0 && op.remote && !op.workload && op.pod[0]) {
            snprintf(pod, podlen, "%s", op.pod);
            snprintf(ns, nslen, "%s", op.ns);
        }
    }
    flags_free(&f);
    free(argv);
    return rc == 0 && pod[0] ? 0 : -ENOENT;
}

/* The containers of the pod the first n words name, with prefix. */
static void containers(FILE *out, const kube *k, char **words, int n, const char *prefix, const char *partial)
{
    static const char names[] = "jsonpath={range .spec.containers[*]}{.name}{\"\\n\"}{end}";
    char pod[256], ns[64];
    const char *args[] = {"get", "pod", "-o", names, "--", pod, NULL};
    kube kk = *k;
    if (line_pod(words, n, pod, sizeof pod, ns, sizeof ns) == 0) {
        if (ns[0])
            kk.ns = ns;
        from_kubectl(out, &kk, args, prefix, false, partial);
    }
}

int completion_complete(FILE *out, const kube *k, char **words, int nwords)
{
    const char *partial = nwords > 0 ? words[nwords - 1] : "";
    const char *prev = nwords > 1 ? words[nwords - 2] : "", *kind;
    int at;
    bool have_cmd = false, after_dashes = false;
    flags_cmd cmd = FLAGS_CMD_NONE;
    kube kk = *k;
    for (int i = 0; i + 1 < nwords; i++) {
        if (!strcmp(words[i], "--"))
            after_dashes = true;
        for (int c = 0; commands[c] && !have_cmd; c++)
            if (strcmp(words[i], commands[c]) == 0) {
                have_cmd = true;
                cmd = flags_cmd_of(commands[c]);
            }
        /* the user's own connection flags apply to the lookups */
        if ((!strcmp(words[i], "-n") || !strcmp(words[i], "--namespace")) && i + 2 < nwords)
            kk.ns = words[i + 1];
        if (!strcmp(words[i], "--context") && i + 2 < nwords)
            kk.context = words[i + 1];
        if (!strcmp(words[i], "--kubeconfig") && i + 2 < nwords)
            kk.kubeconfig = words[i + 1];
        if (!strcmp(words[i], "--kubectl") && i + 2 < nwords)
            kk.kubectl = words[i + 1];
    }
    const char *directive = DIRECTIVE_NO_FILES;
    static const char *const pods_args[] = {"get", "pods", "-o", "name", NULL};
    static const char *const ns_args[] = {"get", "namespaces", "-o", "name", NULL};
    static const char *const ctx_args[] = {"config", "get-contexts", "-o", "name", NULL};
    static const char *const outputs[] = {"wide", "json", NULL};
    static const char *const shells[] = {"bash", "zsh", NULL};
    static const char *const pulls[] = {"Always", "IfNotPresent", "Never", NULL};
    if (after_dashes) /* the command's own words */
        ;
    else if (!strcmp(prev, "-n") || !strcmp(prev, "--namespace"))
        from_kubectl(out, &kk, ns_args, "", false, partial);
    else if (!strcmp(prev, "--context"))
        from_kubectl(out, &kk, ctx_args, "", false, partial);
    else if (!strcmp(prev, "--pod"))
        from_kubectl(out, &kk, pods_args, "", false, partial);
    else if (!strcmp(prev, "-o") || !strcmp(prev, "--output"))
        emit_list(out, outputs, partial);
    else if (!strcmp(prev, "--pull-policy"))
        emit_list(out, pulls, partial);
    else if (!strcmp(prev, "--profile"))
        for (unsigned i = 0; ephem_profile_name(i); i++)
            emit(out, "", ephem_profile_name(i), partial);
    else if (!strcmp(prev, "completion"))
        emit_list(out, shells, partial);
    else if (!strcmp(prev, "help"))
        emit_list(out, commands, partial);
    else if (flags_container_at(prev, cmd) == 0) /* -c, -t: the containers of the pod on the line */
        containers(out, &kk, words, nwords - 2, "", partial);
    else if (flags_takes_value(prev, cmd)) { /* a value of its own: no pods */
        if (!strcmp(prev, "--kubeconfig") || !strcmp(prev, "--kubectl") || !strcmp(prev, "-w") ||
            !strcmp(prev, "--write"))
            directive = DIRECTIVE_FILES;
    } else if ((at = flags_container_at(partial, cmd)) > 0) { /* -cNAME, --container=NAME */
        char prefix[64];
        /* after '=' the name alone, as cobra answers: its scripts put back (zsh) or leave out (bash) the flag */
        snprintf(prefix, sizeof prefix, "%.*s", partial[at - 1] == '=' ? 0 : at, partial);
        containers(out, &kk, words, nwords - 1, prefix, partial + (partial[at - 1] == '=' ? at : 0));
    } else if (partial[0] == '-')
        for (unsigned i = 0; flags_long_name(i); i++) { /* the parser's own table: every flag, once */
            char word[64];
            snprintf(word, sizeof word, "--%s", flags_long_name(i));
            emit(out, "", word, partial);
        }
    else if (strncmp(partial, "pod/", 4) == 0) {
        from_kubectl(out, &kk, pods_args, "pod/", false, partial);
        if (cmd == FLAGS_CMD_CP) /* or a local path that starts so */
            directive = DIRECTIVE_FILES;
    } else if (podsel_workload_ref(partial, &kind)) { /* deploy/, sts/ …: that kind's names after the prefix typed */
        const char *args[] = {"get", kind, "-o", "name", NULL};
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "%.*s", (int)(strchr(partial, '/') + 1 - partial), partial);
        from_kubectl(out, &kk, args, prefix, false, partial);
    } else if (!have_cmd)
        emit_list(out, commands, partial);
    else {
        /* a NAME begun: also the bare name, for the commands that take one (cp's is NAME:PATH) */
        bool bare = partial[0] && flags_bare_pod(cmd);
        from_kubectl(out, &kk, pods_args, "pod/", bare, partial);
        if (cmd == FLAGS_CMD_CP) /* the other operand is a local path */
            directive = DIRECTIVE_FILES;
    }
    fprintf(out, ":%s\n", directive);
    return 0;
}
