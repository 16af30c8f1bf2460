# Loopback port helpers shared by hack/cluster.sh and hack/kserve.sh (sourced; the caller defines `die`).

# port_busy PORT: something listens on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port TAKEN...: a random port below the ephemeral range that nothing listens on.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(shuf -i 20000-32000 -n 1)
    [[ " $* " == *" $p "* ]] && continue
    port_busy "$p" || { printf '%s\n' "$p"; return; }
  done
  die "no free port found on 127.0.0.1"
}

# choose_ports FILE NAME...: set each variable NAME to a port and record NAME=port in FILE. An explicit
# environment setting wins (it must be free), then the port FILE recorded last time (if still free), then
# a random free one.
choose_ports() {
  local file=$1 name value taken=()
  shift
  declare -A previous=()
  if [[ -f $file ]]; then
    while IFS='=' read -r name value; do [[ -n $name ]] && previous[$name]=$value; done <"$file"
  fi
  : >"$file.new"
  for name in "$@"; do
    if [[ -n ${!name:-} ]]; then
      port_busy "${!name}" && die "$name=${!name} is already in use on 127.0.0.1"
    elif [[ -n ${previous[$name]:-} ]] && ! port_busy "${previous[$name]}"; then
      printf -v "$name" '%s' "${previous[$name]}"
    else
      printf -v "$name" '%s' "$(free_port "${taken[@]}")"
    fi
    taken+=("${!name}")
    printf '%s=%s\n' "$name" "${!name}" >>"$file.new"
  done
  mv -f "$file.new" "$file"
}
