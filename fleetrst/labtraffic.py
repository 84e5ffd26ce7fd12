"""Processes of the test fleet: traffic generators that make real TCP resets, the supervisor
that starts and reaps them, and the helpers that start and stop processes by PID.

Each one runs inside a lab host (its network, mount and PID namespaces; started by
``fleetrst.lab``) or in a network namespace nested in one, names itself
with ``prctl(PR_SET_NAME)`` so that ``ss`` and ``/proc/PID/comm`` show the scenario's process name,
and ends on its own: after ``--count`` connections, after ``--ttl`` seconds, or as soon as the lab
that started it is gone (its ``lab.json`` removed or replaced), whichever comes first.

    python3 -m fleetrst.labtraffic SCENARIO --role ROLE --address A --port P --rate R \
        --count N --ttl T --name NAME --lab-file DIR/lab.json --lab-id ID
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import math
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWPID = 0x20000000
PAYLOAD = b"PING fleetrst-lab\n"
# How often a generator re-reads lab.json to see whether its lab still exists.
LAB_CHECK_INTERVAL = 1.0
STOP_TIMEOUT = 3.0  # seconds a process gets after SIGTERM, and again after SIGKILL


def comm_of(name: str) -> str:
    """What the kernel keeps of a process name as its comm: 15 bytes, cut at a character."""
    return name.encode()[:15].decode("utf-8", "ignore")


def set_process_name(name: str) -> None:
    """Set this process's comm (what ss, ps and /proc/PID/comm show); the kernel keeps 15 bytes."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NAME, comm_of(name).encode(), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME) failed")


# --- process lifecycle (used by fleetrst.lab too) -------------------------------------------


def spawn_detached(argv: Sequence[str], log: Path, stdin: int | None = None,
                   stdout: int | None = None, env: dict[str, str] | None = None) -> int:
    """Start argv in a session of its own, output appended to `log`; return its PID."""
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_DUP2, stdin, 0) if stdin is not None
        else (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, stdout, 1) if stdout is not None else (os.POSIX_SPAWN_DUP2, 2, 1),
    ]
    return os.posix_spawnp(argv[0], list(argv), os.environ if env is None else env,
                           file_actions=actions, setsid=True)


def start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot): with the PID, it names one process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; counted after the name, which may hold spaces and parentheses.
    return int(text[text.rindex(")") + 2 :].split()[19])


def ns_pid(pid: int) -> int | None:
    """A process's PID as its own PID namespace sees it (the last field of NSpid)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        return None
    return pid  # a kernel without NSpid has no PID namespaces either


def exited(pid: int, started: int) -> bool:
    """True once the process (PID and start time) is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rindex(")") + 2] == "Z" or start_time(pid) != started


def reap(pid: int) -> bool:
    """Collect an exited child; True if `pid` was our child and has exited."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


def pin(pid: int, is_ours: Callable[[int], bool]) -> int | None:
    """A pidfd for `pid` if, once pinned by the pidfd, it is still the process we mean."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if is_ours(pid):
        return fd
    os.close(fd)
    return None


# Set in the supervisor, whose children are all the lab's: while it stops them, it reaps any
# child that exits, since a lab host's init cannot finish exiting before every process of its
# PID namespace is reaped, and some of those are the supervisor's children.
_REAP_ALL_CHILDREN = False


def stop(pidfds: dict[int, int]) -> list[int]:
    """SIGTERM, then SIGKILL, the pinned processes; reap our children; return survivors."""
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for fd in pidfds.values():
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, sig)
            deadline = time.monotonic() + STOP_TIMEOUT
            while pidfds and time.monotonic() < deadline:
                # A pidfd turns readable when its process exits, zombie or not.
                poller = select.poll()
                for fd in pidfds.values():
                    poller.register(fd, select.POLLIN)
                ready = {fd for fd, _ in poller.poll(100)}
                for pid in [p for p, fd in pidfds.items() if fd in ready]:
                    os.close(pidfds.pop(pid))
                    reap(pid)
                if _REAP_ALL_CHILDREN:
                    _reap_children()
            if not pidfds:
                break
        return sorted(pidfds)
    finally:
        for fd in pidfds.values():
            os.close(fd)


# --- generators -------------------------------------------------------------------------------


def lab_alive(lab_file: Path | None, lab_id: str | None) -> bool:
    """True while the lab that started this process is still recorded in its lab.json."""
    if lab_file is None:
        return True
    try:
        return bool(json.loads(lab_file.read_text()).get("lab_id") == lab_id)
    except (OSError, ValueError):
        return False


class Pacer:
    """Yields ticks at a fixed rate, bounded in count, time and by the lab's existence."""

    def __init__(self, args: argparse.Namespace, phase: float = 0.0) -> None:
        self.period = 1.0 / args.rate
        self.count = args.count
        self.deadline = time.monotonic() + args.ttl
        self.lab_file: Path | None = args.lab_file
        self.lab_id: str | None = args.lab_id
        # Ticks sit on a grid of CLOCK_MONOTONIC (shared by all processes) so that two
        # cooperating generators can take turns by phase, without talking to each other.
        self.phase = phase * self.period
        self._checked = 0.0

    def alive(self) -> bool:
        """Still within the time bound and the lab still exists."""
        now = time.monotonic()
        if now >= self.deadline:
            return False
        if now - self._checked >= LAB_CHECK_INTERVAL:
            self._checked = now
            return lab_alive(self.lab_file, self.lab_id)
        return True

    def sleep_until(self, when: float) -> bool:
        """Sleep until `when` (monotonic), waking to check the bounds; False when out of bounds."""
        while True:
            if not self.alive():
                return False
            left = when - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, LAB_CHECK_INTERVAL / 2))

    def ticks(self) -> Iterator[int]:
        """Yield 0, 1, 2, ... on the grid, at most `count` times."""
        start = math.ceil(time.monotonic() / self.period) * self.period + self.phase
        for i in range(self.count):
            if not self.sleep_until(start + i * self.period):
                return
            yield i


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _read_until_closed(sock: socket.socket, timeout: float) -> None:
    """Read everything the peer sends until EOF, a reset or the timeout."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass


def run_closed_port(args: argparse.Namespace) -> None:
    """Client of a dead local service: each connect is refused with [R.] on lo."""
    for _ in Pacer(args).ticks():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        try:
            sock.connect((args.address, args.port))
        except OSError:
            pass
        _close_quietly(sock)


def run_data_client(args: argparse.Namespace) -> None:
    """Client that connects, sends a few bytes and waits for the server's answer (or reset)."""
    for _ in Pacer(args).ticks():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        try:
            sock.connect((args.address, args.port))
            sock.sendall(PAYLOAD)
            _read_until_closed(sock, 1.0)
        except OSError:
            pass
        _close_quietly(sock)


def _listener(args: argparse.Namespace) -> socket.socket:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.address, args.port))
    return srv


def run_abort_server(args: argparse.Namespace, *, read_first: bool) -> None:
    """Server that aborts every connection: SO_LINGER {1,0} after reading, or close unread."""
    srv = _listener(args)
    srv.listen(16)
    srv.settimeout(0.5)
    pacer = Pacer(args)
    served = 0
    while served < args.count and pacer.alive():
        try:
            conn, _ = srv.accept()
        except TimeoutError:
            continue
        served += 1
        conn.settimeout(1.0)
        try:
            if read_first:
                conn.recv(4096)
                # Zero linger turns close() into tcp_disconnect(): a reset, not a FIN.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                # Wait until the client's bytes are queued, then close without reading them:
                # unread data makes close() send a reset (TCPAbortOnClose).
                select.select([conn], [], [], 1.0)
        except OSError:
            pass
        _close_quietly(conn)
    srv.close()


def _accept_queue_length(srv: socket.socket) -> int:
    """Connections waiting in a listener's accept queue (tcpi_unacked of a LISTEN socket)."""
    info = srv.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 24)[0])


def run_overflow_server(args: argparse.Namespace) -> None:
    """Listener with backlog 1 that accepts only enough to keep its queue exactly full."""
    srv = _listener(args)
    # With TCP_DEFER_ACCEPT a child is created when the client's first data arrives, not at
    # the handshake's ACK: the SYN passes while the queue has room, the data then overflows it
    # and, with tcp_abort_on_overflow=1, is answered by a reset. Without it the SYN itself is
    # dropped on a full queue and no reset is ever sent.
    srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
    srv.listen(1)
    srv.setblocking(False)
    served = 0
    # Half a period after the client's bursts: take the oldest connection, leave one queued.
    for _ in Pacer(args, phase=0.5).ticks():
        while served < args.count and _accept_queue_length(srv) > 1:
            try:
                conn, _ = srv.accept()
            except BlockingIOError:
                break
            served += 1
            _read_until_closed(conn, 0.05)
            _close_quietly(conn)
        if served >= args.count:
            break
    srv.close()


def run_overflow_client(args: argparse.Namespace) -> None:
    """Client that opens two connections per tick and sends on both, one past a full queue."""
    for _ in Pacer(args).ticks():
        socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(2)]
        try:
            for sock in socks:
                sock.setblocking(False)
                sock.connect_ex((args.address, args.port))
            # Both handshakes finish before any data goes out, so both SYNs find room.
            select.select([], socks, [], 0.2)
            for sock in socks:
                try:
                    sock.send(PAYLOAD)
                except OSError:
                    pass
            # Let the reset land before close(): a FIN after it would draw a second reset.
            select.select(socks, [], [], 0.05)
        finally:
            for sock in socks:
                _close_quietly(sock)


def run_port_sweep(args: argparse.Namespace) -> None:
    """Scanner: connects to one closed port of the target after another."""
    ports = [int(p) for p in args.ports.split(",") if p]
    for i in Pacer(args).ticks():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        try:
            sock.connect((args.address, ports[i % len(ports)]))
        except OSError:
            pass
        _close_quietly(sock)


class _Stopped(Exception):
    """SIGTERM reached the supervisor."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Stopped


def _reap_children(wait: float = 0.0) -> None:
    """Collect exited children (and orphans handed to us as subreaper), waiting up to `wait`."""
    deadline = time.monotonic() + wait
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.05)


class _PidNamespaces:
    """Where the supervisor's next child is born: its own PID namespace, a new one (whose init
    that child becomes), or a lab host's. Only the children's namespace changes (unshare and
    setns with CLONE_NEWPID): the supervisor itself stays where it is, so it stays their parent
    and reaper, and every PID it reports is one the root namespace sees."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    @contextlib.contextmanager
    def children_in(self, where: Any) -> Iterator[None]:
        """`where`: None (ours), "new", or {"pid", "start_time"} of a host's init."""
        if where is None:
            yield
            return
        if where == "new":
            self._check(self.libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        else:
            fd = os.open(f"/proc/{int(where['pid'])}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            try:
                # Checked once the namespace is held open: it is the one of that very init.
                if start_time(int(where["pid"])) != where["start_time"]:
                    raise OSError(errno.ESRCH, f"the init {where['pid']} of that host is gone")
                self._check(self.libc.setns(fd, CLONE_NEWPID), "setns(CLONE_NEWPID)")
            finally:
                os.close(fd)
        try:
            yield
        finally:
            self._check(self.libc.setns(self.own, CLONE_NEWPID), "setns back")


def run_supervisor(args: argparse.Namespace) -> None:
    """Parent of the lab's processes: starts them on request (one JSON line each on stdin),
    reaps them, and takes the lab down when its time to live is over.

    A request is {"argv", "log"} and optionally "pid_ns": "new" (the process becomes the init
    of a new PID namespace: a lab host's) or {"pid", "start_time"} of such an init (the process
    is born in that host's PID namespace). The reply gives its PID as the root namespace sees
    it, its start time, and its PID inside its own PID namespace.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    # Subreaper: sshd sessions orphaned when their sshd is stopped come to us, not to PID 1,
    # which in containers often never reaps them.
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    global _REAP_ALL_CHILDREN
    _REAP_ALL_CHILDREN = True
    signal.signal(signal.SIGTERM, _on_sigterm)
    pacer = Pacer(args)
    namespaces = _PidNamespaces()
    try:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                with namespaces.children_in(request.get("pid_ns")):
                    pid = spawn_detached(request["argv"], Path(request["log"]))
                reply: dict[str, Any] = {"pid": pid, "start_time": start_time(pid),
                                         "ns_pid": ns_pid(pid)}
            except OSError as exc:
                reply = {"error": f"cannot start {request['argv'][0]}: {exc}"}
            print(json.dumps(reply), flush=True)
        while pacer.alive():
            _reap_children()
            time.sleep(0.2)
        if lab_alive(args.lab_file, args.lab_id) and args.lab_file is not None:
            from fleetrst.lab import lab_down

            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # finish the teardown
            lab_down(args.lab_file.parent)
    except _Stopped:
        pass
    finally:
        _reap_children(wait=2.0)


ROLES = {
    ("closed_port", "client"): run_closed_port,
    ("linger_abort", "server"): lambda a: run_abort_server(a, read_first=True),
    ("linger_abort", "client"): run_data_client,
    ("unread_close", "server"): lambda a: run_abort_server(a, read_first=False),
    ("unread_close", "client"): run_data_client,
    ("listen_overflow", "server"): run_overflow_server,
    ("listen_overflow", "client"): run_overflow_client,
    ("port_sweep", "client"): run_port_sweep,
    ("supervisor", "client"): run_supervisor,
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse a generator's command line."""
    parser = argparse.ArgumentParser(prog="python3 -m fleetrst.labtraffic")
    parser.add_argument("scenario", choices=sorted({s for s, _ in ROLES}))
    parser.add_argument("--role", choices=["client", "server"], default="client")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ports", default="", help="comma-separated target ports (port_sweep)")
    parser.add_argument("--rate", type=float, default=1.0, help="ticks per second")
    parser.add_argument("--count", type=int, required=True, help="stop after this many")
    parser.add_argument("--ttl", type=float, required=True, help="stop after this many seconds")
    parser.add_argument("--name", required=True, help="process name (comm)")
    parser.add_argument("--lab-file", type=Path, default=None)
    parser.add_argument("--lab-id", default=None)
    args = parser.parse_args(argv)
    if (args.scenario, args.role) not in ROLES:
        parser.error(f"{args.scenario} has no {args.role} role")
    if args.rate <= 0 or args.count < 0 or args.ttl <= 0:
        parser.error("--rate and --ttl must be positive, --count not negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one generator until one of its bounds is reached."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    set_process_name(args.name)
    try:
        ROLES[(args.scenario, args.role)](args)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
