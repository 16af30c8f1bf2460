#!/usr/bin/env bash
# The KServe controller (github.com/kserve/kserve/cmd/manager) built from the Go module proxy and run
# as a host process against the local control plane (hack/cluster.sh) in Standard (raw Deployment)
# mode: no Knative, no Istio, no cert-manager, no container image.
#
# Usage:
#   hack/kserve.sh build     build the manager if missing; last stdout line: the binary path
#   hack/kserve.sh up        install CRDs, namespace, config and webhooks, start the manager (KUBECONFIG
#                            from the environment); idempotent; last stdout line: the state dir
#   hack/kserve.sh down      delete the webhooks, stop the manager, delete what `up` created (objects
#                            labelled app.kubernetes.io/managed-by=visionops-hack-kserve: CRDs only if
#                            `up` installed them); run it before `hack/cluster.sh down`
#   hack/kserve.sh status    show the manager process and its readiness; exit 1 unless it is up
#   hack/kserve.sh --print-bin   print the manager path (builds nothing)
#
# Details and measurements: docs/kserve.md.
#
# Environment:
#   KUBECONFIG              the cluster (required by up/down/status); the manager uses it as is
#   VISIONOPS_KSERVE_DIR    state dir (default: <dir of $KUBECONFIG>/kserve, so each cluster has its own)
#   VISIONOPS_KSERVE_BIN    manager binary to run (default: the one `build` makes)
#   KSERVE_WEBHOOK_PORT, KSERVE_METRICS_PORT, KSERVE_PROBE_PORT
#                           fixed ports; unset ones are picked at random among free ones
#   UP_TIMEOUT              seconds to wait for readiness (default 120)
set -euo pipefail

# ---- pinned version -------------------------------------------------------------------------------
KSERVE_VERSION=v0.20.0       # github.com/kserve/kserve; newest the module proxy serves (as in build-k8s.sh)
# ---------------------------------------------------------------------------------------------------

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VISIONOPS_CACHE:-$HOME/.cache/visionops}
ROOT=$CACHE/kserve-$KSERVE_VERSION
BIN=$ROOT/bin
MODULE=github.com/kserve/kserve
NICE=(nice -n 10)

log() { printf '[kserve %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_go() { command -v go >/dev/null || die "go not found in PATH (need Go >= 1.25; /usr/local/go/bin?)"; }

# module_dir: the KServe module's source in the Go module cache (downloaded on first use).
module_dir() {
  local json dir
  json=$(cd "${TMPDIR:-/tmp}" && go mod download -json "$MODULE@$KSERVE_VERSION") \
    || die "go mod download $MODULE@$KSERVE_VERSION failed: $(jq -r '.Error // empty' <<<"$json" 2>/dev/null)"
  dir=$(jq -r '.Dir' <<<"$json")
  [[ -f $dir/cmd/manager/main.go ]] || die "no cmd/manager/main.go under '$dir'"
  printf '%s\n' "$dir"
}

# ---- build -----------------------------------------------------------------------------------------
# The k8s toolchain's build lock: builds of this script and hack/build-k8s.sh never overlap.
build_lock() { printf '%s/.build.lock\n' "$(dirname "$("$HERE/build-k8s.sh" --print-bin-dir)")"; }

cmd_build() {
  need_go
  if [[ -x $BIN/manager && "$(cat "$BIN/.manager.version" 2>/dev/null)" == "$KSERVE_VERSION" ]]; then
    log "manager $KSERVE_VERSION: cached"; printf '%s\n' "$BIN/manager"; return
  fi
  local lock
  lock=$(build_lock)
  mkdir -p "$BIN" "$(dirname "$lock")"
  exec 9>"$lock"
  if ! flock -n 9; then log "another build holds $lock; waiting"; flock 9; fi
  if [[ -x $BIN/manager && "$(cat "$BIN/.manager.version" 2>/dev/null)" == "$KSERVE_VERSION" ]]; then
    log "manager $KSERVE_VERSION: built meanwhile"; printf '%s\n' "$BIN/manager"; return
  fi
  local start=$SECONDS src mod=$ROOT/src/manager
  src=$(module_dir)
  log "manager $KSERVE_VERSION: building (cold: ~13 min on 2 shared cores, most of it resolving modules)"
  # Wrapper module: KServe's go.mod has replace/exclude directives (k8s.io/* and controller-runtime
  # pins), which `go install ...@version` refuses; the wrapper repeats them as its own.
  if [[ ! -f $mod/go.sum ]]; then
    rm -rf "$mod" && mkdir -p "$mod"
    printf 'module visionops.local/kserve-build\n\ngo %s\n' "$(go mod edit -json "$src/go.mod" | jq -r .Go)" >"$mod/go.mod"
    local edits=()
    mapfile -t edits < <(go mod edit -json "$src/go.mod" | jq -r '
      ((.Replace // [])[] |
        if (.New.Version // "") == "" then "LOCAL \(.Old.Path) => \(.New.Path)"
        else "-replace=\(.Old.Path)\(if .Old.Version then "@" + .Old.Version else "" end)=\(.New.Path)@\(.New.Version)" end),
      ((.Exclude // [])[] | "-exclude=\(.Path)@\(.Version)")')
    local e
    for e in "${edits[@]}"; do [[ $e == LOCAL* ]] && die "KServe's go.mod replaces with a local path (${e#LOCAL }): cannot wrap it"; done
    if ((${#edits[@]})); then (cd "$mod" && go mod edit "${edits[@]}") || die "writing the wrapper go.mod failed"; fi
    (cd "$mod" && go get "$MODULE/cmd/manager@$KSERVE_VERSION") || die "resolving $MODULE@$KSERVE_VERSION failed"
  fi
  (cd "$mod" && "${NICE[@]}" go build -trimpath -ldflags="-s -w" -o "$ROOT/.tmp-manager" "$MODULE/cmd/manager") \
    || die "go build of $MODULE/cmd/manager failed"
  mv -f "$ROOT/.tmp-manager" "$BIN/manager" && printf '%s\n' "$KSERVE_VERSION" >"$BIN/.manager.version"
  log "manager $KSERVE_VERSION: built in $((SECONDS - start)) s"
  printf '%s\n' "$BIN/manager"
}

# ---- runtime: state, tools ---------------------------------------------------------------------------
MANAGED_BY=visionops-hack-kserve       # label value on everything `up` creates
LABEL="app.kubernetes.io/managed-by=$MANAGED_BY"
FIELD_MANAGER=visionops-kserve
UP_TIMEOUT=${UP_TIMEOUT:-120}

# init_runtime: KUBECONFIG, kubectl, state paths (what up/down/status share).
init_runtime() {
  [[ -n ${KUBECONFIG:-} ]] || die "KUBECONFIG is not set (e.g. export KUBECONFIG=\$(hack/cluster.sh up | tail -n1))"
  [[ -f $KUBECONFIG ]] || die "KUBECONFIG=$KUBECONFIG is not a file"
  KUBECONFIG=$(realpath "$KUBECONFIG"); export KUBECONFIG
  K8S_BIN=${VISIONOPS_K8S_BIN:-$("$HERE/build-k8s.sh" --print-bin-dir)}
  [[ -x $K8S_BIN/kubectl ]] || die "$K8S_BIN/kubectl is missing: run hack/build-k8s.sh first"
  STATE=${VISIONOPS_KSERVE_DIR:-$(dirname "$KUBECONFIG")/kserve}
  PKI=$STATE/pki
  # controller-runtime reads the webhook serving certificate from $TMPDIR/k8s-webhook-server/serving-certs
  # (the manager has no flag for it), so the manager gets its own TMPDIR.
  MANAGER_TMP=$STATE/tmp
  CERT_DIR=$MANAGER_TMP/k8s-webhook-server/serving-certs
  PID_FILE=$STATE/manager.pid
  LOG_FILE=$STATE/manager.log
  PORTS_FILE=$STATE/ports.env
  MANAGER=${VISIONOPS_KSERVE_BIN:-$BIN/manager}
}

kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }

# exists KIND/NAME [-n NS]: the object is in the cluster.
exists() { [[ -n $(kubectl get "$@" -o name --ignore-not-found 2>/dev/null) ]]; }

# ours KIND/NAME [-n NS]: the object carries our managed-by label.
ours() { [[ $(kubectl get "$@" -o jsonpath='{.metadata.labels.app\.kubernetes\.io/managed-by}' 2>/dev/null) == "$MANAGED_BY" ]]; }

# ---- ports ---------------------------------------------------------------------------------------------
# shellcheck source=lib/ports.sh
source "$HERE/lib/ports.sh"  # port_busy, free_port, choose_ports FILE NAME...

# saved_port NAME: the port the last `up` chose (environment settings win only when `up` runs).
saved_port() { [[ -f $PORTS_FILE ]] && sed -n "s/^$1=\([0-9]*\)$/\1/p" "$PORTS_FILE"; }

# ---- process -------------------------------------------------------------------------------------------
# shellcheck source=lib/proc.sh
source "$HERE/lib/proc.sh"  # proc_start, proc_alive, proc_pid, proc_stop, proc_wait

# alive: the recorded manager process runs (same pid and start time; see lib/proc.sh).
alive() { proc_alive "$PID_FILE"; }

ready() {
  local port
  port=$(saved_port KSERVE_PROBE_PORT) && [[ -n $port ]] \
    && [[ $(curl -s --max-time 2 "http://127.0.0.1:$port/readyz") == ok ]]
}

stop_manager() { proc_stop "$PID_FILE" "the manager"; }

# wait_until DESCRIPTION COMMAND...: poll COMMAND; fail fast with the log tail if the manager died.
wait_until() { proc_wait "$PID_FILE" "the KServe manager" "$LOG_FILE" "$UP_TIMEOUT" "$@"; }

# ---- what `up` installs --------------------------------------------------------------------------------
# rendered_crds SRC: config/crd/full through kustomize, as a JSON stream; cached per version in $ROOT
# (kustomize takes seconds on the 2 MB InferenceService CRD, and the pinned module never changes).
rendered_crds() {
  local cache=$ROOT/crds-full.json
  if [[ ! -s $cache ]]; then
    mkdir -p "$ROOT"
    kubectl kustomize "$1/config/crd/full" | kubectl create --dry-run=client -o json -f - >"$cache.tmp.$$" \
      || { rm -f "$cache.tmp.$$"; die "rendering $1/config/crd/full (kubectl kustomize) failed"; }
    mv -f "$cache.tmp.$$" "$cache"
  fi
  printf '%s\n' "$cache"
}

# install_crds SRC: the CRDs of config/crd/full, server-side; CRDs already there are left alone (an
# existing KServe install or the test fixture's copy wins) and, having no label of ours, `down` keeps them.
install_crds() {
  local crds name names=() missing=()
  crds=$(rendered_crds "$1")
  mapfile -t names < <(jq -r 'select(.kind == "CustomResourceDefinition") | .metadata.name' "$crds")
  ((${#names[@]})) || die "no CustomResourceDefinition in $1/config/crd/full"
  for name in "${names[@]}"; do exists "crd/$name" || missing+=("$name"); done
  if ((${#missing[@]})); then
    log "installing CRDs: ${missing[*]}"
    # The missing ones, labelled as ours; 2 MB for InferenceService, hence server-side apply.
    jq -c --arg names " ${missing[*]} " --arg by "$MANAGED_BY" '
        select(.metadata.name as $n | $names | contains(" " + $n + " "))
        | .metadata.labels["app.kubernetes.io/managed-by"] = $by' "$crds" \
      | kubectl apply --server-side --field-manager="$FIELD_MANAGER" -f - >/dev/null \
      || die "installing the KServe CRDs failed"
  fi
  for name in "${names[@]}"; do wait_established "$name"; done
}

# wait_established NAME: poll (kubectl wait errors while a fresh CRD has no conditions yet).
wait_established() {
  local deadline=$((SECONDS + 60))
  until [[ $(kubectl get "crd/$1" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null) == True ]]; do
    ((SECONDS < deadline)) || die "CRD $1 not Established after 60 s"
    sleep 0.5
  done
}

ensure_namespace() {
  if ! exists namespace/kserve; then
    kubectl create namespace kserve >/dev/null && kubectl label namespace kserve "$LABEL" >/dev/null
  fi
}

# install_config SRC: upstream config/configmap/inferenceservice.yaml with our overrides.
install_config() {
  local src=$1
  if exists configmap/inferenceservice-config -n kserve && ! ours configmap/inferenceservice-config -n kserve; then
    die "kserve/inferenceservice-config exists and was not made by this script (a real KServe install?): not touching it"
  fi
  kubectl create --dry-run=client -o json -f "$src/config/configmap/inferenceservice.yaml" \
    | jq --arg by "$MANAGED_BY" --slurpfile over "$HERE/kserve/config-overrides.json" '
        .metadata.labels["app.kubernetes.io/managed-by"] = $by
        | del(.data._example)
        | reduce ($over[0] | to_entries[]) as $o (.;
            .data[$o.key] = ((.data[$o.key] // "{}") | fromjson | . * $o.value | tojson))' \
    | kubectl apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f - >/dev/null \
    || die "installing kserve/inferenceservice-config failed"
}

# ensure_certs: a CA and a serving certificate for 127.0.0.1 (EC P-256), made once per state dir.
ensure_certs() {
  [[ -f $PKI/.complete && -f $CERT_DIR/tls.crt ]] && return
  log "generating webhook certificates in $PKI"
  rm -rf "$PKI" && mkdir -p "$PKI" "$CERT_DIR" && chmod 700 "$PKI"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=visionops-kserve-webhook-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.crt" 2>/dev/null
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/tls.key" 2>/dev/null
  openssl req -new -key "$PKI/tls.key" -subj "/CN=kserve-webhook-server" -out "$PKI/tls.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/tls.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 -sha256 \
    -extfile <(printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
                 "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost") \
    -out "$PKI/tls.crt" 2>/dev/null || die "signing the webhook certificate failed"
  rm -f "$PKI/tls.csr"
  install -m 600 "$PKI/tls.key" "$CERT_DIR/tls.key" && install -m 644 "$PKI/tls.crt" "$CERT_DIR/tls.crt"
  touch "$PKI/.complete"
}

# install_webhooks SRC: upstream config/webhook/manifests.yaml, each service reference turned into
# url: https://127.0.0.1:<webhook port><path> with our CA bundle.
install_webhooks() {
  local src=$1 name kind docs
  docs=$(kubectl create --dry-run=client -o json -f "$src/config/webhook/manifests.yaml" \
    | jq -c --arg by "$MANAGED_BY" --arg base "https://127.0.0.1:$KSERVE_WEBHOOK_PORT" \
        --arg ca "$(base64 -w0 "$PKI/ca.crt")" '
        del(.metadata.creationTimestamp)
        | .metadata.labels["app.kubernetes.io/managed-by"] = $by
        | .webhooks |= map(.clientConfig = {url: ($base + .clientConfig.service.path), caBundle: $ca})') \
    || die "rendering the webhook configurations failed"
  while read -r kind name; do
    if exists "$kind/$name" && ! ours "$kind/$name"; then
      die "$kind $name exists and was not made by this script (a real KServe install?): not touching it"
    fi
  done < <(jq -r '"\(.kind | ascii_downcase) \(.metadata.name)"' <<<"$docs")
  jq -c . <<<"$docs" | kubectl apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f - >/dev/null \
    || die "installing the webhook configurations failed"
}

# webhooks_served: the apiserver reaches the manager: a server-side dry-run create of an
# InferenceService goes through its defaulting and validating webhooks.
webhooks_served() {
  kubectl create --dry-run=server -n kserve -f - <<'EOF'
{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
 "metadata": {"name": "webhook-probe", "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
 "spec": {"predictor": {"containers": [{"name": "kserve-container", "image": "probe"}]}}}
EOF
}

# preflight: refuse a cluster that another KServe serves: a real install (objects without our label) or
# a manager that this script started from another state dir (ours is stopped by now, yet the webhook
# URL's port still answers).
preflight() {
  local obj url
  for obj in mutatingwebhookconfiguration/inferenceservice.serving.kserve.io \
             validatingwebhookconfiguration/inferenceservice.serving.kserve.io; do
    if exists "$obj" && ! ours "$obj"; then
      die "$obj exists and was not made by this script (a real KServe install?): not touching it"
    fi
  done
  if exists configmap/inferenceservice-config -n kserve && ! ours configmap/inferenceservice-config -n kserve; then
    die "kserve/inferenceservice-config exists and was not made by this script (a real KServe install?): not touching it"
  fi
  url=$(kubectl get mutatingwebhookconfiguration/inferenceservice.serving.kserve.io --ignore-not-found \
          -o jsonpath='{.webhooks[0].clientConfig.url}')
  if [[ $url =~ ^https://127\.0\.0\.1:([0-9]+)/ ]] && port_busy "${BASH_REMATCH[1]}"; then
    die "another KServe manager already serves this cluster ($url answers); stop it with 'hack/kserve.sh down' and the VISIONOPS_KSERVE_DIR it was started with"
  fi
}

start_manager() {
  mkdir -p "$MANAGER_TMP"
  log "starting the manager (webhook :$KSERVE_WEBHOOK_PORT, metrics 127.0.0.1:$KSERVE_METRICS_PORT, probes 127.0.0.1:$KSERVE_PROBE_PORT; log: $LOG_FILE)"
  # Its own session/process group, so `down` stops it and anything it started.
  proc_start "$PID_FILE" "$LOG_FILE" env TMPDIR="$MANAGER_TMP" POD_NAMESPACE=kserve "$MANAGER" \
    --webhook-port="$KSERVE_WEBHOOK_PORT" \
    --metrics-addr="127.0.0.1:$KSERVE_METRICS_PORT" \
    --health-probe-addr="127.0.0.1:$KSERVE_PROBE_PORT" \
    --leader-elect=false
}

# ---- commands ------------------------------------------------------------------------------------------
cmd_up() {
  init_runtime
  [[ -x $MANAGER ]] || die "$MANAGER is missing: run '$0 build' first (cold: ~13 min)"
  mkdir -p "$STATE"
  exec 8>"$STATE/.lock"
  flock 8
  local start=$SECONDS src
  if alive && ready && webhooks_served >/dev/null 2>&1; then
    log "already running (pid $(proc_pid "$PID_FILE"), state $STATE)"; printf '%s\n' "$STATE"; return
  fi
  stop_manager  # leftovers of a crashed or half-started run
  preflight
  need_go
  src=$(module_dir)
  install_crds "$src"
  ensure_namespace
  install_config "$src"
  ensure_certs
  choose_ports "$PORTS_FILE" KSERVE_WEBHOOK_PORT KSERVE_METRICS_PORT KSERVE_PROBE_PORT
  start_manager
  wait_until "the manager's /readyz (webhook server started)" ready
  install_webhooks "$src"
  wait_until "the apiserver to call the webhooks" webhooks_served
  log "ready in $((SECONDS - start)) s (Standard mode; state $STATE)"
  printf '%s\n' "$STATE"
}

# delete_ours KIND [-n NS]: delete the objects of KIND that carry our label (what `up` created).
delete_ours() {
  kubectl delete "$@" -l "$LABEL" --ignore-not-found --timeout=90s >/dev/null || log "WARNING: could not delete every $1 labelled $LABEL"
}

cmd_down() {
  init_runtime
  exec 8>"$(mkdir -p "$STATE" && printf '%s' "$STATE/.lock")"
  flock 8
  local start=$SECONDS isvc
  if ! kubectl get --raw /readyz >/dev/null 2>&1; then
    stop_manager
    log "WARNING: the apiserver is not reachable: the manager is stopped, the cluster objects are left"
    return
  fi
  # Webhooks first: with failurePolicy Fail they would block InferenceService and Pod writes.
  delete_ours mutatingwebhookconfigurations
  delete_ours validatingwebhookconfigurations
  stop_manager
  if ours crd/inferenceservices.serving.kserve.io; then
    # Deleting the CRD deletes every InferenceService; their finalizer would wait for the stopped manager.
    for isvc in $(kubectl get inferenceservices -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}'); do
      kubectl patch inferenceservice "${isvc#*/}" -n "${isvc%%/*}" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null || true
    done
  fi
  delete_ours configmaps -n kserve
  delete_ours customresourcedefinitions
  delete_ours namespaces
  log "stopped in $((SECONDS - start)) s (logs and certificates kept in $STATE)"
}

cmd_status() {
  init_runtime
  local rc=0
  if alive; then echo "manager: running (pid $(proc_pid "$PID_FILE"))"; else echo "manager: stopped"; rc=1; fi
  if ready; then echo "readyz: ok (http://127.0.0.1:$(saved_port KSERVE_PROBE_PORT)/readyz)"; else echo "readyz: not ready"; rc=1; fi
  if ((rc == 0)) && webhooks_served >/dev/null 2>&1; then
    echo "webhooks: served on https://127.0.0.1:$(saved_port KSERVE_WEBHOOK_PORT)"
  else
    echo "webhooks: not served"; rc=1
  fi
  echo "state: $STATE"
  return "$rc"
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    build) cmd_build ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    --print-bin) printf '%s\n' "$BIN/manager" ;;
    *) die "usage: $0 build | up | down | status | --print-bin (got '${cmd}')" ;;
  esac
}

main "$@"
