#!/usr/bin/env bash
# Make a one-layer FROM-scratch image holding a single static binary, as a docker-archive tar (the
# `docker save` format) that `ctr images import` and `docker load` read. No docker needed.
#
# Usage: hack/node/static-image.sh OUT.tar REF BINARY
#   OUT.tar   the archive to write
#   REF       image reference, e.g. visionops.local/pause:0.1.0
#   BINARY    a static executable; it lands at /<its file name> and is the image's ENTRYPOINT
#
# The archive is reproducible: same binary and REF, same bytes (fixed mtimes and owners, no timestamps).
set -euo pipefail

die() { printf '[static-image] ERROR: %s\n' "$*" >&2; exit 1; }

(($# == 3)) || die "usage: $0 OUT.tar REF BINARY (got $# arguments)"
out=$1 ref=$2 binary=$3
[[ -f $binary && -x $binary ]] || die "BINARY '$binary' is not an executable file"
[[ $ref =~ ^[a-z0-9.-]+(/[a-z0-9._-]+)+:[A-Za-z0-9._-]+$ ]] \
  || die "REF '$ref' is not of the form registry.host/name:tag"
if file "$binary" 2>/dev/null | grep -q 'dynamically linked'; then
  die "$binary is dynamically linked; a FROM-scratch image needs a static binary (CGO_ENABLED=0)"
fi

case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
name=$(basename "$binary")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root" "$work/archive"
install -m 0755 "$binary" "$work/root/$name"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/root" -cf "$work/layer.tar" "$name"
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
mkdir -p "$work/archive/$diff_id"
mv "$work/layer.tar" "$work/archive/$diff_id/layer.tar"

printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/%s"],"Env":["PATH=/"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"hack/node/static-image.sh %s"}]}' \
  "$arch" "$name" "$diff_id" "$name" >"$work/config.json"
config_id=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$work/archive/$config_id.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
  "$config_id" "$ref" "$diff_id" >"$work/archive/manifest.json"
printf '{"%s":{"%s":"%s"}}' "${ref%:*}" "${ref##*:}" "$config_id" >"$work/archive/repositories"

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/archive" -cf "$out.tmp" \
  manifest.json repositories "$config_id.json" "$diff_id" 
mv -f "$out.tmp" "$out"
