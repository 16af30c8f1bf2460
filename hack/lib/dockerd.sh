# shellcheck shell=bash
# The project's dockerd (sourced by hack/images.sh and hack/kind.sh; the caller defines `log` and `die` and
# sources lib/proc.sh). One daemon with its own data root under the cache dir, so the images the builds make
# are the ones `kind load docker-image` loads without a copy.
#
#   dockerd_up     start it unless one already answers on $DOCKER_EXEC/docker.sock (then use that one)
#   dockerd_down   stop it, if this process started it
#   docker_ ARGS   the docker CLI against it
#
# Its settings change nothing in the host's network: no docker0 bridge, no iptables rules, no forwarding
# (builds use the host network; kind's own bridge network and the userland proxy serve its nodes' ports).
# One of them is a measure for these machines only: root lacks CAP_SYS_RESOURCE here, so the default runtime
# is a runc wrapper that drops that capability (hack/kind/runc-without-sys-resource), without which no
# `--privileged` container (every kind node) starts. A user's docker needs none of this.

DOCKER_ROOT=${DOCKER_ROOT:-${VISIONOPS_CACHE:-$HOME/.cache/visionops}/images/docker}
DOCKER_EXEC=${DOCKER_EXEC:-/run/visionops-docker}   # short: it holds unix sockets
DOCKER_HOST_URL=unix://$DOCKER_EXEC/docker.sock
DOCKERD_LOG=${DOCKERD_LOG:-$(dirname "$DOCKER_ROOT")/dockerd.log}
DOCKERD_PROC=""   # the pid file of the dockerd this process started, while it runs
_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUNC_WRAPPER=$(dirname "$_LIB_DIR")/kind/runc-without-sys-resource

docker_() { docker --host "$DOCKER_HOST_URL" "$@"; }

dockerd_answers() { [[ -S $DOCKER_EXEC/docker.sock ]] && docker_ info >/dev/null 2>&1; }

# unmount_under DIR: lazily unmount everything mounted below DIR.
unmount_under() {
  local m
  awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

dockerd_up() {
  [[ -n $DOCKERD_PROC ]] && return
  dockerd_answers && return
  command -v dockerd >/dev/null || die "dockerd not found: run 'sudo hack/node-deps.sh images'"
  mkdir -p "$DOCKER_ROOT" "$DOCKER_EXEC"
  local start=$SECONDS runtime=()
  # The wrapper needs jq; without it, everything but privileged containers still works.
  command -v jq >/dev/null && runtime=(--add-runtime "visionops-runc=$RUNC_WRAPPER" --default-runtime visionops-runc)
  DOCKERD_PROC=$DOCKER_EXEC/dockerd.proc
  proc_start "$DOCKERD_PROC" "$DOCKERD_LOG" dockerd --data-root "$DOCKER_ROOT" --exec-root "$DOCKER_EXEC" \
    --pidfile "$DOCKER_EXEC/dockerd.pid" --host "$DOCKER_HOST_URL" --storage-driver overlay2 \
    --exec-opt native.cgroupdriver=cgroupfs --bridge none --iptables=false --ip6tables=false \
    --ip-forward=false --ip-masq=false --userland-proxy=true --oom-score-adjust 0 "${runtime[@]}"
  proc_wait "$DOCKERD_PROC" dockerd "$DOCKERD_LOG" 60 "dockerd's API" docker_ info
  log "dockerd up in $((SECONDS - start)) s (data root $DOCKER_ROOT)"
}

dockerd_down() {
  [[ -n $DOCKERD_PROC ]] || return 0
  proc_stop "$DOCKERD_PROC" dockerd 30
  unmount_under "$DOCKER_ROOT"
  unmount_under "$DOCKER_EXEC"
  rm -rf --one-file-system "$DOCKER_EXEC"  # sockets and runtime state only
  DOCKERD_PROC=""
  log "dockerd stopped"
}
