"""The kubesim runtime's parts, one job each; ../runtime.py assembles them into the Runtime the API
server drives. stage.py is not imported: it runs as its own process (see its docstring).

  host        small OS helpers (commands, files, process start times, log lines)
  stages      the record of everything created (state.json) and the start of stage.py processes
  sandbox     the node (netns, bridge, cgroup root) and a pod's sandbox (pause, veth, IP, hosts)
  images      the image store and the names a runtime reports for an image
  caps        capability sets (containerd's default set + add - drop)
  ctrspec     what a container process runs with: argv and environment
  containers  a container's lifecycle: pull, start, wait, restart with back-off
  status      the pod status the kubelet would report
  execs       exec sessions in a running container
  logs        the container log files
"""
