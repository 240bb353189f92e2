#include "help.h"

#ifndef KDIAG_DEFAULT_IMAGE
#define KDIAG_DEFAULT_IMAGE "ghcr.io/kdiag-c/kdiag-manager:0.1.0"
#endif

static const char global_flags[] =
    "Global flags (before or after the command):\n"
    "  -n, --namespace NS       namespace of the pod (default: the context's)\n"
    "      --context NAME       kubeconfig context\n"
    "      --kubeconfig FILE    kubeconfig file (default: $KUBECONFIG or ~/.kube/config)\n"
    "      --as, --as-group, --as-uid, --user, --cluster, --server, --token, --request-timeout,\n"
    "      --certificate-authority, --client-certificate, --client-key, --tls-server-name,\n"
    "      --insecure-skip-tls-verify, --cache-dir\n"
    "                           kubectl's own, passed to every kubectl it runs\n"
    "  -l, --labels SELECTOR    pick the newest Running pod matching SELECTOR\n"
    "      --pod NAME           the pod (also as a pod/NAME or NAME argument)\n"
    "  deploy/NAME              a workload: the newest Running pod its selector matches (logs:\n"
    "                           every one); also sts/NAME, rs/NAME, svc/NAME and the long forms\n"
    "                           (deployment/, statefulset/, replicaset/, service/)\n"
    "  -t, --target CONTAINER   container to debug (default: the pod's first); ps, shell, exec\n"
    "                           and cp also take it as -c/--container, as kubectl exec does\n"
    "      --dbg-image IMAGE    debug image (default: $KDIAG_DBG_IMAGE, else " KDIAG_DEFAULT_IMAGE ")\n"
    "      --pull-policy P      Always, IfNotPresent or Never (default: the cluster's)\n"
    "      --profile NAME       what a new debug container gets: general (default: what every\n"
    "                           command needs), netadmin, baseline, restricted (only what this\n"
    "                           command needs) or sysadmin (privileged)\n"
    "      --new-container      add another debug container when the pod's one lacks\n"
    "                           capabilities the command needs (default: say so and stop)\n"
    "      --privileged         run the debug container privileged (--profile sysadmin)\n"
    "      --kubectl PATH       kubectl to run (default: $KUBECTL or kubectl)\n"
    "      --timeout DURATION   how long to wait for each kubectl call, the debug container and\n"
    "                           the port-forward (default: 2m)\n"
    "      --keep-forward DURATION\n"
    "                           keep the pod's port-forward in the background for later\n"
    "                           commands until unused for DURATION (default:\n"
    "                           $KDIAG_KEEP_FORWARD, else none); saves most of a command's\n"
    "                           start when the API server is far away\n"
    "  -v, --verbose            print the kubectl commands run (-vv: also their errors)\n"
    "      --no-color           no colours (also when NO_COLOR is set)\n"
    "  -h, --help               help for a command\n";

static const char exit_codes[] =
    "Exit codes:\n"
    "  0   success (redir, logs and capture: also after Ctrl-C)\n"
    "  1   runtime failure (cluster, permissions, pod gone, ...); the message says what to do\n"
    "  2   usage error (unknown flag, bad port, no pod given)\n"
    "  N   shell, exec: the remote command's exit code; logs -- CMD: the command's exit code\n";

static const char main_help[] =
    "kubectl diag — debug pods you cannot change (distroless, scratch, hardened)\n"
    "\n"
    "Usage: kubectl diag COMMAND [flags]\n"
    "\n"
    "Commands:\n"
    "  redir       redirect pod ports (incoming or --outgoing) to local ports\n"
    "  ps          list the processes of the target container, with listening ports\n"
    "  shell       a root shell inside the target container, even without a shell in it\n"
    "  cp          copy files and directories between the target container and this machine\n"
    "  exec        run a command of the target container (or a busybox applet) inside it\n"
    "  logs        follow the logs of several pods and containers, optionally around a command\n"
    "  capture     capture the pod's packets into a pcap file (or stdout, for tcpdump/wireshark)\n"
    "  list        the debug containers kubectl diag added in the namespace\n"
    "  forwards    the port-forwards kept on this machine by --keep-forward (--stop ends them)\n"
    "  version     versions of kubectl-diag and its debug image\n"
    "  completion  shell completion script (bash or zsh)\n"
    "\n"
    "Examples:\n"
    "  kubectl diag ps -l app=nginx\n"
    "  kubectl diag redir pod/nginx-7c5 80:8080\n"
    "  kubectl diag shell -l app=distroless -- -c 'ls /; top -n 1'\n"
    "  kubectl diag cp pod/web:/etc/nginx ./nginx\n"
    "  kubectl diag logs -l app=curl -l app=nginx -- curl -s http://localhost:8080/\n"
    "\n"
    "kubectl diag adds an ephemeral container (dbg-tools-…) running kdiag-manager to the pod.\n"
    "One per pod: later commands reuse it. It needs: get, list, watch pods; get, update\n"
    "pods/ephemeralcontainers; get pods/log; create pods/portforward (shell, exec and cp\n"
    "run through the manager: no pods/exec). Pod Security \"baseline\" or \"restricted\"\n"
    "refuses what --profile general (the default) adds: SYS_PTRACE (ps, shell, exec, cp),\n"
    "SYS_ADMIN (shell, exec), DAC_READ_SEARCH (cp), NET_ADMIN (redir). Use a namespace\n"
    "whose profile allows them; capture works under \"baseline\" with --profile baseline.\n"
    "\n";

static const char redir_help[] =
    "Usage: kubectl diag redir [--outgoing] [--all-pods] [PODPORT[:LOCALPORT] ...] [flags]\n"
    "\n"
    "Redirects connections to the pod's ports (or, with --outgoing, the pod's own outgoing\n"
    "connections to those ports) to this machine: connections that reach pod port PODPORT are\n"
    "carried to localhost:LOCALPORT (default: the same port). PODPORT may be a container\n"
    "port's name (http:8080), as kubectl port-forward takes it. Without ports, every TCP port\n"
    "the pod listens on (outside loopback) is redirected to the same local port.\n"
    "Prints a line when each redirect is active, then one line per connection on stderr.\n"
    "Ctrl-C removes the redirects and exits 0; if the pod goes away it exits 1.\n"
    "With -l or a workload the redirect follows its pods: when the pod goes, the newest running\n"
    "one takes over; --all-pods redirects every running pod at once (connection lines name\n"
    "their pod), adds new ones as they start and drops deleted ones, one line each.\n"
    "With svc/NAME (not --outgoing) a port of the Service stands for its targetPort in the\n"
    "pods (by its number or name), as with kubectl port-forward svc/NAME; LOCALPORT defaults to\n"
    "the Service's port.\n"
    "Left alone unless asked: connections from the pod's node (the kubelet's probes; they keep\n"
    "reaching the pod) unless --include-probes, and with --outgoing the pod's connections to\n"
    "itself (localhost:PORT, e.g. a sidecar to the app) unless --include-loopback.\n"
    "\n"
    "Examples:\n"
    "  kubectl diag redir pod/nginx 80:8080          # nginx's visitors reach localhost:8080\n"
    "  kubectl diag redir -l app=web                 # all listening ports, same local ports\n"
    "  kubectl diag redir deploy/web 8080            # a replica of Deployment web\n"
    "  kubectl diag redir --outgoing -l app=curl 80  # the pod's outgoing HTTP reaches localhost:80\n"
    "  kubectl diag redir --all-pods -l app=web 80:8080  # every replica's visitors, also new ones\n"
    "\n";

static const char ps_help[] =
    "Usage: kubectl diag ps [-o wide|json] [flags]\n"
    "\n"
    "Lists the processes of the target container (and of the pod, when it shares its PID\n"
    "namespace) with their listening TCP ports: PID PPID NAME LISTEN. -o wide adds USER (uid),\n"
    "RSS, STATE and CMDLINE. As in procps ps, control characters in names and command lines\n"
    "show as '?' there (a process cannot forge rows or send escape sequences to your terminal);\n"
    "-o json carries them exactly (bytes that are not UTF-8 as U+FFFD; a command line cut at\n"
    "16 KiB). -o json prints:\n"
    "  {\"pod\", \"namespace\", \"container\", \"processes\": [{\"pid\", \"ppid\", \"name\", \"cmdline\",\n"
    "   \"uid\", \"state\", \"rssBytes\", \"startTime\" (RFC 3339 or null),\n"
    "   \"listen\": [{\"ip\", \"port\", \"protocol\": \"tcp\"}], \"bound\": [{\"ip\", \"port\", \"protocol\": \"udp\"}]}]}\n"
    "\n"
    "Examples:\n"
    "  kubectl diag ps pod/nginx\n"
    "  kubectl diag ps -l app=nginx -o json | jq '.processes[].listen'\n"
    "  kubectl diag ps svc/web                       # a pod behind Service web\n"
    "\n";

static const char shell_help[] =
    "Usage: kubectl diag shell [flags] [-- ASH-ARGS...]\n"
    "\n"
    "Opens a root shell (busybox ash with its applets: ls, ps, top, wget, ...) inside the target\n"
    "container's filesystem and namespaces, even when the image has no shell at all. Arguments\n"
    "after -- go to ash. The exit code is the shell's. On a terminal the shell gets one (raw\n"
    "mode: Ctrl-C reaches the remote foreground job, the window size follows yours); otherwise\n"
    "stdin, stdout and stderr are pipes (the end of stdin ends the shell's input).\n"
    "It runs through the manager over the port-forward: no pods/exec permission is needed.\n"
    "\n"
    "  -it, -i, --tty           taken as kubectl exec -it takes them: stdin is always passed, on a\n"
    "                           terminal when stdin is one\n"
    "\n"
    "Examples:\n"
    "  kubectl diag shell pod/distroless\n"
    "  kubectl diag shell -l app=distroless -- -c 'ls /; top -n 1'\n"
    "  echo 'cat /etc/os-release' | kubectl diag shell pod/distroless\n"
    "\n";

static const char exec_help[] =
    "Usage: kubectl diag exec [-i] [--tty | -it] [--tools] [flags] -- COMMAND [ARGS...]\n"
    "\n"
    "Runs COMMAND inside the target container with the container's environment: one of its\n"
    "own programs (a name is looked up in its PATH), as the container's user like kubectl exec,\n"
    "or, with --tools, a busybox applet of the debug image (ls, ps, wget, nslookup, ...) that\n"
    "the image itself lacks, as root.\n"
    "The exit code is the command's (128+N when signal N ended it; 127 when it was not found,\n"
    "126 when it could not be executed, with a line saying why).\n"
    "\n"
    "  -i, --stdin              pass stdin to the command (else it reads an empty input)\n"
    "      --tty                run it on a terminal (needs stdin to be one); -it: both\n"
    "      --tools              COMMAND is a busybox applet of the debug image\n"
    "\n"
    "Examples:\n"
    "  kubectl diag exec pod/nginx -- nginx -T           # the image's own program\n"
    "  kubectl diag exec --tools -l app=distroless -- ls -l /\n"
    "  kubectl diag exec -it pod/app -- /app/cli         # stdin and a terminal\n"
    "\n";

static const char logs_help[] =
    "Usage: kubectl diag logs [--all | -l SELECTOR[:CONTAINER] ... | [--pod] NAME[:CONTAINER] ... |\n"
    "                          deploy/NAME[:CONTAINER] ...]\n"
    "                         [-c CONTAINER] [--tail N] [--since D] [-d DURATION]\n"
    "                         [-- COMMAND ARGS...]\n"
    "\n"
    "Follows the logs of every selected container, each line prefixed [pod/container] in a\n"
    "colour of its own (when stdout is a terminal), starting with the last 10 lines of each.\n"
    "Pods that appear later and restarted containers are followed from their start; a stream\n"
    "that breaks while its container runs is resumed where it stopped.\n"
    "At most 256 containers are followed at once: when more match (those of deleted pods count\n"
    "until they end), it says how many, once.\n"
    "Without a command it follows until Ctrl-C (exit 0). With a command it starts following,\n"
    "runs the command (its output on stdout) and shows only what was logged since it started,\n"
    "keeps following for the drain duration after the command exits, then exits with the\n"
    "command's exit code.\n"
    "\n"
    "  --all                    every pod of the namespace\n"
    "  -c, --container NAME     only this container (default: all of each pod's containers)\n"
    "  -d, --drain-duration D   how long to keep following after the command (default 500ms;\n"
    "                           only with a command)\n"
    "  -f, --follow             taken as kubectl logs takes it: logs always follows\n"
    "      --tail N             start with each container's last N lines (default 10; -1: all)\n"
    "      --since D            start with what was logged in the last D (30s, 5m, 2h), all of it\n"
    "                           unless --tail says (both only without a command)\n"
    "\n"
    "Examples:\n"
    "  kubectl diag logs -l app=nginx -l app=curl\n"
    "  kubectl diag logs --pod nginx:nginx -- curl -s http://localhost:8080/\n"
    "  kubectl diag logs deploy/web sts/db:db        # every replica of both\n"
    "\n";

static const char capture_help[] =
    "Usage: kubectl diag capture [-i IFACE] [-f FILTER] [-s SNAPLEN] [-c COUNT] [-d DURATION]\n"
    "                            [--format pcap|pcapng] [--all-pods] [-w FILE|-] [flags]\n"
    "\n"
    "Captures the pod's packets (all its containers share one network namespace) and writes them\n"
    "as pcap to FILE or, with -w -, to stdout; progress and the summary go to stderr. The filter\n"
    "runs in the pod's kernel. Stops after COUNT packets, after DURATION, or on Ctrl-C (exit 0);\n"
    "then prints the packets captured and dropped (by the kernel when the capture could not keep\n"
    "up, and lost in the stream). The file is valid at any point it stops. The debug container\n"
    "needs only the NET_RAW capability. A filter or interface the pod rejects exits 2.\n"
    "--all-pods captures every running pod of -l or a workload at once into one pcapng file,\n"
    "and those that start later: each pod's interfaces are named in it (\"pod/web-1 eth0\"), a\n"
    "summary per pod on stderr; COUNT applies to each pod, DURATION to the whole command.\n"
    "\n"
    "  -i, --interface IFACE    one interface (Ethernet link type); default: all of them\n"
    "                           (\"any\", link type LINUX_SLL2: each packet names its interface)\n"
    "  -f, --filter FILTER      what to capture, in tcpdump's filter syntax (pcap-filter(7))\n"
    "  -s, --snaplen BYTES      bytes kept per packet (default and maximum: 262144)\n"
    "  -c, --count N            stop after N packets\n"
    "  -d, --duration D         stop after D (e.g. 30s, 5m)\n"
    "  -w, --write FILE|-       the pcap file; - for stdout (default: stdout, unless a terminal)\n"
    "      --format pcap|pcapng pcapng names the pod and its interfaces (default: pcap for one\n"
    "                           pod, pcapng with --all-pods)\n"
    "      --all-pods           every running pod of -l SELECTOR or deploy/NAME, new ones too,\n"
    "                           into one file\n"
    "\n"
    "Examples:\n"
    "  kubectl diag capture -l app=web -f 'tcp port 80' -w web.pcap\n"
    "  kubectl diag capture pod/api -i eth0 -c 100 -w - | tcpdump -nr -\n"
    "  kubectl diag capture -l app=web -w - | wireshark -k -i -\n"
    "  kubectl diag capture deploy/web --all-pods -f 'tcp port 80' -w web.pcapng\n"
    "\n";

static const char list_help[] =
    "Usage: kubectl diag list [-A] [-l SELECTOR | pod/NAME | deploy/NAME ...] [flags]\n"
    "\n"
    "Lists the debug containers kubectl diag added to the namespace's pods: POD CONTAINER IMAGE\n"
    "STATE AGE. Ephemeral containers cannot be removed; they stop when their pod is replaced.\n"
    "\n"
    "  -A, --all-namespaces     of every namespace (a NAMESPACE column first)\n"
    "\n"
    "Examples:\n"
    "  kubectl diag list -n prod\n"
    "  kubectl diag list -A\n"
    "\n";

static const char forwards_help[] =
    "Usage: kubectl diag forwards [--stop] [pod/NAME] [-n NAMESPACE] [--context NAME] [flags]\n"
    "\n"
    "Lists the port-forwards that commands run with --keep-forward (or $KDIAG_KEEP_FORWARD)\n"
    "left running on this machine, for every kubeconfig, context and namespace: POD NAMESPACE\n"
    "CONTEXT (\"-\": the kubeconfig's current one) LOCAL KEEPER (its PID) IDLE (since the last\n"
    "command used it) ENDS IN (when no command uses it before; \"in use (then 10m)\" while a\n"
    "command uses it: it ends 10m after the last one ends). With pod/NAME, -n or --context,\n"
    "only those to that pod, in that namespace, or started with that --context; pod/NAME is the\n"
    "pod of the current context's namespace (or default) unless -n names another. --stop ends\n"
    "them: each keeper ends its kubectl port-forward and exits; one that a command uses is no\n"
    "longer offered and ends when the commands using it end.\n"
    "\n"
    "Flags:\n"
    "      --stop               end the kept port-forwards listed\n"
    "  -n, --namespace NAME     only those to pods in this namespace\n"
    "      --context NAME       only those started with --context NAME\n"
    "\n"
    "Examples:\n"
    "  kubectl diag forwards\n"
    "  kubectl diag forwards --stop pod/web-0\n"
    "  kubectl diag forwards --stop -n prod\n"
    "  kubectl diag forwards --stop\n"
    "\n";

static const char manage_help[] =
    "Usage: kubectl diag manage [flags]\n"
    "\n"
    "(development) Ensures the manager runs in the pod and prints \"<container> <grpc port>\";\n"
    "with -v also its token, for grpcurl through kubectl port-forward.\n"
    "\n"
    "Examples:\n"
    "  kubectl diag manage pod/nginx -v\n"
    "\n";

static const char cp_help[] =
    "Usage: kubectl diag cp POD:/PATH LOCAL\n"
    "       kubectl diag cp POD:/FILE -\n"
    "       kubectl diag cp LOCAL POD:/PATH\n"
    "       kubectl diag cp - POD:/PATH\n"
    "\n"
    "Copies files and directories (recursively) between the target container and this\n"
    "machine through the debug container's manager: the container needs no tar, nor any other\n"
    "program. Like cp -r: an existing directory as DEST receives SOURCE under its name, any other\n"
    "DEST is SOURCE's new name; DIR/. copies a directory's contents. Modes, mtimes and owners\n"
    "(locally: when run as root) are kept, symlinks are copied as links, sparse files stay sparse.\n"
    "Paths in the pod are resolved inside the container's root: '..' and absolute symlinks\n"
    "cannot leave it. Nothing half-written is ever left under the final name: each file is\n"
    "written under a temporary name and renamed when complete; on an error or Ctrl-C the\n"
    "temporaries are removed, and a file that shrinks while it is read (truncated meanwhile)\n"
    "ends the copy rather than arrive padded with zeros. POD is NAME, pod/NAME, NAMESPACE/NAME\n"
    "(as kubectl cp takes it) or a workload (deploy/NAME, sts/NAME, svc/NAME...: its newest\n"
    "Running pod); ':PATH' takes the pod of --pod or -l. LOCAL '-' is stdout out of the pod\n"
    "(one regular file's content, holes as zeros; a directory is refused) and stdin into it, as\n"
    "a file named stdin (a file there goes as it is; a pipe is read to its end into $TMPDIR\n"
    "first); a file named - is written ./-.\n"
    "A progress line is drawn on stderr when it is a terminal. After '--' every word is a path,\n"
    "even one that starts with '-'.\n"
    "\n"
    "Examples:\n"
    "  kubectl diag cp pod/web:/etc/nginx ./nginx    # a directory out of the pod\n"
    "  kubectl diag cp ./fix.conf web:/etc/nginx/     # a file into an existing directory\n"
    "  kubectl diag cp web:/etc/nginx/nginx.conf - | less\n"
    "  echo 'debug = true' | kubectl diag cp - web:/tmp/app.conf\n"
    "  kubectl diag cp -l app=web -t app :/var/log/app.log .\n"
    "\n";

static const char version_help[] =
    "Usage: kubectl diag version\n\nPrints the version of kubectl-diag and the debug image it uses.\n\n"
    "Examples:\n"
    "  kubectl diag version --dbg-image registry.example.com/kdiag-manager:0.1.0\n"
    "\n";

static const char completion_help[] =
    "Usage: kubectl diag completion bash|zsh\n"
    "\n"
    "Prints a completion script for kubectl-diag. kubectl itself completes 'kubectl diag ...'\n"
    "through the kubectl_complete-diag script installed next to kubectl-diag. Both offer the\n"
    "commands, flags, pods, workloads, namespaces and contexts (asking kubectl), and after -c or\n"
    "-t (or in --container=, --target=, -cNAME, -tNAME) the containers of the pod on the\n"
    "line.\n"
    "\n"
    "Examples:\n"
    "  source <(kubectl diag completion bash)\n"
    "  kubectl diag completion zsh > \"${fpath[1]}/_kubectl-diag\"\n"
    "\n";

void help_print(FILE *out, flags_cmd cmd)
{
    const char *body;
    switch (cmd) {
    case FLAGS_CMD_REDIR: body = redir_help; break;
    case FLAGS_CMD_PS: body = ps_help; break;
    case FLAGS_CMD_SHELL: body = shell_help; break;
    case FLAGS_CMD_EXEC: body = exec_help; break;
    case FLAGS_CMD_LOGS: body = logs_help; break;
    case FLAGS_CMD_CAPTURE: body = capture_help; break;
    case FLAGS_CMD_LIST: body = list_help; break;
    case FLAGS_CMD_FORWARDS: body = forwards_help; break;
    case FLAGS_CMD_CP: body = cp_help; break;
    case FLAGS_CMD_MANAGE: body = manage_help; break;
    case FLAGS_CMD_VERSION: body = version_help; break;
    case FLAGS_CMD_COMPLETION: body = completion_help; break;
    default: body = main_help; break;
    }
    fputs(body, out);
    fputs(global_flags, out);
    fputc('\n', out);
    fputs(exit_codes, out);
}
