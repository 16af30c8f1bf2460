#!/usr/bin/env bash
# A real local Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager
# (+ kube-scheduler on request), with generated certificates, RBAC enforced, state outside the repo.
# No node: pods stay Pending here. Where pods must run, use the kind cluster (hack/kind.sh, make kind-up).
#
# Usage:
#   hack/cluster.sh up       start (or reuse) the cluster; last stdout line: the admin kubeconfig path
#   hack/cluster.sh down     stop every process of this cluster; `down --purge` also deletes its state
#   hack/cluster.sh env      print `export KUBECONFIG=... PATH=...` (use: eval "$(hack/cluster.sh env)")
#   hack/cluster.sh status   show each component and /readyz; exit 1 unless the cluster is up
#
# Environment:
#   VISIONOPS_CLUSTER_DIR   state dir (default ${VISIONOPS_CACHE:-$HOME/.cache/visionops}/cluster);
#                           one cluster per dir, so several clusters can run side by side
#   VISIONOPS_K8S_BIN       dir holding the binaries (default: hack/build-k8s.sh --print-bin-dir)
#   VISIONOPS_SCHEDULER=1   also run kube-scheduler (same as `up --scheduler`)
#   APISERVER_PORT, ETCD_PORT, ETCD_PEER_PORT, KCM_PORT, SCHEDULER_PORT
#                           fixed ports; unset ones are picked at random among free ones
#   ADVERTISE_ADDRESS       address in the `kubernetes` Service's endpoints (default: this host's
#                           primary IPv4; the apiserver refuses a loopback one there)
#   UP_TIMEOUT              seconds to wait for readiness (default 90)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VISIONOPS_CACHE:-$HOME/.cache/visionops}
STATE=${VISIONOPS_CLUSTER_DIR:-$CACHE/cluster}
PKI=$STATE/pki
RUN=$STATE/run
LOGS=$STATE/logs
KUBECONFIG_PATH=$STATE/admin.kubeconfig
PORTS_FILE=$STATE/ports.env
SERVICE_CIDR=${SERVICE_CIDR:-10.0.0.0/24}
SERVICE_IP=${SERVICE_IP:-10.0.0.1}       # first address of SERVICE_CIDR: the `kubernetes` Service
BIND_ADDRESS=127.0.0.1                    # controller-manager, scheduler (health and metrics only)
APISERVER_BIND_ADDRESS=127.0.0.1
UP_TIMEOUT=${UP_TIMEOUT:-90}
# Stop order for `down`: the control plane, etcd last.
STOP_ORDER=(kube-scheduler kube-controller-manager kube-apiserver etcd)

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- binaries ------------------------------------------------------------------------------------
bin_dir() {
  local dir=${VISIONOPS_K8S_BIN:-$("$HERE/build-k8s.sh" --print-bin-dir)} b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x $dir/$b ]] || die "$dir/$b is missing: run 'make k8s-binaries' (hack/build-k8s.sh) first"
  done
  printf '%s\n' "$dir"
}

# ---- ports ---------------------------------------------------------------------------------------
# shellcheck source=lib/ports.sh
source "$HERE/lib/ports.sh"  # port_busy, free_port, choose_ports FILE NAME...

load_ports() {
  [[ -f $PORTS_FILE ]] || return 1
  local name value
  while IFS='=' read -r name value; do [[ -n $name ]] && printf -v "$name" '%s' "$value"; done <"$PORTS_FILE"
}

# The `kubernetes` Service's endpoints may not be loopback, so advertise the host's primary IPv4.
advertise_address() {
  local ip
  ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
  [[ -n $ip ]] || ip=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -m1 -E '^[0-9]+(\.[0-9]+){3}$' || true)
  printf '%s\n' "${ip:-127.0.0.1}"
}

# ---- certificates --------------------------------------------------------------------------------
# make_ca NAME CN: a self-signed EC P-256 CA, $PKI/NAME.{key,crt}.
make_ca() {
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$1.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/$1.crt" 2>/dev/null
}

# sign CA NAME SUBJECT EXTENSIONS: EC P-256 key + certificate $PKI/NAME.{key,crt} signed by $PKI/CA.
sign() {
  local ca=$1 name=$2 subject=$3 ext=$4
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile <(printf '%s\n' "$ext") -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr"
}

ensure_pki() {
  [[ -f $PKI/.complete-v2 ]] && return
  log "generating certificates and service-account keys in $PKI"
  rm -rf "$PKI" && mkdir -p "$PKI" && chmod 700 "$PKI"
  local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  make_ca ca visionops-local-ca
  sign ca apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$SERVICE_IP,IP:$ADVERTISE_ADDRESS,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local${EXTRA_SANS:+,$EXTRA_SANS}"
  sign ca admin "/O=system:masters/CN=kubernetes-admin" "$client"
  sign ca controller-manager "/CN=system:kube-controller-manager" "$client"
  sign ca scheduler "/CN=system:kube-scheduler" "$client"
  sign ca apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  # Aggregation layer: the apiserver trusts X-Remote-* headers only from this client.
  make_ca front-proxy-ca visionops-front-proxy-ca
  sign front-proxy-ca front-proxy-client "/CN=front-proxy-client" "$client"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  touch "$PKI/.complete-v2"
}

# write_kubeconfig FILE USER: a self-contained kubeconfig for the client cert $PKI/USER.{crt,key}.
write_kubeconfig() {
  local file=$1 user=$2
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: visionops-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$user.crt")
    client-key-data: $(base64 -w0 "$PKI/$user.key")
contexts:
- name: visionops-local
  context:
    cluster: visionops-local
    user: $user
current-context: visionops-local
EOF
  chmod 600 "$file.tmp" && mv -f "$file.tmp" "$file"
}

# ---- processes -----------------------------------------------------------------------------------
# shellcheck source=lib/proc.sh
source "$HERE/lib/proc.sh"  # proc_start, proc_alive, proc_pid, proc_stop, proc_wait

# alive NAME: the recorded process runs (same pid and start time; see lib/proc.sh).
alive() { proc_alive "$RUN/$1.pid"; }

# start NAME ARGS...: run $BIN/NAME in its own session (process group); its pid is the group id.
start() { local name=$1; shift; start_exe "$name" "$BIN/$name" "$@"; }

# start_exe NAME COMMAND...: the same for any command that ends up exec-ing NAME (nsenter does).
start_exe() {
  local name=$1; shift
  log "starting $name (log: $LOGS/$name.log)"
  proc_start "$RUN/$name.pid" "$LOGS/$name.log" "$@"
}

stop() { proc_stop "$RUN/$1.pid" "$1"; }

# wait_for NAME DESCRIPTION COMMAND...: poll COMMAND until it succeeds; fail fast if NAME died.
wait_for() { local name=$1; shift; proc_wait "$RUN/$name.pid" "$name" "$LOGS/$name.log" "$UP_TIMEOUT" "$@"; }

https_ok() {  # https_ok PORT PATH: admin-authenticated GET returns "ok"
  [[ $(curl -s --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
        "https://127.0.0.1:$1$2") == ok ]]
}
insecure_ok() { [[ $(curl -sk --max-time 2 "https://127.0.0.1:$1$2") == ok ]]; }
etcd_ok() { curl -s --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
kubectl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# ---- components ----------------------------------------------------------------------------------
start_etcd() {
  mkdir -p "$STATE/etcd" && chmod 700 "$STATE/etcd"
  start etcd --name=visionops --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="visionops=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level=warn
  wait_for etcd "etcd /health" etcd_ok
}

start_apiserver() {
  start kube-apiserver --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address="$APISERVER_BIND_ADDRESS" --secure-port="$APISERVER_PORT" --advertise-address="$ADVERTISE_ADDRESS" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --profiling=false
  wait_for kube-apiserver "kube-apiserver /readyz" https_ok "$APISERVER_PORT" /readyz
}

start_controller_manager() {
  start kube-controller-manager --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address="$BIND_ADDRESS" --secure-port="$KCM_PORT" \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --controllers='*' --service-cluster-ip-range="$SERVICE_CIDR" --cluster-name=visionops \
    --leader-elect=false --profiling=false
  wait_for kube-controller-manager "kube-controller-manager /healthz" insecure_ok "$KCM_PORT" /healthz
}

start_scheduler() {
  start kube-scheduler --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address="$BIND_ADDRESS" --secure-port="$SCHEDULER_PORT" --leader-elect=false --profiling=false
  wait_for kube-scheduler "kube-scheduler /healthz" insecure_ok "$SCHEDULER_PORT" /healthz
}

# ---- commands ------------------------------------------------------------------------------------
running() { alive etcd && alive kube-apiserver && load_ports && https_ok "$APISERVER_PORT" /readyz; }

cmd_up() {
  local scheduler=${VISIONOPS_SCHEDULER:-0}
  while (($#)); do
    case $1 in
      --scheduler) scheduler=1 ;;
      --node) die "the local node is gone: pods run on the kind cluster (hack/kind.sh up, make kind-up)" ;;
      *) die "unknown option '$1' for up (expected --scheduler)" ;;
    esac
    shift
  done
  BIN=$(bin_dir)
  mkdir -p "$STATE" "$RUN" "$LOGS"
  exec 9>"$STATE/.lock"
  flock 9
  local start_time=$SECONDS
  if running; then
    log "already running (state: $STATE)"
    if ((scheduler)) && ! alive kube-scheduler; then start_scheduler; fi
  else
    stop_all  # leftovers of a crashed or half-started run
    ADVERTISE_ADDRESS=${ADVERTISE_ADDRESS:-$(advertise_address)}
    ensure_pki
    choose_ports "$PORTS_FILE" APISERVER_PORT ETCD_PORT ETCD_PEER_PORT KCM_PORT SCHEDULER_PORT
    write_kubeconfig "$KUBECONFIG_PATH" admin
    write_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager
    write_kubeconfig "$STATE/scheduler.kubeconfig" scheduler
    log "state $STATE, apiserver https://127.0.0.1:$APISERVER_PORT"
    start_etcd
    start_apiserver
    start_controller_manager
    ((scheduler)) && start_scheduler
    # The controller-manager works once it has made the `default` ServiceAccount of `default`.
    wait_for kube-controller-manager "the default ServiceAccount" kubectl get serviceaccount default -n default
    log "ready in $((SECONDS - start_time)) s; eval \"\$($0 env)\" or export KUBECONFIG=$KUBECONFIG_PATH"
  fi
  printf '%s\n' "$KUBECONFIG_PATH"
}

stop_all() {
  local name
  for name in "${STOP_ORDER[@]}"; do stop "$name"; done
  for name in "$RUN"/*.pid; do [[ -e $name ]] && stop "$(basename "$name" .pid)"; done
  return 0
}

cmd_down() {
  local purge=0
  [[ ${1:-} == --purge ]] && purge=1 && shift
  (($# == 0)) || die "unknown option '$1' for down (expected --purge)"
  [[ -d $STATE ]] || { log "nothing to stop: $STATE does not exist"; return; }
  mkdir -p "$RUN"
  exec 9>"$STATE/.lock"
  flock 9
  stop_all
  if ((purge)); then
    if awk -v p="$STATE/" 'index($5, p) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
      die "mounts remain under $STATE; not deleting it"
    fi
    rm -rf --one-file-system "$STATE" && log "deleted $STATE"
  else
    log "stopped (state kept in $STATE)"
  fi
}

cmd_env() {
  [[ -f $KUBECONFIG_PATH ]] || die "no cluster state in $STATE: run '$0 up' first"
  # shellcheck disable=SC2016  # $PATH expands where the output is eval-ed
  printf 'export KUBECONFIG=%q\nexport PATH=%q:"$PATH"\n' "$KUBECONFIG_PATH" "$(bin_dir)"
}

cmd_status() {
  local name rc=0
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler; do
    if alive "$name"; then echo "$name: running (pid $(proc_pid "$RUN/$name.pid"))"; else echo "$name: stopped"; fi
  done
  if load_ports && https_ok "$APISERVER_PORT" /readyz; then
    echo "readyz: ok (https://127.0.0.1:$APISERVER_PORT)"; echo "kubeconfig: $KUBECONFIG_PATH"
  else
    echo "readyz: not ready"; rc=1
  fi
  return "$rc"
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    env) cmd_env ;;
    status) cmd_status ;;
    *) die "usage: $0 up [--scheduler] | down [--purge] | env | status (got '${cmd}')" ;;
  esac
}

main "$@"
