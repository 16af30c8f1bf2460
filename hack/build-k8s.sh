#!/usr/bin/env bash
# Build a pinned local Kubernetes toolchain from the Go module proxy (no container registry needed):
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, helm and kube-score, plus the KServe CRDs;
# with --kind also what the kind node image and cluster need (hack/kind/node-image.sh, hack/kind.sh).
#
# Everything lands in ${VISIONOPS_CACHE:-$HOME/.cache/visionops}/k8s-<K8S_VERSION>/ (outside the repo);
# what is already built is skipped, so a warm run takes about a second.
#
# Usage:
#   hack/build-k8s.sh                      build what is missing; last stdout line: the bin dir
#   hack/build-k8s.sh --kind               the same plus the node's binaries (kubeadm, kubelet, kube-proxy,
#                                          CoreDNS, crictl, pause) and kind, kube-router, local-path-provisioner,
#                                          kube-rbac-proxy, versitygw (the e2e's S3 server), prometheus (its
#                                          live Prometheus)
#   hack/build-k8s.sh --print-bin-dir      print the bin dir (builds nothing)
#   hack/build-k8s.sh --print-kserve-crds  fetch the KServe module if needed, print its config/crd dir
#   hack/build-k8s.sh --versions           print the pinned versions
set -euo pipefail

# ---- pinned versions --------------------------------------------------------------------------
K8S_VERSION=v1.34.4          # k8s.io/kubernetes; staging modules k8s.io/* pinned to v0.34.4
ETCD_VERSION=v3.6.16         # go.etcd.io/etcd/server/v3 (etcdmain)
HELM_VERSION=v3.19.5         # helm.sh/helm/v3
KSERVE_VERSION=v0.20.0       # github.com/kserve/kserve (config/crd/{full,minimal}); newest the proxy serves
COREDNS_VERSION=v1.14.7      # github.com/coredns/coredns (v1.15 needs Go 1.26)
CRICTL_VERSION=v1.34.0       # sigs.k8s.io/cri-tools/cmd/crictl (matches the kubelet's CRI)
KUBE_SCORE_VERSION=v1.20.0   # github.com/zegl/kube-score: the chart's outside judge (tests/chart/test_kube_score.py)
KIND_VERSION=v0.33.0         # sigs.k8s.io/kind
KUBE_ROUTER_VERSION=v2.1.0   # github.com/cloudnativelabs/kube-router/v2: the kind node's CNI and NetworkPolicy
                             # enforcer (the only version the proxy serves; kindnetd's source is not served)
LOCAL_PATH_VERSION=v0.0.30   # github.com/rancher/local-path-provisioner: kind's `standard` StorageClass
RBAC_PROXY_VERSION=v0.18.0   # github.com/brancz/kube-rbac-proxy: the KServe controller's metrics sidecar
VERSITYGW_VERSION=v1.8.0     # github.com/versity/versitygw: the e2e's S3 store for MLflow's artifacts (Apache-2.0,
                             # maintained; a single binary over a directory; tests/fixtures/stores.py)
PROMETHEUS_VERSION=v0.316.0  # github.com/prometheus/prometheus (3.16): the e2e's live Prometheus, with Kubernetes
                             # service discovery (Debian's build has none); only that SD is built in
# ------------------------------------------------------------------------------------------------

CACHE=${VISIONOPS_CACHE:-$HOME/.cache/visionops}
ROOT=$CACHE/k8s-$K8S_VERSION
BIN=$ROOT/bin
SRC=$ROOT/src
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
KIND_K8S_CMDS=(kubeadm kubelet kube-proxy)
NICE=(nice -n 10)

log() { printf '[build-k8s %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_go() {
  command -v go >/dev/null || die "go not found in PATH (need Go >= 1.24; /usr/local/go/bin?)"
}

# go_mod_field MODULE@VERSION FIELD -> value of FIELD in `go mod download -json` (e.g. Dir, GoMod).
go_mod_field() {
  local json
  json=$(cd "${TMPDIR:-/tmp}" && go mod download -json "$1") \
    || die "go mod download $1 failed: $(printf '%s' "$json" | grep '"Error"' || true)"
  printf '%s\n' "$json" | sed -n "s/^[[:space:]]*\"$2\": \"\(.*\)\",\{0,1\}$/\1/p" | head -n1
}

kserve_crd_dir() {
  local dir
  dir=$(go_mod_field "github.com/kserve/kserve@$KSERVE_VERSION" Dir)
  [[ -f $dir/config/crd/full/serving.kserve.io_inferenceservices.yaml ]] \
    || die "KServe $KSERVE_VERSION has no config/crd/full/serving.kserve.io_inferenceservices.yaml under $dir"
  printf '%s\n' "$dir/config/crd"
}

# is_current NAME VERSION: binary exists and its stamp matches the pinned version.
is_current() { [[ -x $BIN/$1 && "$(cat "$BIN/.$1.version" 2>/dev/null)" == "$2" ]]; }
stamp() { printf '%s\n' "$2" >"$BIN/.$1.version"; }

build_k8s() {
  local missing=() c
  for c in "${K8S_CMDS[@]}"; do is_current "$c" "$K8S_VERSION" || missing+=("$c"); done
  if ((${#missing[@]} == 0)); then log "kubernetes $K8S_VERSION: cached (${K8S_CMDS[*]})"; return; fi
  log "kubernetes $K8S_VERSION: building ${missing[*]} (cold: ~15-30 min on 2 cores)"

  # Wrapper module: k8s.io/kubernetes's own go.mod replaces every k8s.io/* staging module with a
  # local path, which `go install ...@version` refuses; pin each of them to its v0.X.Y release here.
  local mod=$SRC/kubernetes staging_ver=v0.${K8S_VERSION#v1.} gomod
  mkdir -p "$mod"
  if [[ ! -f $mod/go.sum ]]; then
    gomod=$(go_mod_field "k8s.io/kubernetes@$K8S_VERSION" GoMod)
    {
      echo "module visionops.local/k8s-build"
      echo
      grep -E '^(go|godebug) ' "$gomod"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      echo "replace ("
      sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$staging_ver"'#p' "$gomod"
      echo ")"
    } >"$mod/go.mod"
    grep -q 'k8s.io/client-go => ' "$mod/go.mod" || die "no staging replaces found in $gomod"
    rm -f "$mod/.resolved"
  elif [[ ! -f $mod/.resolved ]]; then
    # A wrapper from before .resolved existed was resolved for the control-plane commands.
    printf '%s\n' kube-apiserver kube-controller-manager kube-scheduler kubectl >"$mod/.resolved"
  fi
  # `go get` each command once (the node commands need modules the control plane does not).
  local unresolved=() pkgs=()
  for c in "${missing[@]}"; do grep -qx "$c" "$mod/.resolved" 2>/dev/null || unresolved+=("$c"); done
  if ((${#unresolved[@]})); then
    for c in "${unresolved[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c@$K8S_VERSION"); done
    (cd "$mod" && go get "${pkgs[@]}") || die "resolving $K8S_VERSION modules for ${unresolved[*]} failed"
    printf '%s\n' "${unresolved[@]}" >>"$mod/.resolved"
  fi

  local v=${K8S_VERSION#v} ldflags="-s -w" key val pkg
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    for key in gitVersion=$K8S_VERSION gitMajor=${v%%.*} gitMinor=$(cut -d. -f2 <<<"$v") \
               gitTreeState=clean buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ); do
      val=${key#*=}; key=${key%%=*}
      ldflags+=" -X $pkg.$key=$val"
    done
  done
  local out=$ROOT/.tmp-k8s
  rm -rf "$out" && mkdir -p "$out"
  # One invocation: the packages the commands share compile once.
  (cd "$mod" && "${NICE[@]}" go build -trimpath -ldflags="$ldflags" -o "$out/" \
      "${missing[@]/#/k8s.io/kubernetes/cmd/}") || die "go build of ${missing[*]} failed"
  for c in "${missing[@]}"; do mv -f "$out/$c" "$BIN/$c" && stamp "$c" "$K8S_VERSION"; done
  rm -rf "$out"
}

build_etcd() {
  if is_current etcd "$ETCD_VERSION"; then log "etcd $ETCD_VERSION: cached"; return; fi
  log "etcd $ETCD_VERSION: building"
  local mod=$SRC/etcd
  mkdir -p "$mod"
  if [[ ! -f $mod/go.sum ]]; then
    printf 'module visionops.local/etcd-build\n\ngo 1.24.0\n' >"$mod/go.mod"
    cat >"$mod/main.go" <<'EOF'
// Command etcd is the upstream etcd server, built from the Go module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
    (cd "$mod" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy) \
      || die "resolving etcd $ETCD_VERSION failed"
  fi
  (cd "$mod" && "${NICE[@]}" go build -trimpath -ldflags="-s -w" -o "$ROOT/.tmp-etcd" .) \
    || die "go build of etcd failed"
  mv -f "$ROOT/.tmp-etcd" "$BIN/etcd" && stamp etcd "$ETCD_VERSION"
}

# helm as its release build makes it (its Makefile): besides its own version, the Kubernetes version it
# assumes without a cluster (`helm template`, `helm lint`) is stamped in from the k8s.io/client-go it
# requires (v0.34.x -> 1.34). Unstamped, helm assumes v1.20 and refuses charts with a newer kubeVersion.
build_helm() {
  local gomod client_go major minor
  gomod=$(go_mod_field "helm.sh/helm/v3@$HELM_VERSION" GoMod)
  client_go=$(sed -n 's#^[[:space:]]*k8s.io/client-go v\([0-9.]*\).*#\1#p' "$gomod" | head -n1)
  [[ $client_go =~ ^0\.([0-9]+)\. ]] || die "no k8s.io/client-go v0.X.Y in $gomod"
  major=1 minor=${BASH_REMATCH[1]}
  local flags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    flags+=" -X $pkg.k8sVersionMajor=$major -X $pkg.k8sVersionMinor=$minor"
  done
  go_install helm "$HELM_VERSION+k8s$major.$minor" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$flags"
}

# go_install NAME VERSION PKG@VERSION [LDFLAGS]: `go install` one upstream command into $BIN (build tags: $GO_TAGS).
go_install() {
  local name=$1 version=$2 pkg=$3 ldflags="-s -w ${4:-}"
  if is_current "$name" "$version"; then log "$name $version: cached"; return; fi
  log "$name $version: building"
  local out=$ROOT/.tmp-$name
  rm -rf "$out" && mkdir -p "$out"
  (cd "${TMPDIR:-/tmp}" && GOBIN=$out "${NICE[@]}" go install -trimpath -tags="${GO_TAGS:-}" -ldflags="$ldflags" "$pkg") \
    || die "go install $pkg failed"
  mv -f "$out/$name" "$BIN/$name" && stamp "$name" "$version"
  rm -rf "$out"
}

# The pod sandbox's pause process (hack/kind/pause), stamped with a hash of its source.
build_pause() {
  local src=$HERE/kind/pause hash
  hash=$(cd "$src" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
  if is_current pause "$hash"; then log "pause: cached"; return; fi
  log "pause: building a static binary"
  (cd "$src" && CGO_ENABLED=0 "${NICE[@]}" go build -trimpath -ldflags="-s -w" -o "$ROOT/.tmp-pause" .) \
    || die "go build of pause failed"
  mv -f "$ROOT/.tmp-pause" "$BIN/pause" && stamp pause "$hash"
}

# What a kind node image and cluster need (hack/kind/node-image.sh, hack/kind.sh).
build_kind() {
  go_install coredns "$COREDNS_VERSION" "github.com/coredns/coredns@$COREDNS_VERSION"
  go_install crictl "$CRICTL_VERSION" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" \
    "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
  build_pause
  go_install kind "$KIND_VERSION" "sigs.k8s.io/kind@$KIND_VERSION"
  go_install kube-router "$KUBE_ROUTER_VERSION" "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION" \
    "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION"
  go_install local-path-provisioner "$LOCAL_PATH_VERSION" "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION"
  go_build_module kube-rbac-proxy "$RBAC_PROXY_VERSION" "github.com/brancz/kube-rbac-proxy@$RBAC_PROXY_VERSION" ./cmd/kube-rbac-proxy
  go_install versitygw "$VERSITYGW_VERSION" "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" \
    "-X main.Version=$VERSITYGW_VERSION"
  GO_TAGS=remove_all_sd,enable_kubernetes_sd CGO_ENABLED=0 go_install prometheus "$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
}

# go_build_module NAME VERSION MODULE@VERSION PKG: `go build` PKG inside the downloaded module, for modules
# whose @v/list the proxy refuses (`go install m@v` reads it for deprecation notices).
go_build_module() {
  local name=$1 version=$2 module=$3 pkg=$4 dir
  if is_current "$name" "$version"; then log "$name $version: cached"; return; fi
  log "$name $version: building"
  dir=$(go_mod_field "$module" Dir)
  [[ -d $dir ]] || die "go mod download $module gave no directory"
  rm -rf "$ROOT/.tmp-$name"
  (cd "$dir" && "${NICE[@]}" go build -trimpath -ldflags="-s -w" -o "$ROOT/.tmp-$name" "$pkg") \
    || die "go build of $pkg in $module failed"
  mv -f "$ROOT/.tmp-$name" "$BIN/$name" && stamp "$name" "$version"
}

main() {
  local kind=0
  case "${1:-}" in
    --kind) kind=1; K8S_CMDS+=("${KIND_K8S_CMDS[@]}") ;;
    --print-bin-dir) printf '%s\n' "$BIN"; return ;;
    --print-kserve-crds) need_go; kserve_crd_dir; return ;;
    --versions)
      printf 'kubernetes %s\netcd %s\nhelm %s\nkserve %s\ncoredns %s\ncrictl %s\nkube-score %s\nkind %s\nkube-router %s\nlocal-path-provisioner %s\nkube-rbac-proxy %s\nversitygw %s\nprometheus %s\n' \
        "$K8S_VERSION" "$ETCD_VERSION" "$HELM_VERSION" "$KSERVE_VERSION" "$COREDNS_VERSION" "$CRICTL_VERSION" "$KUBE_SCORE_VERSION" \
        "$KIND_VERSION" "$KUBE_ROUTER_VERSION" "$LOCAL_PATH_VERSION" "$RBAC_PROXY_VERSION" "$VERSITYGW_VERSION" "$PROMETHEUS_VERSION"
      return ;;
    "") ;;
    *) die "unknown argument '$1' (expected none, --kind, --print-bin-dir, --print-kserve-crds or --versions)" ;;
  esac
  need_go
  mkdir -p "$BIN" "$SRC"
  # Several processes (make, pytest sessions) may run this at once: one builds, the others wait.
  exec 9>"$ROOT/.build.lock"
  if ! flock -n 9; then log "another build holds $ROOT/.build.lock; waiting"; flock 9; fi

  local start=$SECONDS crds
  log "go $(go env GOVERSION), cache $ROOT"
  build_k8s
  build_etcd
  build_helm
  go_install kube-score "$KUBE_SCORE_VERSION" "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION" \
    "-X main.version=$KUBE_SCORE_VERSION"
  ((kind)) && build_kind
  crds=$(kserve_crd_dir)
  printf '%s\n' "$crds" >"$ROOT/kserve-crds-path"
  log "kserve $KSERVE_VERSION CRDs: $crds"
  log "done in $((SECONDS - start)) s: $(cd "$BIN" && echo *)"
  printf '%s\n' "$BIN"
}

main "$@"
