#!/usr/bin/env bash
# The VisionOps kind cluster, built and installed here the way a user installs it (docs/kind.md), with nothing
# pulled: a kind node image built on this machine (hack/kind/node-image.sh), KServe from its own charts, the
# project's images loaded into the node (what `kind load docker-image` does, streamed: load_image), and
# `helm install` of charts/visionops.
#
# Usage:
#   hack/kind.sh up [--no-chart]   build what is missing (cached), create the cluster from kind-config.yaml (or
#                                  reuse it), install KServe and the chart; prints the context and URLs
#                                  --no-chart: stop after KServe and the images (the e2e tests install the chart)
#   hack/kind.sh down              `kind delete cluster`, then stop the dockerd `up` started
#   hack/kind.sh status            exit 0 when the cluster answers
#   hack/kind.sh kubeconfig        print the kubeconfig path
#   hack/kind.sh host-address      print the address the node reaches this host at (its network's gateway)
#
# Environment:
#   KIND_CLUSTER_NAME   default visionops (kind-config.yaml's name; context kind-<name>)
#   KUBECONFIG          where kind writes the cluster's credentials (default: kind's, ~/.kube/config)
#
# What is particular to these CI machines and not to a user's laptop stays here, in the derived kind config
# ($STATE/kind-config.yaml = kind-config.yaml + hack/kind/ci-config-patch.yaml): a runc wrapper for privileged
# containers (root lacks CAP_SYS_RESOURCE here), and the tags of the etcd and CoreDNS builds in the node image.
# cert-manager: its controllers cannot be built here (the Go module proxy serves cert-manager's root module,
# not its cmd/controller, cmd/webhook and cmd/cainjector modules), so its CRDs are installed from the root
# module and `issue_certificates` stands in for it: it signs each Certificate of KServe's chart with a local CA
# and injects that CA where `cert-manager.io/inject-ca-from` asks. Everything else is the user's path.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
CACHE=${VISIONOPS_CACHE:-$HOME/.cache/visionops}
STATE=$CACHE/kind
NAME=${KIND_CLUSTER_NAME:-visionops}
CONTEXT=kind-$NAME
KIND_CONFIG=$REPO/kind-config.yaml
CERT_MANAGER_VERSION=v1.21.2   # github.com/cert-manager/cert-manager: CRDs only (see above)
KSERVE_NAMESPACE=kserve
PROJECT_IMAGES=(operator mlflow job predictor console)

log() { printf '[kind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=lib/proc.sh
source "$HERE/lib/proc.sh"
# shellcheck source=lib/dockerd.sh
source "$HERE/lib/dockerd.sh"
export DOCKER_HOST=$DOCKER_HOST_URL   # kind and its `docker` calls use the project's dockerd

BIN=$("$HERE/build-k8s.sh" --print-bin-dir)
export PATH=$BIN:$PATH
KUBECONFIG=${KUBECONFIG:-$HOME/.kube/config}
export KUBECONFIG
kubectl_() { kubectl --context "$CONTEXT" "$@"; }
helm_() { helm --kube-context "$CONTEXT" "$@"; }

versions() { "$HERE/build-k8s.sh" --versions | awk -v k="$1" '$1 == k { print $2 }'; }  # the pinned versions
KSERVE_VERSION=$(versions kserve)

module_dir() {  # module_dir MODULE@VERSION: its directory in the Go module cache (downloaded if missing)
  (cd "${TMPDIR:-/tmp}" && go mod download -json "$1") | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}

# datasets_dir: the host directory kind-config.yaml mounts at /datasets.
datasets_dir() { awk '/hostPath:/ { print $NF; exit }' "$KIND_CONFIG"; }

exists() { kind get clusters 2>/dev/null | grep -qx "$NAME"; }

build() {
  "$HERE/build-k8s.sh" --kind >/dev/null
  "$HERE/kserve.sh" build >/dev/null
  "$HERE/images.sh" >/dev/null
  NODE_IMAGE=$("$HERE/kind/node-image.sh" | tail -n1)
}

create() {
  if exists; then log "cluster $NAME: exists"; kind export kubeconfig --name "$NAME" >/dev/null; return; fi
  mkdir -p "$STATE" "$(datasets_dir)"
  local label etcd coredns
  label() { docker_ image inspect --format "{{index .Config.Labels \"io.visionops.$1\"}}" "$NODE_IMAGE"; }
  etcd=$(label etcd-tag) coredns=$(label coredns-tag)
  [[ -n $etcd && -n $coredns ]] || die "$NODE_IMAGE has no io.visionops.{etcd,coredns}-tag labels"
  sed -e "s/@ETCD_TAG@/$etcd/" -e "s/@COREDNS_TAG@/$coredns/" "$HERE/kind/ci-config-patch.yaml" \
    | cat "$KIND_CONFIG" - >"$STATE/kind-config.yaml"
  local start=$SECONDS
  log "kind create cluster --name $NAME --image $NODE_IMAGE"
  kind create cluster --name "$NAME" --config "$STATE/kind-config.yaml" --image "$NODE_IMAGE" --wait 5m \
    || die "kind create cluster failed"
  log "cluster $NAME created in $((SECONDS - start)) s"
}

# The KServe controller and its metrics sidecar as images, under the names KServe's chart uses (built from the
# same Go module proxy versions as a user pulls; numeric non-root user, as the chart's securityContext needs).
build_kserve_images() {
  local tools ctx
  tools=$(docker_ image ls --format '{{.Repository}}:{{.Tag}}' visionops.local/kind-tools | head -n1)
  [[ -n $tools ]] || die "no visionops.local/kind-tools image: hack/kind/node-image.sh builds it"
  ctx=$(mktemp -d)
  cp "$("$HERE/kserve.sh" --print-bin)" "$ctx/manager"
  cp "$BIN/kube-rbac-proxy" "$ctx/kube-rbac-proxy"
  printf 'FROM %s\nCOPY manager /manager\nUSER 65532:65532\nENTRYPOINT ["/manager"]\n' "$tools" \
    | docker_ build -q -f - -t "$KSERVE_CONTROLLER_IMAGE" "$ctx" >/dev/null || die "building $KSERVE_CONTROLLER_IMAGE failed"
  printf 'FROM %s\nCOPY kube-rbac-proxy /usr/local/bin/kube-rbac-proxy\nUSER 65532:65532\nENTRYPOINT ["/usr/local/bin/kube-rbac-proxy"]\n' "$tools" \
    | docker_ build -q -f - -t "$RBAC_PROXY_IMAGE" "$ctx" >/dev/null || die "building $RBAC_PROXY_IMAGE failed"
  rm -rf "$ctx"
}

load_images() {
  local refs=("$KSERVE_CONTROLLER_IMAGE" "$RBAC_PROXY_IMAGE") name start=$SECONDS
  for name in "${PROJECT_IMAGES[@]}"; do refs+=("$("$HERE/images.sh" --refs "$name")"); done
  # Largest first: the node's disk peaks while an image's blobs and its unpacked copy both exist, and that
  # peak is lowest while the node holds nothing else yet.
  mapfile -t refs < <(for name in "${refs[@]}"; do
    printf '%s %s\n' "$(docker_ image inspect -f '{{.Size}}' "$name")" "$name"; done | sort -rn | cut -d' ' -f2)
  for name in "${refs[@]}"; do load_image "$name"; done
  log "images loaded in $((SECONDS - start)) s: ${refs[*]}"
}

# load_image REF: REF from the project's dockerd into the node's containerd, unless the node already holds that
# image id. Streamed (`docker save | ctr images import`, what `kind load docker-image` runs, without the archive
# kind first writes to /tmp: for the torch image that is 7.6 GB of disk saved), then its layer blobs dropped
# (discard_layers). Refuses up front, with the numbers, when the disk cannot hold the blobs and their unpacked copy.
load_image() {
  local ref=$1 node=$NAME-control-plane id size free need
  id=$(docker_ image inspect -f '{{.Id}}' "$ref") || die "no image $ref in the project's dockerd"
  if [[ $(docker_ exec "$node" crictl inspecti -o json "$ref" 2>/dev/null | jq -r '.status.id // empty') == "$id" ]]; then
    log "$ref: already on the node"
    return
  fi
  size=$(docker_ image inspect -f '{{.Size}}' "$ref")
  free=$(df --output=avail -B1 "$DOCKER_ROOT" | tail -n1)
  need=$((2 * size + 1024 ** 3))
  ((free > need)) || die "loading $ref into the node needs about $(gib "$need") free on the filesystem of" \
    "$DOCKER_ROOT (its layers and their unpacked copy, 1 GiB spare); $(gib "$free") are free. Free disk there," \
    "or point VISIONOPS_CACHE at a larger disk"
  docker_ save "$ref" | docker_ exec -i "$node" ctr --namespace=k8s.io images import --all-platforms --digests \
    --snapshotter=overlayfs - >/dev/null || die "loading $ref into the node failed (ctr images import)"
  discard_layers "$ref"
  log "$ref: loaded ($(gib "$size"))"
}

# gib BYTES: BYTES in GiB, one decimal.
gib() { awk -v b="$1" 'BEGIN { printf "%.1f GiB", b / 1024 ^ 3 }'; }

# discard_layers REF: drop the layer blobs of REF from the node's content store once they are unpacked (a
# disk measure: containers start from the snapshots; containerd's CRI does the same after pulls with
# discard_unpacked_layers, which Debian's containerd 1.6 lacks). A synchronous garbage collection (removing a
# throwaway tag with --sync) frees the disk before the next image arrives. Halves the disk an image takes.
discard_layers() {
  docker_ exec -i "$NAME-control-plane" sh -s "$1" <<'EOF' || log "WARNING: kept the layer blobs of $1"
set -eu
name=$(ctr -n k8s.io images ls -q | grep -E "(^|/)(library/)?$1\$" | head -n1)
digest=$(ctr -n k8s.io images ls | awk -v n="$name" '$1 == n { print $3 }')
[ -n "$digest" ] || exit 1
layers=$(ctr -n k8s.io content get "$digest" | jq -r '.layers[]?.digest')
[ -z "$layers" ] || ctr -n k8s.io content rm $layers >/dev/null
ctr -n k8s.io images tag --force "$name" visionops.local/gc-trigger:discard >/dev/null
ctr -n k8s.io images rm --sync visionops.local/gc-trigger:discard >/dev/null
EOF
}

install_kserve() {
  local kserve cm
  kserve=$(module_dir "github.com/kserve/kserve@$KSERVE_VERSION")
  cm=$(module_dir "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION")
  kubectl_ apply --server-side -f "$cm/deploy/crds" >/dev/null || die "installing cert-manager's CRDs failed"
  helm_ upgrade --install kserve-crd "$kserve/charts/kserve-crd" -n "$KSERVE_NAMESPACE" --create-namespace --wait >/dev/null \
    || die "helm install kserve-crd failed"
  helm_ upgrade --install kserve-resources "$kserve/charts/kserve-resources" -n "$KSERVE_NAMESPACE" \
    -f "$HERE/kind/kserve-values.yaml" >/dev/null || die "helm install kserve-resources failed"
  issue_certificates "$KSERVE_NAMESPACE"
  kubectl_ -n "$KSERVE_NAMESPACE" rollout status deployment/kserve-controller-manager --timeout=5m >&2 \
    || die "the KServe controller did not become ready"
  log "KServe $(helm_ -n "$KSERVE_NAMESPACE" list -o json | jq -r '.[] | .name + " " + .app_version' | tr '\n' ' ')installed"
}

# issue_certificates NAMESPACE: cert-manager's job for the Certificates of NAMESPACE (see the header): a secret
# per Certificate signed by this cluster's CA, and that CA in every webhook configuration and CRD annotated
# cert-manager.io/inject-ca-from: NAMESPACE/<certificate>. Idempotent.
issue_certificates() {
  local ns=$1 pki=$STATE/pki-$NAME cert secret dns sans ca kind obj
  mkdir -p "$pki"
  if [[ ! -f $pki/ca.crt ]]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=visionops-kind-ca" -days 3650 -sha256 -out "$pki/ca.crt" 2>/dev/null
  fi
  ca=$(base64 -w0 "$pki/ca.crt")
  for cert in $(kubectl_ -n "$ns" get certificates.cert-manager.io -o name); do
    secret=$(kubectl_ -n "$ns" get "$cert" -o jsonpath='{.spec.secretName}')
    dns=$(kubectl_ -n "$ns" get "$cert" -o jsonpath='{.spec.dnsNames[*]}')
    sans=$(printf 'DNS:%s,' $dns); sans=${sans%,}
    openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$secret.key" 2>/dev/null
    openssl req -new -key "$pki/$secret.key" -subj "/CN=${dns%% *}" -out "$pki/$secret.csr" 2>/dev/null
    openssl x509 -req -in "$pki/$secret.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 3650 -sha256 \
      -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$sans") -out "$pki/$secret.crt" 2>/dev/null \
      || die "signing $cert failed"
    kubectl_ -n "$ns" create secret tls "$secret" --cert "$pki/$secret.crt" --key "$pki/$secret.key" \
      --dry-run=client -o json | jq --arg ca "$ca" '.data["ca.crt"] = $ca' | kubectl_ apply -f - >/dev/null
    for kind in mutatingwebhookconfigurations validatingwebhookconfigurations; do
      for obj in $(kubectl_ get "$kind" -o json | jq -r --arg want "$ns/${cert#*/}" \
                   '.items[] | select(.metadata.annotations["cert-manager.io/inject-ca-from"] == $want) | .metadata.name'); do
        kubectl_ get "$kind" "$obj" -o json | jq --arg ca "$ca" '.webhooks |= map(.clientConfig.caBundle = $ca)' \
          | kubectl_ replace -f - >/dev/null
      done
    done
    for obj in $(kubectl_ get crd -o json | jq -r --arg want "$ns/${cert#*/}" \
                 '.items[] | select(.metadata.annotations["cert-manager.io/inject-ca-from"] == $want and .spec.conversion.webhook != null) | .metadata.name'); do
      kubectl_ patch crd "$obj" --type=json \
        -p "[{\"op\": \"add\", \"path\": \"/spec/conversion/webhook/clientConfig/caBundle\", \"value\": \"$ca\"}]" >/dev/null
    done
    log "issued $cert (${dns// /, }) as secret $secret"
  done
}

install_chart() {
  local start=$SECONDS
  helm_ upgrade --install visionops "$REPO/charts/visionops" -n visionops --create-namespace \
    -f "$REPO/charts/visionops/ci/05-kind-values.yaml" --wait --timeout 10m >/dev/null \
    || die "helm install visionops failed (kubectl --context $CONTEXT -n visionops get pods)"
  log "helm install visionops: deployed in $((SECONDS - start)) s"
}

up() {
  local chart=1
  case "${1:-}" in --no-chart) chart=0 ;; "") ;; *) die "unknown argument '$1' (expected --no-chart)" ;; esac
  ((EUID == 0)) || die "needs root (dockerd, kind's privileged node containers)"
  exec 9>"$CACHE/.kind.lock"
  flock 9
  local start=$SECONDS
  build
  dockerd_up   # kept running: the cluster's node is a container of it (`down` stops it)
  create
  KSERVE_CONTROLLER_IMAGE=kserve/kserve-controller:$KSERVE_VERSION
  RBAC_PROXY_IMAGE=quay.io/brancz/kube-rbac-proxy:$(versions kube-rbac-proxy)
  build_kserve_images
  load_images
  install_kserve
  ((chart)) && install_chart
  log "up in $((SECONDS - start)) s"
  cat >&2 <<EOF

  kind cluster '$NAME' is up (node image $NODE_IMAGE).
    kubectl --context $CONTEXT get pods -A          (KUBECONFIG=$KUBECONFIG)
    predictor (KServe V1/V2):  http://localhost:30080
    MLflow:                    http://localhost:30500
    datasets:                  $(datasets_dir) on this host is /datasets on the node
  Stop it with: make kind-down
EOF
  printf '%s\n' "$KUBECONFIG"
}

down() {
  ((EUID == 0)) || die "needs root"
  if dockerd_answers; then
    if exists; then kind delete cluster --name "$NAME" >&2 || die "kind delete cluster failed"; fi
    # Nothing of the cluster may stay: no node container, no volume of one.
    local left
    left=$(docker_ ps -aq --filter "label=io.x-k8s.kind.cluster=$NAME")
    [[ -z $left ]] || die "kind delete cluster left containers of $NAME: $left"
    docker_ volume prune -f >/dev/null
    # Stop the daemon `up` left running, unless another kind cluster still lives in it.
    if [[ -z $(kind get clusters 2>/dev/null) && -f $DOCKER_EXEC/dockerd.proc ]]; then
      DOCKERD_PROC=$DOCKER_EXEC/dockerd.proc
      dockerd_down
    fi
  fi
  rm -rf "$STATE/pki-$NAME"
  log "cluster $NAME: gone"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  status) dockerd_answers && exists && kubectl_ get --raw /readyz >/dev/null 2>&1 ;;
  kubeconfig) printf '%s\n' "$KUBECONFIG" ;;
  # The address the node (and, masqueraded, its pods) reaches this host at: its network's gateway. The e2e's
  # PostgreSQL and S3 server listen there (tests/fixtures/stores.py), as external stores would.
  host-address) docker_ exec "$NAME-control-plane" ip -4 route show default | awk '{ print $3; exit }' ;;
  *) die "usage: $0 up [--no-chart] | down | status | kubeconfig | host-address" ;;
esac
