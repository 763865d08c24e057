"""Pods as network namespaces: what kubelet and a CNI bridge plugin do for each pod, on one machine.

Kubernetes gives every pod a network namespace (the "pause" sandbox), a CNI plugin gives it an
interface and an address (the reference ``bridge`` plugin: a veth pair, one end in the pod as
``eth0``, the other on a bridge on the node, https://www.cni.dev/plugins/current/main/bridge/), and
cluster DNS resolves Service names to ClusterIPs. Here:

- ``node``  — the run's node: a network namespace mesh creates holding the bridge (no uplink, no
  link to the root namespace), blackhole routes for the pod and Service ranges in the root
  namespace (installed before the first pod, so a mistake fails at once instead of leaving the
  machine), and the pods, each a namespace named ``<run prefix>-<pod>.<namespace>``;
- ``pod``   — one pod sandbox: run a command inside it (``ip netns exec``) with a given uid/gid;
- ``hosts`` — the pod's ``/etc/hosts`` (``/etc/netns/<name>/hosts``): Service names and FQDNs to
  ClusterIPs, as cluster DNS answers;
- ``state`` — ``/run/mesh/<run>.json``, what a run made, so a killed run's leftovers are removed at
  the next start (only runs whose process is gone), and parallel runs never touch each other's;
- ``portforward`` — ``127.0.0.1:<port>`` in the root namespace to a pod address, like ``kubectl
  port-forward``: a forwarder inside the pod listens on a Unix socket, which crosses namespaces.

Names carry a per-run prefix (``mesh<pid>.<n>``). ClusterIPs are routed nowhere: a sidecar's
iptables rules (``mesh.iptables``) capture them, as in a mesh without kube-proxy in the path.
"""
