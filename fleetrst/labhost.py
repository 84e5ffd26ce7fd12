"""What makes a lab host a machine of its own, seen from the inside, and the network namespaces
nested in it.

A host's init is the first process of a new PID namespace (the lab's supervisor is its parent),
started by ``ip netns exec`` in the host's network namespace, so in a mount namespace of its own
with the host's /sys. It mounts the host's own /proc and a private tmpfs on /run/netns, then
waits (reaping orphans, as an init does) until the lab's deadline. Every other process of the
host is born in its PID namespace and joins its network and mount namespaces with nsenter,
which execs and so keeps the PID the supervisor reports. When the init ends, the kernel kills
everything left in its PID namespace; when the last process of the host is gone, its mount
namespace goes, and with it the named namespaces of its /run/netns.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from fleetrst.errors import LabError
from fleetrst.labtraffic import exited, start_time

INIT_TIMEOUT = 10.0
NETNS_TIMEOUT = 10.0
# The machine's named namespaces (those of every lab) are not the host's: the inherited
# /run/netns is detached before the private tmpfs goes there. /proc comes last: until then the
# commands still see the machine's /proc, which they need (/proc/self/mountinfo).
# A trapped TERM makes the init end at once when the lab is taken down.
HOST_INIT = (
    "while umount -l /run/netns 2>/dev/null; do :; done; "
    "mkdir -p /run/netns && "
    "mount -t tmpfs -o mode=0755,size=1m,nosuid,nodev,noexec tmpfs /run/netns && "
    "mount -t proc -o nosuid,nodev,noexec proc /proc || exit 1; "
    "trap 'exit 0' TERM; "
    'sleep "$1" & wait'
)
# A new network namespace with its lo up, as a container runtime makes one, then the command.
NEW_NETNS = 'ip link set lo up && {sysctls}exec "$@"'
SYSCTL = 'echo 1 > /proc/sys/{key} && '


def init_argv(namespace: str, seconds: float) -> list[str]:
    """The argv of a host's init in network namespace `namespace`, ending after `seconds`."""
    return ["ip", "netns", "exec", namespace, "sh", "-c", HOST_INIT, "init",
            str(max(1, int(seconds)))]


def wait_init(pid: int, started: int, log: Path, timeout: float = INIT_TIMEOUT) -> None:
    """Wait until the init's own /proc and /run/netns are mounted (seen through its root)."""
    deadline = time.monotonic() + timeout
    machine = {p: os.stat(p).st_dev for p in ("/run/netns", "/proc")}
    while True:
        if exited(pid, started):
            raise LabError(f"the init of a lab host (PID {pid}) exited: "
                           f"{' | '.join(log.read_text(errors='replace').splitlines()[-5:])}")
        with contextlib.suppress(OSError):
            if all(os.stat(f"/proc/{pid}/root{p}").st_dev != dev for p, dev in machine.items()):
                return
        if time.monotonic() > deadline:
            raise LabError(f"the init of a lab host (PID {pid}) did not mount its /proc and "
                           f"/run/netns within {timeout:.0f}s")
        time.sleep(0.01)


def in_host(init: int, argv: Sequence[str], net: str | None = None) -> list[str]:
    """argv in the host of `init`: its mount namespace, and its network namespace or the one at
    path `net` (resolved from the root namespace). Its PID namespace is the supervisor's part."""
    return ["nsenter", f"--target={init}", "--mount", f"--net={net}" if net else "--net", "--",
            *argv]


def in_new_netns(argv: Sequence[str], sysctls: Iterable[str] = ()) -> list[str]:
    """argv in a new network namespace of its own with lo up; `sysctls` (net/ipv4/...) set to 1."""
    script = NEW_NETNS.format(sysctls="".join(SYSCTL.format(key=k) for k in sysctls))
    return ["unshare", "--net", "--", "sh", "-c", script, "sh", *argv]


def named_path(init: int, name: str) -> str:
    """The path, from the root namespace, of named namespace `name` in the host of `init`."""
    return f"/proc/{init}/root/run/netns/{name}"


def add_named(init: int, names: Sequence[str], sysctls: Iterable[str] = ()) -> list[int]:
    """Create named namespaces in the host's own /run/netns (lo up, `sysctls` set to 1) with
    `ip netns add`, as its root would; their inodes."""
    if not names:
        return []
    each = 'ip netns add "$n" && ip -n "$n" link set lo up'
    keys = list(sysctls)
    if keys:
        sets = " && ".join(f"echo 1 > /proc/sys/{k}" for k in keys)
        each += f" && ip netns exec \"$n\" sh -c '{sets}'"
    # --pid: the host's /proc shows only its own processes, so `ip` must be one of them.
    argv = ["nsenter", f"--target={init}", "--mount", "--net", "--pid", "--",
            "sh", "-c", f"for n; do {each} || exit 1; done", "sh", *names]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"cannot add named namespaces in a lab host: {exc}") from exc
    if done.returncode != 0:
        raise LabError(f"cannot add named namespaces in a lab host: {done.stderr.strip()}")
    return [os.stat(named_path(init, name)).st_ino for name in names]


def netns_inode(pid: int) -> int | None:
    """The inode of the network namespace of process `pid`."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def wait_new_netns(procs: Sequence[tuple[int, int]], old: set[int],
                   timeout: float = NETNS_TIMEOUT) -> list[int]:
    """Wait until each process (PID, start time) is in a network namespace not in `old` (it
    made its own); their namespaces' inodes."""
    deadline = time.monotonic() + timeout
    inodes: list[int] = []
    for pid, started in procs:
        while True:
            inode = netns_inode(pid)
            if inode is not None and inode not in old:
                inodes.append(inode)
                break
            if exited(pid, started) or time.monotonic() > deadline:
                raise LabError(f"process {pid} did not make its network namespace")
            time.sleep(0.01)
    return inodes


def mount_ns_members(inits: Iterable[tuple[int, int]]
                     ) -> tuple[list[int], dict[int, Callable[[int], bool]]]:
    """Processes in the mount namespaces of the live inits (PID, start time), each with a check
    that it still is; and open descriptors of those namespaces, which keep their inode numbers
    from being reused until the caller closes them."""
    fds: list[int] = []
    inodes: set[int] = set()
    for pid, started in inits:
        try:
            fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        if start_time(pid) != started:
            os.close(fd)
            continue
        fds.append(fd)
        inodes.add(os.fstat(fd).st_ino)

    def inside(pid: int) -> bool:
        with contextlib.suppress(OSError):
            return os.stat(f"/proc/{pid}/ns/mnt").st_ino in inodes
        return False

    members: dict[int, Callable[[int], bool]] = {}
    if inodes:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and inside(int(entry.name)):
                members[int(entry.name)] = inside
    return fds, members
