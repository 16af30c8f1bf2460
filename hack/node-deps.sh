#!/usr/bin/env bash
# Install the Debian packages the image builds and the kind cluster (hack/images.sh, hack/kind.sh) need. Needs root (apt-get). Idempotent: packages already installed are skipped, and
# nothing is started (no daemon is left running by the install; the scripts start their own).
#
# Usage:
#   hack/node-deps.sh            the image builds' and kind's packages (same as `images`)
#   hack/node-deps.sh images     debootstrap, docker.io (dockerd: builds and kind's node containers), jq, openssl
#   hack/node-deps.sh browser    chromium (headless; the console's Playwright tests drive it, tests/console)
#   hack/node-deps.sh monitoring prometheus (its promtool checks and unit-tests the alerting rules, tests/alerts)
#   hack/node-deps.sh stores     postgresql (MLflow's backend store in the kind e2e, tests/fixtures/stores.py)
set -euo pipefail

IMAGE_PKGS=(debootstrap docker.io jq openssl curl)
# Debian's chromium: Playwright (PyPI) drives it at /usr/bin/chromium; `playwright install` is never used.
BROWSER_PKGS=(chromium)
# Debian's prometheus: promtool (check rules, test rules); the server is not started by the install.
MONITORING_PKGS=(prometheus)
# Debian's PostgreSQL server: the e2e's MLflow backend store, started by the test (never by the install).
STORES_PKGS=(postgresql)

log() { printf '[node-deps] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

installed() { [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]; }

main() {
  local pkgs=() missing=() p
  case "${1:-all}" in
    all|images) pkgs=("${IMAGE_PKGS[@]}") ;;
    browser) pkgs=("${BROWSER_PKGS[@]}") ;;
    monitoring) pkgs=("${MONITORING_PKGS[@]}") ;;
    stores) pkgs=("${STORES_PKGS[@]}") ;;
    *) die "unknown argument '$1' (expected all, images, browser, monitoring or stores)" ;;
  esac
  for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
  if ((${#missing[@]} == 0)); then log "all present: ${pkgs[*]}"; return; fi
  ((EUID == 0)) || die "installing ${missing[*]} needs root (apt-get); run: sudo $0 ${1:-}"
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with your distribution's tools"
  # No init system starts daemons here, but docker.io's postinst would try its sysv script: forbid
  # service starts during the install (policy-rc.d exit 101), and only if no policy is in place already.
  local policy=/usr/sbin/policy-rc.d ours=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
  fi
  # shellcheck disable=SC2064  # expand now: remove exactly the file made here
  ((ours)) && trap "rm -f '$policy'" EXIT
  log "installing ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; then
    log "apt-get install failed; refreshing the package lists once"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  fi
  for p in "${missing[@]}"; do installed "$p" || die "$p is still not installed"; done
  log "installed ${missing[*]}"
}

main "$@"
