#!/usr/bin/env bash
# Build the project's container images on this machine, with no container registry:
#   1. base: a Debian bookworm rootfs (debootstrap --variant=minbase + python3, python3-venv, pip;
#      bookworm's python3 is 3.11), imported into docker as python:3.11-slim-bookworm (the
#      BASE_IMAGE default of docker/*.Dockerfile) and as visionops.local/python:3.11-bookworm;
#   2. the project's own docker/{operator,mlflow,job,predictor,console}.Dockerfile, unchanged, built with
#      the legacy builder by the project's dockerd (hack/lib/dockerd.sh; Debian docker.io, its own data root
#      under the cache dir; builds use the host network).
# The kind cluster gets them with `kind load docker-image` (hack/kind.sh).
#
# Everything is cached under ${VISIONOPS_CACHE:-$HOME/.cache/visionops}/images: the rootfs tarball,
# docker's data root, and for each image the key it was built from (a hash of its Dockerfile, the files
# it COPYs, pyproject.toml, the base and the build args). A run rebuilds only images whose key changed,
# and starts no dockerd when there is nothing to build.
#
# Usage:
#   hack/images.sh [IMAGE...]               IMAGE: base operator mlflow job predictor console (default: all)
# The Dockerfiles install the dependencies in one layer before they copy the code, and docker keeps that
# layer (it is part of the image): a change to application code rebuilds only the COPY layers.
#   hack/images.sh --refs [IMAGE...]        print the image references
#
# Environment:
#   IMAGE_TAG               tag of the project images (default 0.1.0: the chart's and docs' tag)
#   TORCH_INDEX_URL         passed to the job build (see docker/job.Dockerfile)
#   DEBIAN_MIRROR           debootstrap mirror (default http://deb.debian.org/debian)
#   HOST_CA_DIR             extra CA certificates (*.crt) this host trusts (default
#                           /usr/local/share/ca-certificates; HOST_CA_DIR= for none). Where egress goes
#                           through a TLS-intercepting proxy (these machines), pip in the builds cannot
#                           reach PyPI without them: when there are any, the host's bundle
#                           (HOST_CA_BUNDLE, default /etc/ssl/certs/ca-certificates.crt) is served on
#                           loopback to the builds' pip step only (build arg PIP_CA_URL). No image keeps
#                           it or trusts it at run time.
#
# Needs root (debootstrap, dockerd) and hack/node-deps.sh images.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
CACHE=${VISIONOPS_CACHE:-$HOME/.cache/visionops}
IMG=$CACHE/images
DOCKER_ROOT=$IMG/docker
TAG=${IMAGE_TAG:-0.1.0}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
BASE_REF=python:3.11-slim-bookworm        # what docker/*.Dockerfile's ARG BASE_IMAGE defaults to
BASE_LOCAL_REF=visionops.local/python:3.11-bookworm
ALL_IMAGES=(base operator mlflow job predictor console)
HOST_CA_DIR=${HOST_CA_DIR-/usr/local/share/ca-certificates}
HOST_CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
NICE=(nice -n 10)

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ref_of() {  # ref_of IMAGE: the reference pods use
  case $1 in
    base) printf '%s\n' "$BASE_LOCAL_REF" ;;
    *) printf 'visionops-%s:%s\n' "$1" "$TAG" ;;
  esac
}

hash_stdin() { sha256sum | cut -c1-16; }

# ---- base rootfs ---------------------------------------------------------------------------------
host_cas() { [[ -n $HOST_CA_DIR && -d $HOST_CA_DIR ]] && find "$HOST_CA_DIR" -name '*.crt' -type f | LC_ALL=C sort; }

rootfs_key() {
  printf '%s\n' "$SUITE" minbase "$BASE_PACKAGES" "$MIRROR" rootfs-v2 | hash_stdin
}

ensure_rootfs() {
  ROOTFS_KEY=$(rootfs_key)
  ROOTFS_TAR=$IMG/rootfs-$SUITE-$ROOTFS_KEY.tar.gz
  [[ -f $ROOTFS_TAR ]] && { log "base rootfs: cached ($ROOTFS_TAR)"; return; }
  command -v debootstrap >/dev/null || die "debootstrap not found: run 'sudo hack/node-deps.sh images'"
  local dir=$IMG/.tmp-rootfs start=$SECONDS
  unmount_under "$dir"
  rm -rf --one-file-system "$dir" && mkdir -p "$dir"
  log "base rootfs: debootstrap --variant=minbase $SUITE + $BASE_PACKAGES (~1 min)"
  if ! "${NICE[@]}" debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$dir" "$MIRROR" \
       >"$IMG/debootstrap.log" 2>&1; then
    unmount_under "$dir"
    tail -n 20 "$IMG/debootstrap.log" >&2
    die "debootstrap failed (log: $IMG/debootstrap.log)"
  fi
  unmount_under "$dir"
  # What an image does not need: package caches and lists, logs, docs.
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/* \
         "$dir"/var/log/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/*
  chroot "$dir" python3 --version >/dev/null || die "the rootfs has no working python3"
  "${NICE[@]}" tar --numeric-owner -C "$dir" -czf "$ROOTFS_TAR.tmp" . && mv -f "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  rm -rf --one-file-system "$dir"
  find "$IMG" -maxdepth 1 -name "rootfs-$SUITE-*.tar.gz" ! -name "$(basename "$ROOTFS_TAR")" -delete
  log "base rootfs: $(du -h "$ROOTFS_TAR" | cut -f1) in $((SECONDS - start)) s"
}

# ---- the build host's CA bundle, for the builds' pip step only ----------------------------------------
# shellcheck source=lib/ports.sh
source "$HERE/lib/ports.sh"  # free_port, port_busy
CA_SERVER=""   # the pid file of the loopback server of $IMG/ca/, while it runs
PIP_CA_URL=""  # its URL, passed to the builds as --build-arg PIP_CA_URL

# ca_serve: serve $HOST_CA_BUNDLE on 127.0.0.1 (builds use the host network) when the host has extra CAs.
# The port is kept in $IMG/ca.port: the build arg is part of docker's layer cache key.
ca_serve() {
  [[ -n $CA_SERVER || -z $(host_cas || true) ]] && return 0
  [[ -r $HOST_CA_BUNDLE ]] || die "HOST_CA_BUNDLE=$HOST_CA_BUNDLE is not readable"
  mkdir -p "$IMG/ca" && cp "$HOST_CA_BUNDLE" "$IMG/ca/bundle.pem"
  local port
  port=$(cat "$IMG/ca.port" 2>/dev/null || true)
  if [[ -z $port ]] || port_busy "$port"; then port=$(free_port) && printf '%s\n' "$port" >"$IMG/ca.port"; fi
  CA_SERVER=$IMG/ca-server.proc
  proc_start "$CA_SERVER" "$IMG/ca-server.log" python3 -m http.server --bind 127.0.0.1 --directory "$IMG/ca" "$port"
  PIP_CA_URL=http://127.0.0.1:$port/bundle.pem
  proc_wait "$CA_SERVER" "the CA bundle server" "$IMG/ca-server.log" 30 "$PIP_CA_URL" curl -sf -o /dev/null "$PIP_CA_URL"
  log "serving this host's CA bundle to the builds' pip step at $PIP_CA_URL"
}

ca_stop() {
  [[ -n $CA_SERVER ]] || return 0
  proc_stop "$CA_SERVER" "the CA bundle server" 5
  rm -rf "$IMG/ca"
  CA_SERVER="" PIP_CA_URL=""
}

# ---- dockerd -----------------------------------------------------------------------------------------
# shellcheck source=lib/proc.sh
source "$HERE/lib/proc.sh"  # proc_start, proc_alive, proc_stop, proc_wait
# shellcheck source=lib/dockerd.sh
source "$HERE/lib/dockerd.sh"  # dockerd_up, dockerd_down, docker_, unmount_under (a running one is reused)
trap 'dockerd_down; ca_stop' EXIT

docker_id() { docker_ image inspect --format '{{.Id}}' "$1" 2>/dev/null; }

# ---- images -----------------------------------------------------------------------------------------
# copy_sources DOCKERFILE: the context paths its COPY instructions read (not COPY --from).
copy_sources() {
  awk 'toupper($1) == "COPY" && $2 !~ /^--from/ { for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i }' "$1"
}

# image_key IMAGE: hash of what the image is built from.
image_key() {
  local dockerfile=$REPO/docker/$1.Dockerfile
  {
    echo "rootfs $ROOTFS_KEY"
    echo "args ${TORCH_INDEX_URL:-}"
    # Paths relative to the checkout, so that every clone of the same commit has the same key.
    (cd "$REPO" && sha256sum "docker/$1.Dockerfile" pyproject.toml .dockerignore)
    (cd "$REPO" && copy_sources "$dockerfile" | sort -u | while read -r src; do
       find "$src" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' | LC_ALL=C sort
     done | xargs -r sha256sum)
  } | hash_stdin
}

record() { printf '%s %s\n' "$2" "$3" >"$IMG/$1.built"; }              # record IMAGE KEY ID
recorded() { cut -d' ' -f"$2" "$IMG/$1.built" 2>/dev/null || true; }  # recorded IMAGE 1|2 -> key|id

build_base() {
  local key=$ROOTFS_KEY keyref id
  keyref=visionops.local/python:rootfs-$key
  if [[ $(recorded base 1) == "$key" ]]; then
    log "base: cached"; return
  fi
  dockerd_up
  if ! id=$(docker_id "$keyref"); then
    log "base: docker import of the rootfs"
    docker_ import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$ROOTFS_TAR" "$keyref" >/dev/null
    id=$(docker_id "$keyref")
  fi
  docker_ tag "$keyref" "$BASE_REF"
  docker_ tag "$keyref" "$BASE_LOCAL_REF"
  docker_ image ls --format '{{.Repository}}:{{.Tag}}' visionops.local/python | grep ':rootfs-' \
    | grep -v ":rootfs-$key\$" | xargs -r docker --host "$DOCKER_HOST_URL" rmi >/dev/null 2>&1 || true
  record base "$key" "$id"
}

build_project_image() {
  local name=$1 key ref keyref id start=$SECONDS args=()
  key=$(image_key "$name")
  ref=$(ref_of "$name")
  keyref=visionops-$name:build-$key
  if [[ $(recorded "$name" 1) == "$key" ]]; then
    log "$name: cached ($ref, key $key)"; return
  fi
  dockerd_up
  if ! id=$(docker_id "$keyref"); then
    [[ -n ${TORCH_INDEX_URL:-} && $name == job ]] && args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
    ca_serve
    [[ -n $PIP_CA_URL ]] && args+=(--build-arg "PIP_CA_URL=$PIP_CA_URL")
    log "$name: docker build -f docker/$name.Dockerfile (key $key)"
    DOCKER_BUILDKIT=0 "${NICE[@]}" docker --host "$DOCKER_HOST_URL" build --network host \
      --force-rm -f "$REPO/docker/$name.Dockerfile" -t "$keyref" "${args[@]}" "$REPO" >"$IMG/build-$name.log" 2>&1 \
      || { tail -n 30 "$IMG/build-$name.log" >&2; die "docker build of $name failed (log: $IMG/build-$name.log)"; }
    id=$(docker_id "$keyref")
    log "$name: built in $((SECONDS - start)) s, $(docker_ image inspect --format '{{.Size}}' "$keyref" | numfmt --to=iec)"
  fi
  docker_ tag "$keyref" "$ref"
  # Older builds of this image (their dependency layer stays while the new build shares it) and the
  # dangling `pins` stages go.
  docker_ image ls --format '{{.Repository}}:{{.Tag}}' "visionops-$name" | grep ":build-" | grep -v ":build-$key\$" \
    | xargs -r docker --host "$DOCKER_HOST_URL" rmi >/dev/null 2>&1 || true
  docker_ image prune -f >/dev/null
  record "$name" "$key" "$id"
}

main() {
  local images=() refs=0 a
  for a in "$@"; do
    case $a in
      --refs) refs=1 ;;
      base|operator|mlflow|job|predictor|console) images+=("$a") ;;
      *) die "unknown argument '$a' (expected --refs or an image: ${ALL_IMAGES[*]})" ;;
    esac
  done
  ((${#images[@]})) || images=("${ALL_IMAGES[@]}")
  if ((refs)); then for a in "${images[@]}"; do ref_of "$a"; done; return; fi
  ((EUID == 0)) || die "needs root (debootstrap, dockerd)"
  mkdir -p "$IMG"
  exec 9>"$IMG/.lock"
  if ! flock -n 9; then log "another hack/images.sh holds $IMG/.lock; waiting"; flock 9; fi

  local start=$SECONDS
  ensure_rootfs
  build_base  # every image builds FROM it
  for a in "${images[@]}"; do
    [[ $a == base ]] || build_project_image "$a"
  done
  dockerd_down
  ca_stop
  log "done in $((SECONDS - start)) s"
  for a in "${images[@]}"; do ref_of "$a"; done
}

main "$@"
