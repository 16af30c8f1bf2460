#!/usr/bin/env bash
# Start and stop a local cluster N times in a row (default 20) and count the failures: the check that
# start-up waits judge processes reliably (hack/lib/proc.sh). Loopback only.
#
# Usage: hack/cycle-cluster.sh [N]
#   Uses a state dir of its own (VISIONOPS_CLUSTER_DIR, default /tmp/visionops-cycle), purged at the end.
#   Prints one line per cycle (up/down seconds, ok/FAILED) and a summary; exits 1 if any cycle failed.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cycles=20
for arg in "$@"; do
  case $arg in
    ''|*[!0-9]*) echo "usage: $0 [N]" >&2; exit 2 ;;
    *) cycles=$arg ;;
  esac
done
export VISIONOPS_CLUSTER_DIR=${VISIONOPS_CLUSTER_DIR:-/tmp/visionops-cycle}
logs=$VISIONOPS_CLUSTER_DIR.logs
mkdir -p "$logs"
failures=0 up_total=0
for ((i = 1; i <= cycles; i++)); do
  t0=$(date +%s.%N)
  if "$HERE/cluster.sh" up >"$logs/up-$i.log" 2>&1; then up=ok; else up=FAILED; failures=$((failures + 1)); fi
  t1=$(date +%s.%N)
  "$HERE/cluster.sh" down >"$logs/down-$i.log" 2>&1 || { up="$up, down FAILED"; failures=$((failures + 1)); }
  t2=$(date +%s.%N)
  up_s=$(echo "$t1 - $t0" | bc) down_s=$(echo "$t2 - $t1" | bc)
  up_total=$(echo "$up_total + $up_s" | bc)
  printf 'cycle %2d: up %6.1f s, down %5.1f s: %s\n' "$i" "$up_s" "$down_s" "$up"
  [[ $up == ok ]] || tail -n 5 "$logs/up-$i.log" | sed 's/^/    /'
done
"$HERE/cluster.sh" down --purge >/dev/null 2>&1
printf '%d cycles: %d failed; mean up %.1f s (logs: %s)\n' "$cycles" "$failures" "$(echo "$up_total / $cycles" | bc -l)" "$logs"
((failures == 0))
