# shellcheck shell=bash
# The local node of hack/cluster.sh (sourced by it; uses its log/die/start/stop/alive/wait_for/sign/
# write_kubeconfig helpers and its STATE, PKI, RUN, LOGS, BIN, SERVICE_CIDR variables).
#
# One node per cluster, in a network namespace of its own so that nothing it does reaches the host's
# network configuration, and several clusters (a developer's and a test session's) can run side by side:
#
#   host (root netns)                               netns visionops-node-<n>
#   vonode<n> 172.31.<n>.1/30  <---- veth ---->    eth0 172.31.<n>.2/30 (node InternalIP), default via .1
#   coredns on 172.31.<n>.1:53                     containerd, kubelet, kube-proxy (iptables mode)
#   route 10.244.<n>.0/24 via 172.31.<n>.2         cni0 bridge 10.244.<n>.1/24, pods 10.244.<n>.0/24
#
# The node components reach the apiserver at ADVERTISE_ADDRESS (the host's address, routed through the
# veth), so the apiserver binds 0.0.0.0. Service traffic is DNATed by kube-proxy inside the netns; the
# bridge plugin masquerades pod traffic that leaves the pod network. Pods reach the host (the apiserver,
# an MLflow server bound to 0.0.0.0) but nothing beyond it. `down` deletes the netns, which takes the
# veth, the bridge, the routes and every iptables rule of the node with it.

NODE_NAME=${NODE_NAME:-visionops-node}
NODE_DIR=$STATE/node
NODE_ENV=$NODE_DIR/node.env
NODE_OWNERS=/run/visionops-node        # claims on node indexes: <n>.owner holds the state dir using it
CLUSTER_DNS_IP=${CLUSTER_DNS_IP:-10.0.0.10}
CLUSTER_DOMAIN=cluster.local
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}
CONTAINERD_SOCK=$NODE_DIR/containerd/containerd.sock
NODE_COMPONENTS=(kubelet kube-proxy coredns containerd)

# ---- index, addresses -----------------------------------------------------------------------------
node_vars() {  # node_vars N: set the names and addresses derived from the node index N
  NODE_INDEX=$1
  NETNS=visionops-node-$1
  HOST_VETH=vonode$1
  HOST_IP=172.31.$1.1
  NODE_IP=172.31.$1.2
  POD_CIDR=10.244.$1.0/24
  POD_GATEWAY=10.244.$1.1
  CGROUP_ROOT=/visionops-node-$1
}

load_node_env() {
  [[ -f $NODE_ENV ]] || return 1
  local n
  n=$(sed -n 's/^NODE_INDEX=\([0-9]*\)$/\1/p' "$NODE_ENV")
  [[ -n $n ]] || return 1
  node_vars "$n"
}

owner_of() { cat "$NODE_OWNERS/$1.owner" 2>/dev/null || true; }

# index_free N: no live cluster but this one owns node index N (a claim whose state dir is gone is stale).
index_free() {
  local owner
  owner=$(owner_of "$1")
  [[ $owner == "$STATE" ]] && return 0
  [[ -n $owner && -d $owner ]] && return 1
  [[ -n $owner ]] && return 0
  ! ip netns list 2>/dev/null | grep -qw "visionops-node-$1" && ! ip link show "vonode$1" >/dev/null 2>&1
}

# claim_node_index: reuse this cluster's previous index if free, else the lowest free one in 1..250.
claim_node_index() {
  mkdir -p "$NODE_OWNERS"
  exec 8>"$NODE_OWNERS/.lock"
  flock 8
  local prev="" n
  load_node_env && prev=$NODE_INDEX
  for n in $prev $(seq 1 250); do
    index_free "$n" || continue
    node_vars "$n"
    node_network_down  # leftovers of a stale claim
    printf '%s\n' "$STATE" >"$NODE_OWNERS/$n.owner"
    mkdir -p "$NODE_DIR"
    printf 'NODE_INDEX=%s\n' "$n" >"$NODE_ENV"
    flock -u 8; exec 8>&-
    return
  done
  flock -u 8; exec 8>&-
  die "no free node index in 1..250 (claims in $NODE_OWNERS)"
}

in_netns() { nsenter --net="/run/netns/$NETNS" "$@"; }

# ---- prerequisites -----------------------------------------------------------------------------
check_node_prereqs() {
  local missing=() b
  ((EUID == 0)) || die "the node needs root (network namespaces, mounts, cgroups)"
  for b in containerd runc ctr iptables ip nsenter; do command -v "$b" >/dev/null || missing+=("$b"); done
  for b in bridge host-local portmap loopback; do [[ -x $CNI_BIN_DIR/$b ]] || missing+=("$CNI_BIN_DIR/$b"); done
  ((${#missing[@]} == 0)) || die "missing ${missing[*]}: run 'sudo hack/node-deps.sh node'"
  for b in kubelet kube-proxy coredns crictl; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: run 'hack/build-k8s.sh --node' (make cluster-up NODE=1 does)"
  done
  NODE_IMAGES_DIR=$(dirname "$BIN")/images
  for b in pause probe; do
    [[ -f $NODE_IMAGES_DIR/$b.tar ]] || die "$NODE_IMAGES_DIR/$b.tar is missing: run 'hack/build-k8s.sh --node'"
  done
  [[ -f /sys/fs/cgroup/cgroup.controllers ]] \
    && die "this host has cgroup v2 only; the local node supports cgroup v1 (use kind there: docs/kind.md)"
  ((${#CONTAINERD_SOCK} < 100)) || die "state dir path too long for a unix socket: $CONTAINERD_SOCK"
  [[ $ADVERTISE_ADDRESS != 127.* ]] \
    || die "the node reaches the apiserver at ADVERTISE_ADDRESS, which is loopback ($ADVERTISE_ADDRESS); set it to this host's address"
}

# ---- network -----------------------------------------------------------------------------------------
node_network_up() {
  ip netns add "$NETNS"
  ip link add "$HOST_VETH" type veth peer name eth0 netns "$NETNS"
  ip addr add "$HOST_IP/30" dev "$HOST_VETH"
  ip link set "$HOST_VETH" up
  in_netns ip link set lo up
  in_netns ip addr add "$NODE_IP/30" dev eth0
  in_netns ip link set eth0 up
  in_netns ip route add default via "$HOST_IP"
  ip route add "$POD_CIDR" via "$NODE_IP" dev "$HOST_VETH"
  in_netns sysctl -qw net.ipv4.ip_forward=1
  in_netns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
}

node_network_down() {
  if ip netns list 2>/dev/null | grep -qw "$NETNS"; then
    ip netns delete "$NETNS" && log "deleted network namespace $NETNS"
  fi
  # Deleting the netns takes the veth pair with it, but the kernel removes the host end asynchronously: a
  # delete can race that and find no device. What matters is that it is gone.
  local _
  for _ in $(seq 1 50); do
    ip link show "$HOST_VETH" >/dev/null 2>&1 || return 0
    ip link delete "$HOST_VETH" 2>/dev/null || true
    sleep 0.1
  done
  die "host veth $HOST_VETH is still there after 5 s"
}

write_cni_config() {
  mkdir -p "$NODE_DIR/cni/net.d" "$NODE_DIR/cni/ipam"
  cat >"$NODE_DIR/cni/net.d/10-visionops.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "visionops",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# ---- cgroups (v1): the kubelet's cgroupRoot, in every hierarchy ---------------------------------
cgroup_hierarchies() {
  awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts | grep '^/sys/fs/cgroup/'
}

node_cgroups_up() {
  local h
  for h in $(cgroup_hierarchies); do
    mkdir -p "$h$CGROUP_ROOT"
    if [[ -f $h/cpuset.cpus ]]; then
      cat "$h/cpuset.cpus" >"$h$CGROUP_ROOT/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h$CGROUP_ROOT/cpuset.mems"
    fi
  done
}

# node_cgroups_down: kill what is left in the node's cgroups, then remove them (deepest first).
node_cgroups_down() {
  local h d pids
  for h in $(cgroup_hierarchies); do
    [[ -d $h$CGROUP_ROOT ]] || continue
    pids=$(find "$h$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    if [[ -n $pids ]]; then
      log "killing processes left in $h$CGROUP_ROOT: $(tr '\n' ' ' <<<"$pids")"
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
      sleep 0.5
    fi
    # -depth: children before parents; rmdir, not rm: cgroup dirs only go away empty.
    find "$h$CGROUP_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d $h$CGROUP_ROOT ]] && log "WARNING: could not remove cgroup $h$CGROUP_ROOT"
  done
  return 0
}

# ---- containerd --------------------------------------------------------------------------------------
write_containerd_config() {
  local d=$NODE_DIR/containerd
  mkdir -p "$d/root" "$d/state"
  cat >"$d/config.toml" <<EOF
# containerd for the local node of $STATE (hack/node/node.sh): own root, state and socket.
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  level = "warn"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Root lacks CAP_SYS_RESOURCE here: without this every sandbox fails with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$d/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$NODE_DIR/cni/net.d"
    max_conf_num = 1
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
EOF
}

ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }
crictl_() { "$BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 30s "$@"; }

import_node_images() {
  local name
  for name in pause probe; do
    ctr_ images import --no-unpack=false "$NODE_IMAGES_DIR/$name.tar" >/dev/null \
      || die "importing $NODE_IMAGES_DIR/$name.tar into containerd failed"
  done
  log "imported $PAUSE_IMAGE and $PROBE_IMAGE"
}

# ---- certificates and kubeconfigs ---------------------------------------------------------------
ensure_node_pki() {
  [[ -f $PKI/.complete-node-v1 ]] && return
  local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  sign ca kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
  sign ca kube-proxy "/CN=system:kube-proxy" "$client"
  sign ca coredns "/CN=system:coredns" "$client"
  touch "$PKI/.complete-node-v1"
}

# write_node_kubeconfig FILE USER: like write_kubeconfig, but for the apiserver's host address.
write_node_kubeconfig() {
  write_kubeconfig "$1" "$2"
  sed -i "s#server: https://127.0.0.1:#server: https://$ADVERTISE_ADDRESS:#" "$1"
}

# ---- components -------------------------------------------------------------------------------------
start_containerd() {
  write_containerd_config
  start_exe containerd nsenter --net="/run/netns/$NETNS" "$(command -v containerd)" --config "$NODE_DIR/containerd/config.toml"
  wait_for containerd "containerd's CRI socket" crictl_ info
}

start_kubelet() {
  mkdir -p "$NODE_DIR/kubelet/pki" "$NODE_DIR/pod-logs"
  write_node_kubeconfig "$NODE_DIR/kubelet.kubeconfig" kubelet
  cat >"$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
# cgroup v1 here; failCgroupV1: false becomes necessary from Kubernetes 1.35.
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$CLUSTER_DNS_IP]
resolvConf: /etc/resolv.conf
podLogsDir: $NODE_DIR/pod-logs
failSwapOn: false
# Locally built images cannot be pulled again: never garbage-collect them; evict only when nearly full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
# An image import fills the disk for a minute (layer blobs, dropped once unpacked): lift the disk-pressure
# taint 30 s after that, not the default 5 min.
evictionPressureTransitionPeriod: 30s
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
EOF
  start_exe kubelet nsenter --net="/run/netns/$NETNS" "$BIN/kubelet" \
    --config="$NODE_DIR/kubelet.yaml" --kubeconfig="$NODE_DIR/kubelet.kubeconfig" \
    --root-dir="$NODE_DIR/kubelet" --cert-dir="$NODE_DIR/kubelet/pki" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
  wait_for kubelet "the kubelet's /healthz" in_netns curl -sf --max-time 2 http://127.0.0.1:10248/healthz
}

start_kube_proxy() {
  write_node_kubeconfig "$NODE_DIR/kube-proxy.kubeconfig" kube-proxy
  cat >"$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $NODE_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Inside a network namespace: leave the host-wide conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false, syncPeriod: 30s, minSyncPeriod: 1s}
EOF
  start_exe kube-proxy nsenter --net="/run/netns/$NETNS" "$BIN/kube-proxy" --config="$NODE_DIR/kube-proxy.yaml"
  wait_for kube-proxy "kube-proxy's /healthz" in_netns curl -sf --max-time 2 http://127.0.0.1:10256/healthz
}

# CoreDNS runs on the host side of the veth (so it forwards other names to the host's resolvers) and
# serves the cluster as the kube-dns Service, whose EndpointSlice points at it.
start_coredns() {
  mkdir -p "$NODE_DIR/coredns"
  write_kubeconfig "$NODE_DIR/coredns.kubeconfig" coredns
  cat >"$NODE_DIR/coredns/Corefile" <<EOF
.:53 {
    bind $HOST_IP
    errors
    ready $HOST_IP:8181
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $NODE_DIR/coredns.kubeconfig visionops-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    forward . /etc/resolv.conf
    cache 30
    loop
    loadbalance
}
EOF
  kubectl apply --server-side --force-conflicts -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $CLUSTER_DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: cluster.sh.visionops.io
addressType: IPv4
endpoints:
- addresses: ["$HOST_IP"]
  conditions: {ready: true}
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
EOF
  start coredns -conf "$NODE_DIR/coredns/Corefile"
  wait_for coredns "CoreDNS /ready" curl -sf --max-time 2 "http://$HOST_IP:8181/ready"
}

node_ready() {
  [[ $(kubectl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

# start_node: network, cgroups, containerd (+ the static images), kubelet, kube-proxy, CoreDNS.
start_node() {
  check_node_prereqs
  PAUSE_IMAGE=visionops.local/pause:0.1.0
  PROBE_IMAGE=visionops.local/probe:0.1.0
  ensure_node_pki
  claim_node_index
  log "node $NODE_NAME: netns $NETNS, node IP $NODE_IP, pods $POD_CIDR, DNS $CLUSTER_DNS_IP -> $HOST_IP"
  node_network_up
  node_cgroups_up
  write_cni_config
  # No sandbox survives `down`, so no address is in use: forget stale host-local reservations.
  rm -rf "$NODE_DIR/cni/ipam" && mkdir -p "$NODE_DIR/cni/ipam"
  start_containerd
  import_node_images
  start_kubelet
  start_kube_proxy
  start_coredns
  wait_for kubelet "node $NODE_NAME Ready" node_ready
  log "node $NODE_NAME ready"
}

node_alive() { local c; for c in "${NODE_COMPONENTS[@]}"; do alive "$c" || return 1; done; }

# stop_node: the kubelet first (nothing restarts pods), then every pod sandbox through the CRI (which
# unmounts its volumes and releases its network), then the rest; finally sweep what could be left:
# shims, mounts under the state dir, cgroups, the netns, the claim.
stop_node() {
  load_node_env || return 0
  stop kubelet
  if alive containerd; then
    local pods
    pods=$(crictl_ pods -q 2>/dev/null || true)
    if [[ -n $pods ]]; then
      # shellcheck disable=SC2086
      crictl_ stopp $pods >/dev/null 2>&1 || log "WARNING: crictl stopp failed"
      # shellcheck disable=SC2086
      crictl_ rmp -f $pods >/dev/null 2>&1 || log "WARNING: crictl rmp failed"
      log "removed $(wc -w <<<"$pods") pod sandbox(es)"
    fi
  fi
  stop kube-proxy
  stop coredns
  stop containerd
  sweep_node
}

sweep_node() {
  local pid pids=() m
  # containerd-shim-runc-v2 processes of this containerd (they run in their own process groups).
  for pid in $(pgrep -f "containerd-shim.* -address $CONTAINERD_SOCK" 2>/dev/null || true); do pids+=("$pid"); done
  if ((${#pids[@]})); then log "killing leftover shims: ${pids[*]}"; kill -KILL "${pids[@]}" 2>/dev/null || true; fi
  # The cgroups, netns and veth named after the index are ours only while we hold its claim: after a
  # `down`, another cluster may have claimed the index.
  local owner
  owner=$(owner_of "$NODE_INDEX")
  [[ -z $owner || $owner == "$STATE" ]] && node_cgroups_down
  # Mounts under the node dir (container rootfs, shm, netns, volumes), deepest first.
  awk -v p="$NODE_DIR/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    if umount -l "$m" 2>/dev/null; then log "unmounted $m"; fi
  done
  [[ -z $owner || $owner == "$STATE" ]] && node_network_down
  # The kubelet links every container log into /var/log/containers; drop links into our pod-logs dir.
  find /var/log/containers -maxdepth 1 -type l -lname "$NODE_DIR/pod-logs/*" -delete 2>/dev/null || true
  [[ $owner == "$STATE" ]] && rm -f "$NODE_OWNERS/$NODE_INDEX.owner"
  sweep_host_paths
  return 0
}

# sweep_host_paths: the few fixed host paths a node uses whatever its configuration: the kubelet's
# device-plugin socket (a constant in the kubelet), the CNI result cache and the shim socket dir. The
# socket goes when no kubelet runs any more; the dirs only when empty (others recreate them on use).
sweep_host_paths() {
  if ! pgrep -x kubelet >/dev/null 2>&1; then rm -f /var/lib/kubelet/device-plugins/kubelet.sock; fi
  rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet /var/lib/cni/results /var/lib/cni \
    /run/containerd/s /run/containerd 2>/dev/null || true
}

node_status() {
  local c
  load_node_env || { echo "node: none"; return 0; }
  for c in "${NODE_COMPONENTS[@]}"; do
    if alive "$c"; then echo "$c: running (pid $(proc_pid "$RUN/$c.pid"))"; else echo "$c: stopped"; fi
  done
  echo "node: $NODE_NAME netns $NETNS IP $NODE_IP pods $POD_CIDR containerd $CONTAINERD_SOCK"
}
