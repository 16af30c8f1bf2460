# shellcheck shell=bash
# Long-running processes of the hack/ scripts (sourced; the caller defines `log` and `die`).
#
# A process is recorded in its pid file as "PID STARTTIME": the kernel's start time of that pid (field 22 of
# /proc/PID/stat, clock ticks since boot). The start time is fixed when the process is forked and survives
# every exec, so it is the same while bash's forked child sets up redirections, while `setsid` and `nsenter`
# exec the next program, and once the daemon itself runs. Judging a process by its command line instead
# (what these scripts once did) flickers during those execs: /proc/PID/cmdline reads "bash ...", then "",
# then "setsid ...", and a wait that looked at that moment declared a healthy daemon dead. A pid reused by
# another process has another start time, and a process that exited (even one not yet reaped) is not alive.

# proc_starttime PID: print PID's start time; fail if there is no such process or it has exited (zombie).
proc_starttime() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  # The command name (field 2) may hold spaces and parentheses: split only what follows its last ')'.
  read -r -a fields <<<"${stat##*) }"
  [[ ${fields[0]} != [ZX] && -n ${fields[19]:-} ]] || return 1
  printf '%s\n' "${fields[19]}"
}

# proc_start PIDFILE LOGFILE COMMAND...: run COMMAND in a session (and process group) of its own, stdin
# closed, output appended to LOGFILE, without the callers' lock fds 8 and 9; record it in PIDFILE.
proc_start() {
  local pidfile=$1 logfile=$2 pid started
  shift 2
  setsid "$@" </dev/null >>"$logfile" 2>&1 8>&- 9>&- &
  pid=$!
  # Read at once: the pid is our child, so it cannot be reused before we read it. An empty start time
  # (it already exited) records a process that is not alive.
  started=$(proc_starttime "$pid" || true)
  printf '%s %s\n' "$pid" "$started" >"$pidfile.tmp" && mv -f "$pidfile.tmp" "$pidfile"
}

# proc_pid PIDFILE: print the recorded pid.
proc_pid() { local pid _; [[ -f $1 ]] && read -r pid _ <"$1" && [[ -n $pid ]] && printf '%s\n' "$pid"; }

# proc_alive PIDFILE: the recorded process still runs (same pid, same start time, not exited).
proc_alive() {
  local pid started now
  [[ -f $1 ]] && read -r pid started <"$1" || return 1
  [[ -n $pid && -n $started ]] || return 1
  now=$(proc_starttime "$pid") && [[ $now == "$started" ]]
}

# proc_stop PIDFILE NAME [GRACE_SECONDS]: SIGTERM the recorded process group, SIGKILL what is left after
# GRACE_SECONDS (default 10), forget the pid file. A stale record (another process has that pid now) is
# only forgotten.
proc_stop() {
  local pidfile=$1 name=$2 grace=${3:-10} pid
  pid=$(proc_pid "$pidfile") || { rm -f "$pidfile"; return 0; }
  if proc_alive "$pidfile"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((grace * 10))); do proc_alive "$pidfile" || break; sleep 0.1; done
    if proc_alive "$pidfile"; then
      log "$name (pid $pid) ignored SIGTERM for $grace s; killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do proc_alive "$pidfile" || break; sleep 0.1; done
    fi
    # Whatever else is left in its process group (children it started) goes too.
    kill -KILL -- "-$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

# proc_wait PIDFILE NAME LOGFILE TIMEOUT DESCRIPTION COMMAND...: poll COMMAND every 0.25 s until it
# succeeds; fail at once, with the log's tail, if the process exited; fail after TIMEOUT seconds.
proc_wait() {
  local pidfile=$1 name=$2 logfile=$3 timeout=$4 what=$5
  shift 5
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! proc_alive "$pidfile"; then
      log "$name exited; last lines of $logfile:"
      tail -n 25 "$logfile" >&2 || true
      die "$name failed to start"
    fi
    ((SECONDS < deadline)) || { tail -n 25 "$logfile" >&2; die "timed out after ${timeout}s waiting for $what"; }
    sleep 0.25
  done
}
