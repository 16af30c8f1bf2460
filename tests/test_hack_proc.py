"""hack/lib/proc.sh, the process bookkeeping of every hack/ script, run by real bash on real processes.

The cold-CI failure it fixes: a start-up wait read /proc/PID/cmdline while the child was still between
fork and the final exec (``bash`` -> ``setsid`` -> ``nsenter`` -> binary) and declared it dead.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent / "hack" / "lib" / "proc.sh"


def bash(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    prelude = f'log() {{ echo "$*" >&2; }}; die() {{ log "ERROR: $*"; exit 1; }}; source {LIB}; cd {tmp_path}\n'
    return subprocess.run(["bash", "-euo", "pipefail", "-c", prelude + script], capture_output=True, text=True,
                          timeout=120)


def test_a_process_is_alive_from_the_moment_it_is_started(tmp_path: Path) -> None:
    """100 starts, each judged at once, through a chain of execs like the node's nsenter: never 'dead'."""
    proc = bash("""
        dead=0
        for i in $(seq 1 100); do
          proc_start p.pid p.log env sh -c "exec sleep 2"
          proc_alive p.pid || dead=$((dead + 1))
          kill -KILL -- "-$(proc_pid p.pid)" 2>/dev/null || true
        done
        echo "dead=$dead"
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "dead=0"


def test_exited_and_reused_pids_are_not_alive(tmp_path: Path) -> None:
    proc = bash("""
        proc_start gone.pid gone.log false
        sleep 0.5
        proc_alive gone.pid && echo "exited: alive" || echo "exited: not alive"
        proc_start p.pid p.log sleep 30
        read -r pid started <p.pid
        echo "$pid $((started + 1))" >reused.pid     # same pid, another start time: someone else's process
        proc_alive reused.pid && echo "reused: alive" || echo "reused: not alive"
        proc_alive p.pid && echo "running: alive"
        echo "$$ " >nostart.pid
        proc_alive nostart.pid && echo "no start time: alive" || echo "no start time: not alive"
        proc_stop p.pid sleeper 2
        [[ -e p.pid ]] && echo "pid file kept" || echo "pid file removed"
        kill -0 "$pid" 2>/dev/null && echo "still running" || echo "stopped"
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:-1] == ["exited: not alive", "reused: not alive", "running: alive",
                                            "no start time: not alive", "pid file removed", "stopped"]


def test_wait_fails_fast_with_the_log_when_the_process_dies(tmp_path: Path) -> None:
    proc = bash("""
        proc_start p.pid p.log sh -c 'echo "bad flag --nope"; exit 3'
        proc_wait p.pid demo p.log 30 "never true" false
    """, tmp_path)
    assert proc.returncode == 1
    assert "demo exited; last lines of p.log" in proc.stderr and "bad flag --nope" in proc.stderr
    assert "ERROR: demo failed to start" in proc.stderr


def test_stop_kills_what_ignores_sigterm_and_its_children(tmp_path: Path) -> None:
    proc = bash("""
        proc_start p.pid p.log sh -c 'trap "" TERM; sleep 60 & wait'
        sleep 0.3
        pid=$(proc_pid p.pid)
        proc_stop p.pid stubborn 1
        sleep 0.2
        pgrep -g "$pid" --runstates D,R,S,T >/dev/null && echo "group left" || echo "group gone"  # zombies: exited
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "group gone"
    assert "stubborn (pid" in proc.stderr and "ignored SIGTERM for 1 s" in proc.stderr
