#!/usr/bin/env bash
# Build a kind node image for the pinned Kubernetes with nothing pulled (no registry is reachable here), the
# way `kind build node-image` assembles one, from parts built on this machine:
#
#   1. component images (docker build FROM the project's Debian bookworm base + iptables/ipset/conntrack):
#      kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, etcd, CoreDNS, pause, kube-router
#      (the CNI, which also enforces NetworkPolicy), local-path-provisioner and its helper, under the names
#      kubeadm and the node's manifests use;
#   2. the base: bookworm (systemd 252: systemd >= 256 refuses this machine's hybrid cgroups) with Debian's
#      containerd, runc and CNI plugins, and kind's own base files (entrypoint, systemd units, containerd
#      config) from the kind module;
#   3. the node: kubeadm, kubelet, kubectl in /usr/bin, crictl, /kind/version, /kind/manifests/default-{cni,storage}.yaml,
#      and the component images imported into the node's containerd (pinned), committed with kind's entrypoint.
#
# Binaries come from hack/build-k8s.sh --kind (Go module proxy). The result is cached by a key of everything it
# is built from: a warm run (or a change to Python code) rebuilds nothing.
#
# Usage: hack/kind/node-image.sh [--print-ref]     last stdout line: the image reference (name:tag)
# Needs root, dockerd and jq (hack/node-deps.sh images), and hack/images.sh's base image.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HACK=$(dirname "$HERE")
CACHE=${VISIONOPS_CACHE:-$HOME/.cache/visionops}
STATE=$CACHE/kind
NICE=(nice -n 10)
BASE_IMAGE=visionops.local/python:3.11-bookworm   # hack/images.sh base
# Names kubeadm v1.34 and the node's manifests use. etcd and CoreDNS are the patched releases this project
# builds (hack/build-k8s.sh), not kubeadm's defaults (3.6.5-0, v1.12.1): hack/kind/ci-config-patch.yaml
# tells kubeadm their tags.
REGISTRY=registry.k8s.io
PAUSE_TAG=3.10.1

log() { printf '[kind-node-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=../lib/proc.sh
source "$HACK/lib/proc.sh"
# shellcheck source=../lib/dockerd.sh
source "$HACK/lib/dockerd.sh"

versions() { "$HACK/build-k8s.sh" --versions | awk -v k="$1" '$1 == k { print $2 }'; }
K8S_VERSION=$(versions kubernetes)
ETCD_TAG=$(versions etcd | sed 's/^v//')-0
COREDNS_TAG=$(versions coredns)
KUBE_ROUTER_REF=visionops.local/kube-router:$(versions kube-router)
LOCAL_PATH_REF=visionops.local/local-path-provisioner:$(versions local-path-provisioner)
LOCAL_PATH_HELPER_REF=visionops.local/local-path-helper:$(versions local-path-provisioner)
KIND_MODULE_VERSION=$(versions kind)
NODE_REPO=visionops.local/kind-node

# component NAME: "REF BINARY PATH" of each image built into the node.
components() {
  local k
  for k in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    printf '%s %s %s\n' "$REGISTRY/$k:$K8S_VERSION" "$k" "/usr/local/bin/$k"
  done
  printf '%s %s %s\n' "$REGISTRY/etcd:$ETCD_TAG" etcd /usr/local/bin/etcd
  printf '%s %s %s\n' "$REGISTRY/coredns/coredns:$COREDNS_TAG" coredns /coredns
  printf '%s %s %s\n' "$REGISTRY/pause:$PAUSE_TAG" pause /pause
  printf '%s %s %s\n' "$KUBE_ROUTER_REF" kube-router /usr/local/bin/kube-router
  printf '%s %s %s\n' "$LOCAL_PATH_REF" local-path-provisioner /usr/local/bin/local-path-provisioner
  printf '%s %s %s\n' "$LOCAL_PATH_HELPER_REF" - /bin/sh   # the helper pod runs shell scripts: the base has sh
}

kind_module_dir() {
  (cd "${TMPDIR:-/tmp}" && go mod download -json "sigs.k8s.io/kind@$KIND_MODULE_VERSION") \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}

# image_key: a hash of everything the node image is built from.
image_key() {
  {
    printf '%s\n' "$K8S_VERSION" "$KIND_MODULE_VERSION" node-image-v1
    docker_ image inspect --format '{{.Id}}' "$BASE_IMAGE"
    # Names relative to hack/kind: every clone of the same commit has the same key (the path is not hashed).
    (cd "$HERE" && sha256sum node-image.sh default-cni.yaml node-base.Dockerfile runc-without-sys-resource)
    (cd "$BIN" && sha256sum kubeadm kubelet kubectl crictl kube-apiserver kube-controller-manager kube-scheduler kube-proxy \
      etcd coredns pause kube-router local-path-provisioner)
  } | sha256sum | cut -c1-12
}

build_tools_image() {
  TOOLS_REF=visionops.local/kind-tools:$KEY
  docker_ image inspect "$TOOLS_REF" >/dev/null 2>&1 && return
  log "tools base: $BASE_IMAGE + iptables, ipset, conntrack, iproute2"
  printf 'FROM %s\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables ipset conntrack iproute2 && rm -rf /var/lib/apt/lists/*\n' \
    "$BASE_IMAGE" | DOCKER_BUILDKIT=0 "${NICE[@]}" docker --host "$DOCKER_HOST_URL" build --network host -q -t "$TOOLS_REF" - >/dev/null \
    || die "building the tools base failed"
}

build_components() {
  local ref binary path ctx
  ctx=$(mktemp -d)
  while read -r ref binary path; do
    if [[ $binary == - ]]; then
      docker_ tag "$TOOLS_REF" "$ref"
    else
      cp "$BIN/$binary" "$ctx/$binary"
      printf 'FROM %s\nCOPY %s %s\nENTRYPOINT ["%s"]\n' "$TOOLS_REF" "$binary" "$path" "$path" \
        | DOCKER_BUILDKIT=0 docker --host "$DOCKER_HOST_URL" build -q -f - -t "$ref" "$ctx" >/dev/null \
        || die "building $ref failed"
      rm -f "$ctx/$binary"
    fi
  done < <(components)
  rm -rf "$ctx"
  log "component images: $(components | cut -d' ' -f1 | tr '\n' ' ')"
}

# kind's storage manifest (pkg/build/nodeimage/const_storage.go of the kind module), with this build's images.
storage_manifest() {
  python3 - "$KIND_DIR/pkg/build/nodeimage/const_storage.go" "$LOCAL_PATH_REF" "$LOCAL_PATH_HELPER_REF" <<'EOF'
import re, sys
src, provisioner, helper = sys.argv[1:]
text = open(src).read()
manifest = re.search(r"const defaultStorageManifest = `(.*?)\n`", text, re.S)
if not manifest:
    sys.exit(f"no defaultStorageManifest in {src}")
body = manifest.group(1)
body = body.replace("` + storageProvisionerImage + `", provisioner).replace("` + storageHelperImage + `", helper)
if "`" in body:
    sys.exit(f"unexpected Go concatenation left in the storage manifest of {src}")
print(body)
EOF
}

build_base() {
  NODE_BASE_REF=visionops.local/kind-base:$KEY
  docker_ image inspect "$NODE_BASE_REF" >/dev/null 2>&1 && return
  local ctx
  ctx=$(mktemp -d)
  cp -r "$KIND_DIR/images/base/files" "$ctx/files"
  chmod -R u+w "$ctx/files"
  cp "$HERE/runc-without-sys-resource" "$ctx/"
  log "node base: bookworm + systemd, containerd, runc, CNI plugins, kind's base files"
  DOCKER_BUILDKIT=0 "${NICE[@]}" docker --host "$DOCKER_HOST_URL" build --network host --force-rm \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "PAUSE_IMAGE=$REGISTRY/pause:$PAUSE_TAG" \
    -f "$HERE/node-base.Dockerfile" -t "$NODE_BASE_REF" "$ctx" >"$STATE/build-base.log" 2>&1 \
    || { tail -n 30 "$STATE/build-base.log" >&2; die "building the node base failed (log: $STATE/build-base.log)"; }
  rm -rf "$ctx"
}

build_node() {
  local name=visionops-kind-build-$KEY ref tars
  tars=$(mktemp -d)
  docker_ rm -f "$name" >/dev/null 2>&1 || true
  docker_ run -d --name "$name" --privileged --entrypoint sleep "$NODE_BASE_REF" infinity >/dev/null \
    || die "starting the build container failed"
  # shellcheck disable=SC2064
  trap "docker --host '$DOCKER_HOST_URL' rm -f '$name' >/dev/null 2>&1 || true; rm -rf '$tars'; dockerd_down" EXIT
  local b
  for b in kubeadm kubelet kubectl; do docker_ cp "$BIN/$b" "$name:/usr/bin/$b"; done
  docker_ cp "$BIN/crictl" "$name:/usr/local/bin/crictl"   # kind load and kind export logs call it
  docker_ exec "$name" mkdir -p /kind/manifests
  printf '%s\n' "$K8S_VERSION" | docker_ exec -i "$name" tee /kind/version >/dev/null
  sed "s#@KUBE_ROUTER_IMAGE@#$KUBE_ROUTER_REF#g" "$HERE/default-cni.yaml" \
    | docker_ exec -i "$name" tee /kind/manifests/default-cni.yaml >/dev/null
  storage_manifest | docker_ exec -i "$name" tee /kind/manifests/default-storage.yaml >/dev/null
  docker_ exec -d "$name" sh -c 'containerd >/var/log/containerd-build.log 2>&1'
  for _ in $(seq 1 60); do docker_ exec "$name" ctr version >/dev/null 2>&1 && break; sleep 0.5; done
  docker_ exec "$name" ctr version >/dev/null 2>&1 || die "containerd did not start in the build container"
  while read -r ref _ _; do
    docker_ save "$ref" | docker_ exec -i "$name" ctr -n k8s.io images import --all-platforms --no-unpack --digests - >/dev/null \
      || die "importing $ref into the node failed"
    docker_ exec "$name" ctr -n k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null \
      || docker_ exec "$name" ctr -n k8s.io images label "docker.io/$ref" io.cri-containerd.pinned=pinned >/dev/null
  done < <(components)
  docker_ exec "$name" sh -c 'pkill containerd; while pgrep -x containerd >/dev/null; do sleep 0.2; done; rm -f /var/log/containerd-build.log'
  # The tags kubeadm must be told (hack/kind/ci-config-patch.yaml) travel with the image as labels.
  docker_ commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
    --change "LABEL io.visionops.etcd-tag=$ETCD_TAG io.visionops.coredns-tag=$COREDNS_TAG" \
    "$name" "$NODE_REF" >/dev/null || die "docker commit failed"
  docker_ rm -f "$name" >/dev/null
  rm -rf "$tars"
}

main() {
  [[ ${1:-} == --print-ref || ${1:-} == "" ]] || die "unknown argument '$1' (expected none or --print-ref)"
  ((EUID == 0)) || die "needs root (dockerd)"
  command -v jq >/dev/null || die "jq not found: run 'sudo hack/node-deps.sh images'"
  BIN=$("$HACK/build-k8s.sh" --print-bin-dir)
  mkdir -p "$STATE"
  exec 9>"$STATE/.node-image.lock"
  flock 9
  trap dockerd_down EXIT
  dockerd_up
  docker_ image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "$BASE_IMAGE is missing: run 'hack/images.sh base'"
  for b in kubeadm kubelet kubectl kube-router local-path-provisioner; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: run 'hack/build-k8s.sh --kind'"
  done
  KEY=$(image_key)
  NODE_REF=$NODE_REPO:$K8S_VERSION-$KEY
  if [[ ${1:-} == --print-ref ]]; then printf '%s\n' "$NODE_REF"; return; fi
  if docker_ image inspect "$NODE_REF" >/dev/null 2>&1; then
    log "node image: cached ($NODE_REF)"
  else
    local start=$SECONDS
    KIND_DIR=$(kind_module_dir)
    [[ -d $KIND_DIR/images/base/files ]] || die "the kind $KIND_MODULE_VERSION module has no images/base/files"
    build_tools_image
    build_components
    build_base
    build_node
    # Older builds go: their layers are most of the disk a node image takes.
    docker_ image ls --format '{{.Repository}}:{{.Tag}}' | grep -E '^visionops.local/kind-(node|base|tools):' \
      | grep -v -e ":$KEY\$" -e ":$K8S_VERSION-$KEY\$" | xargs -r docker --host "$DOCKER_HOST_URL" rmi >/dev/null 2>&1 || true
    log "node image $NODE_REF built in $((SECONDS - start)) s, $(docker_ image inspect --format '{{.Size}}' "$NODE_REF" | numfmt --to=iec)"
  fi
  printf '%s\n' "$NODE_REF"
}

main "$@"
