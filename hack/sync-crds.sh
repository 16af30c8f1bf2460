#!/usr/bin/env bash
# Copy the CRDs (source of truth: manifests/crds/) into the Helm chart's crds/ folder, byte for byte.
#
# Usage:
#   hack/sync-crds.sh           copy; removes chart CRDs that no longer exist in manifests/crds/
#   hack/sync-crds.sh --check   change nothing; exit 1 and name the files that differ
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/manifests/crds
DST=$ROOT/charts/visionops/crds

die() { printf 'sync-crds: %s\n' "$*" >&2; exit 1; }

[[ -d $SRC ]] || die "$SRC is missing"
shopt -s nullglob
sources=("$SRC"/*.yaml)
(( ${#sources[@]} )) || die "no *.yaml in $SRC"

case ${1:-} in
  --check)
    stale=0
    for src in "${sources[@]}"; do
      cmp -s "$src" "$DST/$(basename "$src")" || { printf 'differs or missing: %s\n' "$DST/$(basename "$src")" >&2; stale=1; }
    done
    for dst in "$DST"/*.yaml; do
      [[ -f $SRC/$(basename "$dst") ]] || { printf 'not in manifests/crds: %s\n' "$dst" >&2; stale=1; }
    done
    (( stale == 0 )) || die "chart CRDs are out of date: run hack/sync-crds.sh"
    ;;
  "")
    mkdir -p "$DST"
    for dst in "$DST"/*.yaml; do
      [[ -f $SRC/$(basename "$dst") ]] || rm -f "$dst"
    done
    cp "${sources[@]}" "$DST"/
    printf 'sync-crds: %d CRD(s) copied to %s\n' "${#sources[@]}" "${DST#"$ROOT"/}" >&2
    ;;
  *) die "unknown argument '$1' (expected none or --check)" ;;
esac
