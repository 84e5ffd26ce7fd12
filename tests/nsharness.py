"""A throwaway host for the host script: `capture.sh` runs in a PID, mount and network namespace of
its own (`unshare --pid --fork --mount-proc --net`), with nested network namespaces ("containers")
made by `unshare --net` inside it, and a private /run/netns.

Everything lives in that PID namespace: killing the one `unshare` process (by its PID; it was
started with --kill-child) ends every process started inside, whatever happened. Traffic only
goes to the loopbacks of these namespaces, bounded in count and time.
"""

from __future__ import annotations

import os
import queue
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

SCRIPT = str(resources.files("fleetrst.remote").joinpath("capture.sh"))
TOOLS = ("unshare", "nsenter", "tcpdump", "ip", "ss", "timeout")

# A client that connects to a closed port on its own loopback: `count` tries, `gap` apart,
# under the name `name` (what ss and /proc/PID/comm show). Bounded by count and by an alarm.
CLIENT = r"""
import ctypes, signal, socket, sys, time
name, port, count, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
signal.alarm(int(count * gap) + 10)
ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)
for _ in range(count):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        pass
    s.close()
    time.sleep(gap)
"""


def unavailable() -> str | None:
    """Why nested-namespace host tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (namespaces)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    return f"needs {', '.join(missing)}" if missing else None


def client(name: str, port: int, count: int, gap: float) -> str:
    """A shell command line running CLIENT."""
    return " ".join(shlex.quote(a) for a in (sys.executable, "-c", CLIENT, name, str(port),
                                                 str(count), str(gap)))


@dataclass
class Nested:
    """One nested namespace: a shell command run in a new network namespace with lo up."""

    command: str
    named: str | None = None  # also give it this name under /run/netns (ip netns attach)
    # Put its process into this cgroup (a path under the test's own cgroup parent), the way a
    # container runtime does: "docker-HEX.scope", ".../kubepods-...-podUID.slice/crio-HEX.scope".
    cgroup: str | None = None


RUN_NETNS = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup/systemd")  # a named v1 hierarchy: no controllers to disturb


@dataclass
class HostRun:
    """What one run of the host script on the throwaway host gave."""

    preflight: str = ""
    lines: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    leftovers: str = ""  # processes still in the host's PID namespace after the run, besides ours
    dir_gone: bool = False


class NestedHost:
    """`with NestedHost([...]) as h: r = h.run(...)`: one preflight, one run, then everything ends."""

    def __init__(self, nested: list[Nested], named_empty: tuple[str, ...] = (),
                 on_host: tuple[str, ...] = (), bin_dir: Path | None = None) -> None:
        self.nested = nested
        self.named_empty = named_empty
        self.on_host = on_host  # commands run in the host's own network namespace
        # Stand-in commands (a `docker` CLI, say): mounted over /usr/local/sbin, the first
        # directory of the host script's own PATH, in the throwaway host's mount namespace only.
        self.bin_dir = bin_dir
        self.cgroups: list[Path] = []
        self.cgroup_parent: Path | None = None
        if any(n.cgroup for n in nested):
            if not os.access(CGROUP_ROOT, os.W_OK):
                raise RuntimeError(f"cannot make test cgroups under {CGROUP_ROOT}")
            parent = CGROUP_ROOT / f"fleetrst-test-{secrets.token_hex(4)}"
            self.cgroup_parent = parent
            try:
                for n in nested:
                    if n.cgroup:
                        path = parent / n.cgroup
                        path.mkdir(parents=True)
                        self.cgroups.append(path)
            except OSError as e:
                self._remove_cgroups()
                raise RuntimeError(f"cannot make test cgroups under {CGROUP_ROOT}: {e}") from e
        # The private /run/netns is a tmpfs mounted on it: without the directory the mount
        # fails, and `ip netns add` would leave its files in the machine's own /run/netns.
        self.made_run_netns = not RUN_NETNS.is_dir()
        if self.made_run_netns:
            RUN_NETNS.mkdir(mode=0o755, parents=True)
        self.dir = f"/tmp/fleetrst-nstest-{secrets.token_hex(6)}"  # the host script's DIR
        os.mkdir(self.dir, 0o700)
        self.proc: subprocess.Popen[str] | None = None
        self._queue: queue.Queue[str | None] | None = None

    def _init(self) -> str:
        q = shlex.quote
        lines = [
            "set -u",
            "mount -t tmpfs -o mode=755 fleetrst-test /run/netns || exit 1",
            "ip link set lo up",
        ]
        if self.bin_dir is not None:
            lines.append(f"mount --bind {q(str(self.bin_dir))} /usr/local/sbin || exit 1")
        for n in self.named_empty:
            lines.append(f"ip netns add {q(n)}")
        for command in self.on_host:
            lines.append(f"{command} </dev/null >/dev/null 2>&1 &")
        for i, n in enumerate(self.nested):
            inner = f"ip link set lo up; exec {n.command}"
            lines.append(f"unshare --net sh -c {q(inner)} </dev/null >/dev/null 2>&1 &")
            lines.append(f"NESTED{i}=$!")
            if n.cgroup and self.cgroup_parent is not None:
                procs = self.cgroup_parent / n.cgroup / "cgroup.procs"
                lines.append(f"echo $NESTED{i} > {q(str(procs))}")
            if n.named:
                lines.append(f"sleep 0.2; ip netns attach {q(n.named)} $NESTED{i}")
        lines += [
            "sleep 0.5",
            f"sh {q(SCRIPT)} preflight {q(self.dir)}",
            "echo '=== preflight end'",
            # The run's arguments come on stdin, once the test has read the preflight.
            "IFS= read -r args || exit 1",
            "set -f; set -- $args; set +f",
            f"sh {q(SCRIPT)} run {q(self.dir)} wait \"$@\"",
            "echo \"=== run exit $?\"",
            # What is still running in this PID namespace: only sh (us), the nested helpers and
            # their sleeps may be; never a tcpdump, timeout or nsenter of the host script.
            "for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null) && echo \"=== left ${p#/proc/} $c\"; done",
            f"test -e {q(self.dir)} && echo '=== dir left' || echo '=== dir gone'",
            "kill -9 -1 2>/dev/null; exit 0",
        ]
        return "\n".join(lines)

    def __enter__(self) -> NestedHost:  # noqa: PYI034
        return self

    def start(self) -> str:
        """Start the host and its nested namespaces and run the preflight; returns its output."""
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--net",
             "--propagation", "private", "sh", "-c", self._init()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            bufsize=1, start_new_session=True,
        )
        out = []
        for line in self._lines(30):
            if line == "=== preflight end":
                break
            out.append(line)
        else:
            raise RuntimeError(f"the throwaway host ended before its preflight: {out}")
        return "\n".join(out) + "\n"

    def _lines(self, timeout: float) -> Iterator[str]:
        """The host's output lines until it ends; TimeoutError when it stays silent too long."""
        if self._queue is None:
            assert self.proc is not None and self.proc.stdout is not None
            self._queue = queue.Queue()
            out, q = self.proc.stdout, self._queue

            def pump() -> None:
                for line in out:
                    q.put(line.rstrip("\n"))
                q.put(None)

            threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError("the throwaway host did not answer in time") from None
            if line is None:
                return
            yield line

    def run(self, run_args: str | Callable[[str], str], before_start: object = None,
            lead: float = 1.5, drop_lease_after: str | None = None) -> HostRun:
        """Preflight, then `run DIR wait RUN_ARGS` (a callable makes them from the preflight's
        output), start the window `lead` s after it is armed, fetch DIR's files after it, end
        the lease, and see what is left. `before_start` (a callable) runs between arm and start;
        `drop_lease_after` ends the lease as soon as a line starts with it (mid-window)."""
        r = HostRun(preflight=self.start())
        assert self.proc is not None and self.proc.stdin is not None
        args = run_args(r.preflight) if callable(run_args) else run_args
        self.proc.stdin.write(args + "\n")
        self.proc.stdin.flush()
        armed = False
        for line in self._lines(40):
            r.lines.append(line)
            if line.startswith("armed") and not armed:
                armed = True
                if callable(before_start):
                    before_start()
                self.proc.stdin.write(f"start={time.time() + lead:.6f}\n")
                self.proc.stdin.flush()
            if line.startswith(("done ", "error=")):
                break
            if drop_lease_after and line.startswith(drop_lease_after):
                break
        else:
            raise AssertionError(f"the host script did not finish: {r.lines}")
        for line in r.lines if not drop_lease_after else []:
            if line.startswith("file "):
                name = line.split(" ", 3)[3]
                r.files[name] = (Path(self.dir) / name).read_bytes()
        self.proc.stdin.close()  # the lease ends: the host script cleans up and exits
        for line in self._lines(30):
            r.lines.append(line)
            if line.startswith("=== left "):
                r.leftovers += line[9:] + "\n"
            elif line in ("=== dir left", "=== dir gone"):
                r.dir_gone = line == "=== dir gone"
        self.proc.wait(timeout=15)
        return r

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # --kill-child: the PID namespace's init dies with it, and so does everything inside.
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)
        self._remove_cgroups()
        if self.made_run_netns:
            try:
                RUN_NETNS.rmdir()
            except OSError:
                pass  # something else has named namespaces there now: theirs to keep

    def _remove_cgroups(self) -> None:
        if self.cgroup_parent is not None and self.cgroup_parent.exists():
            # Empty once every process of the PID namespace is gone: remove deepest first.
            for path in sorted(self.cgroup_parent.rglob("*"), key=lambda p: -len(p.parts)):
                if path.is_dir():
                    _rmdir(path)
            _rmdir(self.cgroup_parent)


def _rmdir(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)  # its last process is still exiting
