"""The test fleet ("lab"): network namespaces with their own sshd, joined by a bridge in the root
namespace, each running one scenario that makes real TCP resets. Used by the end-to-end tests and
by ``fleetrst lab up|down``; everything it creates is recorded in ``DIR/lab.json`` for lab_down.

Each host looks like a machine of its own from the inside: besides its network namespace it has
a PID namespace and a mount namespace, with its own /proc (``ps`` and ``ss -p`` show its own
processes, with its own PIDs) and its own /run/netns (``ip netns`` lists its own named
namespaces). Its first process, the host's init, holds them; everything else of the host is
started inside them, and all of it dies with the init. A scenario may run in a network
namespace nested in its host, as a container does (``closed_port@netns``, ``linger_abort@named``),
and a host may hold idle nested namespaces (``idle_netns``, ``idle_named``).

With a bastion, the root namespace's bridge holds only the bastion (its own sshd, OpenSSH's
default limits); the hosts sit on a bridge inside the bastion's namespace, on a block the root
namespace has an ``unreachable`` route for, so they are reached through the bastion only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import math
import os
import random
import re
import secrets
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleetrst.errors import LabError
from fleetrst.labhost import (
    add_named,
    in_host,
    in_new_netns,
    init_argv,
    mount_ns_members,
    named_path,
    wait_init,
    wait_new_netns,
)
from fleetrst.labtraffic import comm_of, exited, ns_pid, pin, spawn_detached, start_time, stop

LAB_POOL = ipaddress.IPv4Network("198.18.0.0/24")
SCENARIOS = (
    "closed_port", "linger_abort", "unread_close", "port_sweep", "listen_overflow", "quiet", "dead",
)
# Expected resets per second each scenario's generators are configured for.
RATES = {
    "closed_port": 2.0, "linger_abort": 2.0, "unread_close": 2.0,
    "port_sweep": 5.0, "listen_overflow": 5.0,
}
SWEEP_PORTS = 20
# Scenarios with a main process whose name lab_up(names=...) can force.
NAMED_SCENARIOS = ("closed_port", "linger_abort", "unread_close", "port_sweep", "listen_overflow")
# Scenarios that can run in a namespace nested in their host ("closed_port@netns"): all their
# processes are in it and talk over its own lo.
NESTABLE_SCENARIOS = ("closed_port", "linger_abort", "unread_close", "listen_overflow")
PLACEMENTS = ("netns", "named")  # SCENARIO@netns: unnamed; SCENARIO@named[=NAME]: `ip netns add`
MAX_IDLE_NETNS = 100  # per host and kind
NETNS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
PORTS = range(1025, 32001)  # below the ephemeral range, so no client ever holds one of them
# Process names: varied, some with characters that naive `ss -p` parsing gets wrong.
NAME_POOL = (
    "billing-agent", "metricsd", "cache_sync", "jobrunner", "api-gw", "auth-proxy", "ledgerd",
    "queue.worker", "imgresize", "search-idx", "notifier", "report_gen", "geo-lookup",
    "db)proxy", "log shipper",
)
SSHD = "/usr/sbin/sshd"
TOOLS = ("ip", "ssh-keygen", "nsenter", "unshare")
GLOBAL_LOCK = Path("/run/fleetrst-lab.lock")
SSHD_TIMEOUT = 30.0
LISTEN_TIMEOUT = 10.0
MAX_HOSTS = LAB_POOL.num_addresses - 3  # network, bridge and broadcast addresses
INNER_BRIDGE = "br0"  # inside the bastion's namespace: no clash with any other lab's links
BASTION = "bastion"
FORMAT = 1


@dataclass
class LabProcess:
    """A process of a lab host: its PID in the root namespace (to stop it) and in its host."""

    pid: int
    ns_pid: int
    name: str
    role: str = ""


@dataclass
class LabNetns:
    """A network namespace nested in a lab host, as a container runtime makes them."""

    inode: int  # of /proc/PID/ns/net, as os.stat sees it from the root namespace
    name: str | None  # named: in the host's own /run/netns; None: held by its process only
    scenario: str | None  # the scenario running in it, None for an idle one
    main: LabProcess | None  # the process that holds it (None: a named one, held by its name)
    processes: list[LabProcess] = field(default_factory=list)  # the scenario's processes


@dataclass
class LabHost:
    """One lab host and the ground truth of what its scenario does.

    With the scenario in a nested namespace, `expected["netns"]` is {"name", "inode"} of it.
    """

    name: str
    address: str
    namespace: str
    scenario: str
    expected: dict[str, Any]
    init: LabProcess | None = None  # holds the host's PID and mount namespaces (None: dead)
    netns: list[LabNetns] = field(default_factory=list)


@dataclass
class LabBastion:
    """The lab's bastion: the one host the root namespace reaches, the others' way in."""

    name: str
    address: str  # on the root namespace's bridge
    namespace: str
    inner_subnet: str  # the hosts' network, reachable only from inside the bastion
    inner_address: str  # the bastion's address on it


@dataclass
class LabState:
    """A running lab, as recorded in its directory."""

    directory: Path
    seed: int
    subnet: str
    bridge: str
    hosts: list[LabHost]
    inventory: Path
    known_hosts: Path
    key_file: Path
    bastion: LabBastion | None = None


@dataclass
class ProcSpec:
    """A traffic generator to start: in which host's namespace (None: root), as what;
    `nested`: in the network namespace nested in that host for its scenario."""

    host: int | None
    scenario: str
    role: str
    name: str
    options: list[str] = field(default_factory=list)
    nested: bool = False


@dataclass
class HostPlan:
    """What one host runs and what a correct diagnosis of it says; `netns` is {"name": ...}
    of the nested namespace the scenario runs in (name None: unnamed), or None."""

    scenario: str
    expected: dict[str, Any]
    procs: list[ProcSpec]
    netns: dict[str, Any] | None = None


# --- planning: pure, seeded -------------------------------------------------------------------


def parse_scenario(entry: str) -> tuple[str, str | None, str | None]:
    """(scenario, placement, name) of "closed_port", "closed_port@netns" (in an unnamed nested
    network namespace), "linger_abort@named" (a named one, name drawn from the seed) or
    "linger_abort@named=NAME"."""
    kind, at, where = entry.partition("@")
    if kind not in SCENARIOS:
        raise LabError(f"unknown scenario {kind!r}; known: {', '.join(SCENARIOS)}")
    if not at:
        return kind, None, None
    placement, eq, name = where.partition("=")
    if placement not in PLACEMENTS or (eq and placement != "named"):
        raise LabError(f"bad placement in {entry!r}: SCENARIO@netns, SCENARIO@named or "
                       "SCENARIO@named=NAME")
    if kind not in NESTABLE_SCENARIOS:
        raise LabError(f"{kind} cannot run in a nested namespace; these can: "
                       f"{', '.join(NESTABLE_SCENARIOS)}")
    if eq and not NETNS_NAME.fullmatch(name):
        raise LabError(f"bad namespace name {name!r} in {entry!r}: letters, digits, '_', '.', "
                       "'-', at most 63, not starting with a punctuation mark")
    return kind, placement, name or None


def assign_scenarios(
    rng: random.Random, count: int, scenarios: Sequence[str] | None = None
) -> list[str]:
    """Scenarios in the given order (cycling), or host 0 closed_port and the rest at random."""
    if scenarios:
        for entry in scenarios:
            parse_scenario(entry)
        return [scenarios[i % len(scenarios)] for i in range(count)]
    others = [s for s in SCENARIOS if s != "closed_port"]
    kinds = ["closed_port"] + [rng.choice(others) for _ in range(count - 1)]
    if count >= 3 and "quiet" not in kinds:
        kinds[rng.randrange(1, count)] = "quiet"
    return kinds


def process_name(rng: random.Random, used: set[str]) -> str:
    """A fresh process name from the pool with a random suffix, at most 15 bytes (comm)."""
    while True:
        base = rng.choice(NAME_POOL)
        suffix = rng.choice(["-", "_", ".", ""]) + format(rng.randrange(16**3), "x")
        name = base[: 15 - len(suffix)] + suffix
        if name not in used:
            used.add(name)
            return name


def netns_name(rng: random.Random) -> str:
    """A name as CNI plugins give the namespaces of containers: cni-UUID."""
    return f"cni-{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def plan_lab(seed: int, scenarios: Sequence[str] | None, names: Sequence[str],
             addresses: Sequence[str], root: str,
             process_names: Mapping[str, str] | None = None) -> list[HostPlan]:
    """Scenario, ground truth and processes per host; `root` is the bridge's address.

    `process_names` forces the name of a scenario's main process (the one a correct diagnosis
    names); its full text is in the process's command line, its first 15 bytes are its comm.
    A scenario in a nested namespace talks over that namespace's lo, on 127.0.0.1.
    """
    rng = random.Random(seed)
    # Names of nested namespaces come from a stream of their own: the ports and process names
    # of a seed are the same with or without nesting.
    netns_rng = random.Random(f"{seed}/netns")
    forced = dict(process_names or {})
    count = len(names)
    entries = assign_scenarios(rng, count, scenarios)
    ports = rng.sample(PORTS, count)
    taken = set(ports)
    used: set[str] = set()
    plans = []
    placed = [parse_scenario(entry) for entry in entries]
    kinds = [kind for kind, _, _ in placed]
    for i, (kind, placement, given) in enumerate(placed):
        port = ports[i]
        addr = "127.0.0.1" if placement else addresses[i]
        rate = RATES.get(kind, 0.0)
        expected: dict[str, Any] = {"kind": None}
        procs: list[ProcSpec] = []
        if kind == "closed_port":
            client = forced.get(kind) or process_name(rng, used)
            procs.append(ProcSpec(i, kind, "client", client, ["--address", "127.0.0.1"]))
            expected = {
                "kind": "local_dead_service", "interface": "lo", "local_port": port,
                "local_addr": "127.0.0.1", "rate": rate, "process": comm_of(client),
                "peer": "127.0.0.1",
                "reason": "NO_SOCKET",
            }
        elif kind in ("linger_abort", "unread_close", "listen_overflow"):
            server, client = process_name(rng, used), process_name(rng, used)
            server = forced.get(kind) or server
            procs += [
                ProcSpec(i, kind, "server", server, ["--address", addr]),
                ProcSpec(i, kind, "client", client, ["--address", addr]),
            ]
            expected = {
                "kind": "abort", "interface": "lo", "local_port": port, "local_addr": addr,
                "peer": addr, "rate": rate, "process": comm_of(server), "client_process": client,
            }
            if kind == "linger_abort":
                expected.update(reason="TCP_STATE", counter="TCPAbortOnData")
            elif kind == "unread_close":
                expected.update(reason="TCP_ABORT_ON_CLOSE", counter="TCPAbortOnClose")
            else:
                expected.update(kind="listen_overflow", reason="INVALID_SYN",
                                counter="ListenOverflows")
        elif kind == "port_sweep":
            sweep = sorted(rng.sample([p for p in PORTS if p not in taken], SWEEP_PORTS))
            taken.update(sweep)
            # The scanner must not disturb a host that is meant to stay quiet (or down).
            candidates = [j for j, k in enumerate(kinds) if j != i and k not in ("quiet", "dead")]
            scanner = rng.choice(candidates) if candidates else None
            name = forced.get(kind) or process_name(rng, used)
            procs.append(ProcSpec(scanner, kind, "client", name,
                                  ["--address", addr, "--ports", ",".join(map(str, sweep))]))
            expected = {
                "kind": "scan", "interface": "eth0", "local_addr": addr,
                "peer": root if scanner is None else addresses[scanner], "rate": rate,
                "ports": sweep, "reason": "NO_SOCKET",
                "scanner_host": None if scanner is None else names[scanner],
                "scanner_process": comm_of(name),
            }
        elif kind == "dead":
            expected = {"kind": None, "status": "failed"}
        netns = None
        if placement is not None:
            netns = {"name": given or (netns_name(netns_rng) if placement == "named" else None)}
            expected["netns"] = dict(netns)
        for proc in procs:
            proc.options += ["--port", str(port), "--rate", str(rate)]
            proc.nested = placement is not None
        plans.append(HostPlan(kind, expected, procs, netns))
    return plans


def pick_subnet(hosts: int, used: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first aligned block of LAB_POOL that fits the hosts and overlaps nothing in use."""
    if not 1 <= hosts <= MAX_HOSTS:
        raise LabError(f"a lab has 1 to {MAX_HOSTS} hosts, not {hosts}")
    prefix = 32 - max(2, math.ceil(math.log2(hosts + 3)))
    for block in LAB_POOL.subnets(new_prefix=prefix):
        if not any(block.overlaps(net) for net in used):
            return block
    clash = ", ".join(str(n) for n in used if n.overlaps(LAB_POOL))
    raise LabError(f"no free /{prefix} left in {LAB_POOL} for {hosts} hosts (in use: {clash})")


def parse_used_networks(addr_output: str, route_output: str) -> list[ipaddress.IPv4Network]:
    """Networks of `ip -4 -o addr` and destinations of `ip -4 route show table all`."""
    nets = []
    for line in addr_output.splitlines():
        words = line.split()
        if "inet" in words:
            nets.append(ipaddress.IPv4Interface(words[words.index("inet") + 1]).network)
    route_types = {"unicast", "local", "broadcast", "multicast", "unreachable", "prohibit",
                   "blackhole", "throw", "nat", "anycast"}
    for line in route_output.splitlines():
        words = line.split()
        if words and words[0] in route_types:
            words = words[1:]
        # The default route covers everything and is no conflict: lab routes are more specific.
        if words and words[0] != "default":
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.IPv4Network(words[0], strict=False))
    return nets


# --- small system helpers ---------------------------------------------------------------------


def _run(*argv: str) -> str:
    """Run a command; its stdout, or a LabError with its stderr."""
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    return ""


class _Record:
    """lab.json, rewritten atomically after every change, so lab_down can always undo it."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    def add(self, key: str, value: Any, save: bool = True) -> None:
        self.data[key].append(value)
        if save:
            self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, self.path)


# --- lab up -----------------------------------------------------------------------------------


def _check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veths, a bridge, sshd)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    missing += [] if os.access(SSHD, os.X_OK) else [SSHD]
    if missing:
        raise LabError(f"the lab needs {', '.join(missing)} (iproute2, openssh-server)")


def _new_lab_id() -> str:
    """A random lab id that no link or namespace name of this machine starts with yet."""
    existing = _run("ip", "-o", "link").split() + _run("ip", "netns", "list").split()
    while True:
        lab_id = secrets.token_hex(3)
        if not any(name.startswith(f"frst{lab_id}") for name in existing):
            return lab_id


def pick_subnets(hosts: int, bastion: bool, used: Sequence[ipaddress.IPv4Network]
                 ) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network | None]:
    """The bridge's block and, with a bastion, the hosts' inner block: both free, disjoint.

    With a bastion the bridge holds only the bastion; the inner block holds the bastion's inner
    address and the hosts.
    """
    subnet = pick_subnet(1 if bastion else hosts, used)
    return subnet, pick_subnet(hosts, [*used, subnet]) if bastion else None


def _new_bridge(record: _Record, hosts: int, bastion: bool
                ) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network | None]:
    """Pick free blocks and create the bridge holding the first address of the first; the
    inner block, if any, gets an unreachable route here, so nothing for it leaves the machine."""
    lab_id = record.data["lab_id"]
    # The lock makes choosing the blocks and taking them (the bridge's address, the route) one
    # step; the unreachable route is also what tells the next lab that the inner block is taken.
    with _locked(GLOBAL_LOCK):
        used = parse_used_networks(_run("ip", "-4", "-o", "addr"),
                                   _run("ip", "-4", "route", "show", "table", "all"))
        subnet, inner = pick_subnets(hosts, bastion, used)
        bridge = f"frst{lab_id}br"
        record.data.update(subnet=str(subnet), bridge=bridge, bridge_address=str(subnet[1]))
        record.save()
        _run("ip", "link", "add", bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{subnet[1]}/{subnet.prefixlen}", "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        if inner is not None:
            record.add("routes", str(inner))
            _run("ip", "-4", "route", "add", "unreachable", str(inner))
    return subnet, inner


def _add_bastion(record: _Record, ns: str, veth: str, address: str, prefix: int,
                 inner: ipaddress.IPv4Network) -> None:
    """The bastion's namespace: eth0 on the lab's bridge, an inner bridge for the hosts, and
    no forwarding between the two (a new namespace may inherit ip_forward=1 from the root)."""
    record.add("namespaces", ns)
    _run("ip", "netns", "add", ns)
    _run("ip", "netns", "exec", ns, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")
    record.add("veths", veth)
    _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _run("ip", "link", "set", veth, "master", record.data["bridge"], "up")
    _run("ip", "-n", ns, "link", "set", "lo", "up")
    _run("ip", "-n", ns, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
    _run("ip", "-n", ns, "link", "set", "eth0", "up")
    _run("ip", "-n", ns, "link", "add", INNER_BRIDGE, "type", "bridge")
    _run("ip", "-n", ns, "addr", "add", f"{inner[1]}/{inner.prefixlen}", "dev", INNER_BRIDGE)
    _run("ip", "-n", ns, "link", "set", INNER_BRIDGE, "up")


def _add_host(record: _Record, ns: str, veth: str, address: str, prefix: int,
              behind: str | None = None) -> None:
    """A namespace whose eth0 is a veth to the lab's bridge, or with `behind` (the bastion's
    namespace) to the inner bridge there; that end lives and dies with the bastion's namespace."""
    record.add("namespaces", ns)
    _run("ip", "netns", "add", ns)
    if behind is None:
        record.add("veths", veth)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _run("ip", "link", "set", veth, "master", record.data["bridge"], "up")
    else:
        _run("ip", "-n", behind, "link", "add", veth, "type", "veth",
             "peer", "name", "eth0", "netns", ns)
        _run("ip", "-n", behind, "link", "set", veth, "master", INNER_BRIDGE, "up")
    _run("ip", "-n", ns, "link", "set", "lo", "up")
    # Only the connected route of eth0: no default route, nothing leaves the lab.
    _run("ip", "-n", ns, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
    _run("ip", "-n", ns, "link", "set", "eth0", "up")


def _keygen(path: Path, comment: str) -> str:
    """Make an ed25519 key pair at `path`; return the public key without its comment."""
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


SSHD_CONFIG = """\
# sshd of fleetrst lab host {name}
ListenAddress {address}:22
HostKey "{host_key}"
AuthorizedKeysFile "{authorized_keys}" .ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
LogLevel {log_level}
PrintMotd no
Subsystem sftp internal-sftp
{extra}"""
# bash started by sshd reads ~/.bashrc only as a top-level shell (SHLVL unset or 0). The hosts
# share this machine's /root, whose rc files are the machine's, not a test host's, and can be
# slow (pyenv rehash takes a lock in every new shell): with tens of hosts behind a bastion that
# serializes every command of a scan.
NO_MACHINE_RC = "SetEnv SHLVL=1\n"
# libfaketime, for a host whose clock is off: every program of its sessions reads the wall clock
# shifted (`date`, the host script), while the kernel's own timestamps (packets, tracefs) and
# the lengths of sleeps and timeouts stay true, as on a host whose clock was set wrong.
FAKETIME_GLOBS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1")


def faketime_library() -> str:
    """The path of libfaketime (Debian's faketime package), or LabError."""
    import glob

    for pattern in FAKETIME_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise LabError("a host with a clock offset needs libfaketime (apt-get install faketime)")


def clock_setenv(offset_s: float) -> str:
    """What shifts a host's sessions' wall clock by offset_s seconds, as words of sshd_config's
    SetEnv (only its first SetEnv line counts: these join NO_MACHINE_RC's)."""
    if not math.isfinite(offset_s) or abs(offset_s) > 10 * 365 * 86400:
        raise LabError(f"bad clock offset: {offset_s!r}")
    return f" LD_PRELOAD={faketime_library()} FAKETIME={offset_s:+.0f} FAKETIME_NO_CACHE=1"


class _Supervisor:
    """The lab's supervisor process: parent (and reaper) of everything the lab runs, and the
    lab's time to live (labtraffic.run_supervisor). Lives on after lab_up returns."""

    def __init__(self, record: _Record, ttl: float) -> None:
        self.record = record
        lab_id = record.data["lab_id"]
        argv = [sys.executable, "-m", "fleetrst.labtraffic", "supervisor", "--name",
                f"frst{lab_id}sup", "--count", "1", "--ttl", str(ttl),
                "--lab-file", str(record.path), "--lab-id", lab_id]
        # Its children inherit this: every generator imports this very fleetrst package.
        env = dict(os.environ)
        package_parent = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
        requests, replies = os.pipe(), os.pipe()
        try:
            pid = spawn_detached(argv, record.path.parent / "supervisor.log",
                                 stdin=requests[0], stdout=replies[1], env=env)
        except OSError as exc:
            raise LabError(f"cannot start the lab supervisor: {exc}") from exc
        finally:
            os.close(requests[0])
            os.close(replies[1])
        self.requests = os.fdopen(requests[1], "w")
        self.replies = os.fdopen(replies[0])
        record.add("processes", {"pid": pid, "start_time": start_time(pid), "ns_pid": pid,
                                 "argv": argv, "role": "supervisor", "name": argv[5],
                                 "host": None, "namespace": None, "scenario": None})

    def spawn(self, argv: list[str], log: Path, pid_ns: str | tuple[int, int] | None = None,
              save: bool = True, **what: Any) -> tuple[int, int]:
        """Have the supervisor start argv; record and return (PID, start time).

        `pid_ns`: "new" makes the process the init of a new PID namespace; the (PID, start
        time) of such an init starts it in that one. Recorded with `save` False, the process
        is on record once the next record is saved (fine for processes of a host: they die
        with its init, which is on record).
        """
        request: dict[str, Any] = {"argv": argv, "log": str(log)}
        if pid_ns is not None:
            request["pid_ns"] = pid_ns if pid_ns == "new" else {
                "pid": pid_ns[0], "start_time": pid_ns[1]}
        try:
            self.requests.write(json.dumps(request) + "\n")
            self.requests.flush()
            reply = json.loads(self.replies.readline() or "{}")
        except (OSError, ValueError) as exc:
            raise LabError(f"the lab supervisor is gone: {exc}") from exc
        if "pid" not in reply:
            raise LabError(reply.get("error", "the lab supervisor is gone"))
        self.record.add("processes", {"pid": reply["pid"], "start_time": reply["start_time"],
                                      "ns_pid": reply.get("ns_pid"), "argv": argv,
                                      "log": str(log), **what}, save=save)
        return reply["pid"], reply["start_time"]

    def close(self) -> None:
        """End the requests: from now on the supervisor only reaps and keeps the deadline."""
        for stream in (self.requests, self.replies):
            with contextlib.suppress(OSError):
                stream.close()


def _ssh_banner(address: str) -> bool:
    """True once an SSH server answers with its banner on address:22."""
    try:
        with socket.create_connection((address, 22), timeout=0.5) as sock:
            sock.settimeout(2.0)
            banner = sock.recv(64)
            # Answering with a banner of our own keeps sshd's error log free of this probe.
            sock.sendall(b"SSH-2.0-fleetrst-lab-probe\r\n")
            return banner.startswith(b"SSH-")
    except OSError:
        return False


def _listening(pid: int, address: str, port: int) -> bool:
    """True if the network namespace of process `pid` has a listener on address:port."""
    # /proc/PID/net/tcp shows the network namespace of that process.
    packed = struct.unpack("=I", socket.inet_aton(address))[0]
    local = f"{packed:08X}:{port:04X}"
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
            words = line.split()
            if words[1] == local and words[3] == "0A":
                return True
    return False


def _wait_for_sshd(pending: dict[str, tuple[str, tuple[int, int], Path]],
                   reachable: bool = True) -> None:
    """Poll each host's port 22 from the root namespace until every sshd answers; hosts the
    root namespace cannot reach (behind a bastion) are ready once their sshd listens."""
    deadline = time.monotonic() + SSHD_TIMEOUT
    while pending:
        for name, (address, proc, log) in list(pending.items()):
            if exited(*proc):
                raise LabError(f"sshd of {name} ({address}) exited: {_tail(log)}")
            if _ssh_banner(address) if reachable else _listening(proc[0], address, 22):
                del pending[name]
        if pending and time.monotonic() > deadline:
            late = ", ".join(f"{n} ({a})" for n, (a, _, _) in pending.items())
            raise LabError(f"sshd did not answer within {SSHD_TIMEOUT:.0f}s on {late}")
        if pending:
            time.sleep(0.05)


def _wait_listening(proc: tuple[int, int], address: str, port: int, log: Path) -> None:
    """Wait until the process's namespace has a listener on address:port."""
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while True:
        if exited(*proc):
            raise LabError(f"server for {address}:{port} exited: {_tail(log)}")
        if _listening(proc[0], address, port):
            return
        if time.monotonic() > deadline:
            raise LabError(f"nothing listens on {address}:{port} after {LISTEN_TIMEOUT:.0f}s")
        time.sleep(0.02)


def _wait_named(procs: list[tuple[tuple[int, int], str]], timeout: float) -> None:
    """Wait until every generator runs under its scenario name, as a scanner will see it."""
    deadline = time.monotonic() + timeout
    for (pid, started), name in procs:
        while True:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().rstrip("\n") == comm_of(name):
                    break
            if exited(pid, started) or time.monotonic() > deadline:
                raise LabError(f"generator {name!r} (PID {pid}) did not start")
            time.sleep(0.01)


def _option(proc: ProcSpec, name: str) -> str:
    return proc.options[proc.options.index(name) + 1]


def _traffic_argv(proc: ProcSpec, record: _Record, ttl: float) -> list[str]:
    rate = float(_option(proc, "--rate"))
    return [sys.executable, "-m", "fleetrst.labtraffic", proc.scenario, "--role", proc.role,
            "--name", proc.name, "--count", str(math.ceil(rate * ttl) + 1), "--ttl", str(ttl),
            "--lab-file", str(record.path), "--lab-id", record.data["lab_id"], *proc.options]


def _sshd_config(directory: Path, name: str, address: str, authorized: Path,
                 log_level: str = "ERROR", extra: str = "") -> tuple[Path, str]:
    """Host key and sshd_config of one host in directory; (config path, known_hosts line)."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    known = f"{address} {_keygen(host_key, name + '@fleetrst-lab')}"
    config = directory / "sshd_config"
    # sshd expands %-tokens in AuthorizedKeysFile; the quotes protect spaces.
    config.write_text(SSHD_CONFIG.format(
        name=name, address=address, host_key=host_key, log_level=log_level, extra=extra,
        authorized_keys=str(authorized).replace("%", "%%")))
    return config, known


def _start_inits(record: _Record, supervisor: _Supervisor,
                 hosts: Mapping[str, tuple[str, Path]]) -> dict[str, tuple[int, int]]:
    """Start the init of each host (or the bastion): {name: (network namespace, directory)},
    until the lab's deadline; wait until each has mounted its own /proc and /run/netns."""
    inits = {}
    for name, (namespace, where) in hosts.items():
        where.mkdir(parents=True, exist_ok=True)
        inits[name] = supervisor.spawn(
            init_argv(namespace, record.data["deadline"] - time.time()), where / "init.log",
            pid_ns="new", role="init", name="sh", host=name, namespace=namespace,
            scenario=None)
    for name, started in inits.items():
        wait_init(*started, hosts[name][1] / "init.log")
    return inits


def _process(pid: int, name: str, role: str) -> dict[str, Any]:
    return {"pid": pid, "ns_pid": ns_pid(pid), "name": name, "role": role}


def _add_idle(record: _Record, supervisor: _Supervisor, seed: int, host: dict[str, Any],
              init: tuple[int, int], old: set[int], unnamed: int, named: int
              ) -> list[dict[str, Any]]:
    """Idle nested namespaces of a host: `unnamed` ones, each held by a `sleep` until the lab's
    deadline, and `named` ones in its own /run/netns with no process; their records."""
    log = record.path.parent / "hosts" / host["name"] / "idle.log"
    seconds = str(max(1, int(record.data["deadline"] - time.time())))
    sleeps = [supervisor.spawn(in_host(init[0], in_new_netns(["sleep", seconds])), log,
                               pid_ns=init, save=False, role="idle", name="sleep",
                               host=host["name"], namespace=host["namespace"], scenario=None)
              for _ in range(unnamed)]
    record.save()
    entries: list[dict[str, Any]] = [
        {"inode": inode, "name": None, "scenario": None,
         "main": _process(pid, "sleep", "idle"), "processes": []}
        for (pid, _), inode in zip(sleeps, wait_new_netns(sleeps, old))]
    rng = random.Random(f"{seed}/idle/{host['name']}")
    names = [netns_name(rng) for _ in range(named)]
    entries += [{"inode": inode, "name": name, "scenario": None, "main": None, "processes": []}
                for name, inode in zip(names, add_named(init[0], names))]
    return entries


def _build(record: _Record, count: int, seed: int, scenarios: Sequence[str] | None,
           ttl: float, supervisor: _Supervisor, process_names: Mapping[str, str] | None,
           bastion: bool = False, idle: Mapping[str, tuple[int, int]] | None = None,
           clock_offsets: Mapping[str, float] | None = None) -> None:
    directory = record.path.parent
    lab_id = record.data["lab_id"]
    subnet, inner = _new_bridge(record, count, bastion)
    hosts_net = inner or subnet
    addresses = [str(hosts_net[2 + i]) for i in range(count)]
    names = [f"host{i}" for i in range(count)]
    # Generators not in a host (a sweep with no other busy host) run where the hosts' own
    # network is attached: the root namespace, or the bastion.
    outside = f"frst{lab_id}bastion" if inner is not None else None
    plans = plan_lab(seed, scenarios, names, addresses, str(hosts_net[1]), process_names)
    namespaces = [f"frst{lab_id}h{i}" for i in range(count)]
    if inner is not None and outside is not None:
        record.data["bastion"] = {
            "name": BASTION, "address": str(subnet[2]), "namespace": outside,
            "veth": f"frst{lab_id}vb", "inner_subnet": str(inner),
            "inner_address": str(inner[1])}
        record.save()
        _add_bastion(record, outside, f"frst{lab_id}vb", str(subnet[2]), subnet.prefixlen,
                     inner)
    record.data["hosts"] = [
        {"name": names[i], "address": addresses[i], "namespace": namespaces[i],
         "veth": f"frst{lab_id}v{i}", "scenario": plan.scenario, "expected": plan.expected,
         "init": None, "netns": []}
        for i, plan in enumerate(plans)
    ]
    record.save()
    for i, host in enumerate(record.data["hosts"]):
        _add_host(record, namespaces[i], host["veth"], addresses[i], hosts_net.prefixlen,
                  behind=outside)
        if plans[i].scenario == "listen_overflow" and plans[i].netns is None:
            # Per-namespace sysctl: the listener's queue overflow is answered with a reset.
            _run("ip", "netns", "exec", namespaces[i], "sh", "-c",
                 "echo 1 > /proc/sys/net/ipv4/tcp_abort_on_overflow")

    key_file = directory / "id_ed25519"
    authorized = directory / "authorized_keys"
    authorized.write_text(_keygen(key_file, f"fleetrst-lab-{lab_id}") + "\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    known, pending = [], {}
    jump = record.data.get("bastion")
    # Each running host's init first: everything else of the host is started inside it.
    booting = {BASTION: (jump["namespace"], directory / BASTION)} if jump is not None else {}
    booting.update({host["name"]: (namespaces[i], directory / "hosts" / host["name"])
                    for i, host in enumerate(record.data["hosts"])
                    if plans[i].scenario != "dead"})
    inits = _start_inits(record, supervisor, booting)
    for host in record.data["hosts"]:
        if host["name"] in inits:
            host["init"] = _process(inits[host["name"]][0], "sh", "init")
    record.save()
    if jump is not None:
        # OpenSSH's defaults (MaxStartups 10:30:100 above all) are the point of this host; INFO
        # logs each login and each connection dropped past MaxStartups.
        config, line = _sshd_config(directory / BASTION, BASTION, jump["address"], authorized,
                                    log_level="INFO", extra=NO_MACHINE_RC)
        known.append(line)
        log = directory / BASTION / "sshd.log"
        argv = in_host(inits[BASTION][0], [SSHD, "-D", "-e", "-f", str(config)])
        _wait_for_sshd({BASTION: (jump["address"], supervisor.spawn(
            argv, log, pid_ns=inits[BASTION], role="sshd", name="sshd", host=BASTION,
            namespace=jump["namespace"], scenario=None), log)})
    for i, host in enumerate(record.data["hosts"]):
        hostdir = directory / "hosts" / host["name"]
        offset = (clock_offsets or {}).get(host["name"])
        extra = NO_MACHINE_RC.rstrip("\n") + (clock_setenv(offset) if offset else "") + "\n"
        host["clock_offset_s"] = offset or 0
        config, line = _sshd_config(hostdir, host["name"], host["address"], authorized,
                                    extra=extra)
        known.append(line)
        if plans[i].scenario != "dead":
            log = hostdir / "sshd.log"
            argv = in_host(inits[host["name"]][0], [SSHD, "-D", "-e", "-f", str(config)])
            pending[host["name"]] = (host["address"], supervisor.spawn(
                argv, log, pid_ns=inits[host["name"]], role="sshd", name="sshd",
                host=host["name"], namespace=namespaces[i], scenario=None), log)
    _wait_for_sshd(pending, reachable=jump is None)

    # The nested namespace of each host whose scenario runs in one: a named one is made first;
    # an unnamed one by the scenario's first process (its server, if any), the others join it.
    nested: dict[int, dict[str, Any]] = {}
    for i, plan in enumerate(plans):
        if plan.netns is not None:
            nested[i] = {"name": plan.netns["name"], "net": None, "inode": None, "main": None,
                         "procs": []}
            if plan.netns["name"] is not None:
                holder = inits[names[i]][0]
                nested[i]["inode"] = add_named(holder, [plan.netns["name"]], _sysctls(plan))[0]
                nested[i]["net"] = named_path(holder, plan.netns["name"])
    procs = [p for plan in plans for p in plan.procs]
    named = []
    for proc in sorted(procs, key=lambda p: p.role != "server"):  # servers listen first
        ns = outside if proc.host is None else namespaces[proc.host]
        where = directory if proc.host is None else directory / "hosts" / names[proc.host]
        log = where / f"{proc.scenario}-{proc.role}.log"
        argv = _traffic_argv(proc, record, ttl)
        init = inits.get(BASTION) if proc.host is None else inits[names[proc.host]]
        box = nested.get(proc.host) if proc.host is not None and proc.nested else None
        if init is not None:
            if box is not None and box["net"] is None:
                argv = in_host(init[0], in_new_netns(argv, _sysctls(plans[proc.host or 0])))
            else:
                argv = in_host(init[0], argv, box["net"] if box is not None else None)
        started = supervisor.spawn(
            argv, log, pid_ns=init, role=proc.role, name=proc.name,
            host=None if proc.host is None else names[proc.host], namespace=ns,
            scenario=proc.scenario)
        named.append((started, proc.name))
        if box is not None:
            box["procs"].append((started[0], proc))
            if box["main"] is None:
                box["main"] = (started, proc)
                box["net"] = box["net"] or f"/proc/{started[0]}/ns/net"
        if proc.role == "server":
            _wait_listening(started, _option(proc, "--address"), int(_option(proc, "--port")),
                            log)

    _wait_named(named, LISTEN_TIMEOUT)
    root_netns = os.stat("/proc/self/ns/net").st_ino
    for i, box in nested.items():
        host_netns = os.stat(f"/run/netns/{namespaces[i]}").st_ino
        (main, proc) = box["main"]
        if box["inode"] is None:
            box["inode"] = wait_new_netns([main], {root_netns, host_netns})[0]
        record.data["hosts"][i]["expected"]["netns"]["inode"] = box["inode"]
        record.data["hosts"][i]["netns"].append({
            "inode": box["inode"], "name": box["name"], "scenario": plans[i].scenario,
            "main": _process(main[0], comm_of(proc.name), proc.role),
            "processes": [_process(pid, comm_of(p.name), p.role) for pid, p in box["procs"]]})
    record.save()
    for i, host in enumerate(record.data["hosts"]):
        unnamed, named_count = (idle or {}).get(host["name"], (0, 0))
        if unnamed or named_count:
            old = {root_netns, os.stat(f"/run/netns/{namespaces[i]}").st_ino}
            host["netns"] += _add_idle(record, supervisor, seed, host, inits[host["name"]], old,
                                       unnamed, named_count)
            record.save()

    known_hosts = directory / "known_hosts"
    known_hosts.write_text("\n".join(known) + "\n")
    ssh_config = None
    if jump is not None:
        ssh_config = directory / "ssh_config"
        ssh_config.write_text(SSH_CONFIG.format(key=_ssh_config_word(key_file),
                                                known=_ssh_config_word(known_hosts)))
    _write_inventory(directory / "inventory.yml", record.data["hosts"], key_file, known_hosts,
                     jump["address"] if jump else None, ssh_config)
    record.data.update(inventory=str(directory / "inventory.yml"), known_hosts=str(known_hosts),
                       key_file=str(key_file))
    record.data["complete"] = True
    record.save()


def _sysctls(plan: HostPlan) -> list[str]:
    """Per-namespace sysctls (set to 1) the scenario needs: an overflowing listen queue is
    answered with a reset."""
    return ["net/ipv4/tcp_abort_on_overflow"] if plan.scenario == "listen_overflow" else []


# For OpenSSH (and so Ansible) behind the bastion: a ProxyJump's own ssh is given -F but not
# the -o options of the command line, so the key and known_hosts must come from a file.
SSH_CONFIG = """\
# ssh_config of a fleetrst lab: ssh -F THIS_FILE -J root@BASTION root@HOST
Host *
    User root
    IdentityFile {key}
    IdentitiesOnly yes
    UserKnownHostsFile {known}
    StrictHostKeyChecking yes
    BatchMode yes
"""


def _ssh_config_word(path: Path) -> str:
    text = str(path)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _write_inventory(path: Path, hosts: list[dict[str, Any]], key: Path, known: Path,
                     jump: str | None = None, ssh_config: Path | None = None) -> None:
    common = f"-o UserKnownHostsFile={shlex.quote(str(known))} -o StrictHostKeyChecking=yes"
    lab: dict[str, Any] = {"hosts": {h["name"]: {"ansible_host": h["address"]} for h in hosts}}
    if jump is not None:
        via = f"-o ProxyJump=root@{jump}"
        if ssh_config is not None:
            via = f"-F {shlex.quote(str(ssh_config))} {via}"
        lab = {"vars": {"ansible_ssh_common_args": f"{via} {common}"}, **lab}
    inventory = {"all": {
        "vars": {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
            # For Ansible itself; fleetrst is given the known_hosts file explicitly.
            "ansible_ssh_common_args": common,
        },
        "children": {"lab": lab},
    }}
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))


def idle_counts(hosts: int, scenarios: Sequence[str], idle_netns: int | Mapping[str, int] | None,
                idle_named: int | Mapping[str, int] | None) -> dict[str, tuple[int, int]]:
    """{host name: (unnamed, named)} idle nested namespaces. A number applies to every host
    that runs (not dead); a mapping names the hosts ("host0"), which must run."""
    counts: dict[str, list[int]] = {}
    for k, given in enumerate((idle_netns, idle_named)):
        if given is None:
            continue
        if isinstance(given, int):
            given = {f"host{i}": given for i in range(hosts) if scenarios[i] != "dead"}
        for name, n in given.items():
            i = int(name[4:]) if name.startswith("host") and name[4:].isdigit() else -1
            if not 0 <= i < hosts:
                raise LabError(f"no host {name!r} for idle namespaces (host0..host{hosts - 1})")
            if not isinstance(n, int) or not 0 <= n <= MAX_IDLE_NETNS:
                raise LabError(f"idle namespaces per host and kind: 0 to {MAX_IDLE_NETNS}, "
                               f"not {n!r}")
            if n and scenarios[i] == "dead":
                raise LabError(f"{name} is dead: it runs nothing, idle namespaces included")
            counts.setdefault(name, [0, 0])[k] = n
    return {name: (a, b) for name, (a, b) in counts.items() if a or b}


def lab_up(directory: Path, hosts: int = 4, *, seed: int | None = None,
           scenarios: Sequence[str] | None = None, ttl: float = 1800.0,
           names: Mapping[str, str] | None = None, bastion: bool = False,
           idle_netns: int | Mapping[str, int] | None = None,
           idle_named: int | Mapping[str, int] | None = None,
           clock_offsets: Mapping[str, float] | None = None) -> LabState:
    """Build a lab of `hosts` namespaces in `directory`; on any failure, remove what was built.

    `names` forces the process name of a scenario's main process ({"closed_port": "..."}).
    `bastion` puts the hosts behind a bastion namespace (sshd with OpenSSH's default limits)
    on a network the root namespace cannot reach; the inventory reaches them by ProxyJump.
    A scenario written "closed_port@netns" runs in an unnamed network namespace nested in its
    host, "linger_abort@named" in a named one (name drawn from the seed; "@named=NAME" gives
    it). `idle_netns` / `idle_named` add idle nested namespaces (unnamed, each held by a
    `sleep`; named, in the host's own /run/netns), per host: a number for every running host,
    or {"host0": 100}. `clock_offsets` ({"host1": 3600}) sets the wall clock that a host's SSH
    sessions read that many seconds off (libfaketime), as on a host whose clock is wrong.
    """
    _check_prerequisites()
    for offset in (clock_offsets or {}).values():
        clock_setenv(offset)  # checks the offset and that libfaketime is there, before building
    if ttl <= 0:
        raise LabError(f"ttl must be positive, not {ttl}")
    for scenario, name in (names or {}).items():
        if scenario not in NAMED_SCENARIOS:
            raise LabError(f"no process to name in scenario {scenario!r}; "
                           f"named ones: {', '.join(NAMED_SCENARIOS)}")
        if not comm_of(name) or "\0" in name:
            raise LabError(f"bad process name for {scenario}: {name!r}")
    pick_subnets(hosts, bastion, [])  # validates the host count before anything is created
    if scenarios is not None:
        assign_scenarios(random.Random(0), 1, scenarios)  # rejects unknown names up front
    seed = random.SystemRandom().randrange(1, 2**31) if seed is None else seed
    kinds = [parse_scenario(e)[0] for e in assign_scenarios(random.Random(seed), hosts, scenarios)]
    idle = idle_counts(hosts, kinds, idle_netns, idle_named)
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "lab.json"
    with _locked(directory / ".lab.lock"):
        if path.exists():
            raise LabError(f"a lab is already up in {directory}; take it down first "
                           f"(fleetrst lab down --dir {directory})")
        now = time.time()
        record = _Record(path, {
            "format": FORMAT, "lab_id": _new_lab_id(), "seed": seed, "created": now, "ttl": ttl,
            "deadline": now + ttl, "directory": str(directory), "subnet": None, "bridge": None,
            "bridge_address": None, "namespaces": [], "veths": [], "processes": [], "hosts": [],
            "routes": [], "bastion": None,
            "inventory": None, "known_hosts": None, "key_file": None, "complete": False,
        })
        record.save()
        supervisor = None
        try:
            # First of all, so that even a lab whose building dies halfway has a deadline.
            supervisor = _Supervisor(record, ttl)
            _build(record, hosts, seed, scenarios, ttl, supervisor, names, bastion, idle,
                   clock_offsets)
            supervisor.close()
        except BaseException:
            if supervisor is not None:
                supervisor.close()
            try:
                _teardown(directory)
            except LabError as exc:
                warnings.warn(f"cleanup after a failed lab up is incomplete: {exc}", stacklevel=2)
            raise
    return load_lab(directory)


def _lab_process(data: dict[str, Any] | None) -> LabProcess | None:
    if data is None:
        return None
    return LabProcess(data["pid"], data["ns_pid"], data["name"], data.get("role", ""))


def _lab_netns(data: dict[str, Any]) -> LabNetns:
    return LabNetns(data["inode"], data["name"], data["scenario"], _lab_process(data["main"]),
                    [p for p in map(_lab_process, data["processes"]) if p is not None])


def load_lab(directory: Path) -> LabState:
    """The lab recorded in directory/lab.json."""
    path = Path(directory) / "lab.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(f"no lab in {directory} (no lab.json)") from None
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: {exc}") from exc
    if not data.get("complete"):
        raise LabError(f"the lab in {directory} is incomplete; take it down and up again")
    hosts = [LabHost(h["name"], h["address"], h["namespace"], h["scenario"], h["expected"],
                     _lab_process(h.get("init")), [_lab_netns(n) for n in h.get("netns", [])])
             for h in data["hosts"]]
    jump = data.get("bastion")
    bastion = LabBastion(jump["name"], jump["address"], jump["namespace"], jump["inner_subnet"],
                         jump["inner_address"]) if jump else None
    return LabState(Path(data["directory"]), data["seed"], data["subnet"], data["bridge"], hosts,
                     Path(data["inventory"]), Path(data["known_hosts"]), Path(data["key_file"]),
                     bastion)


# --- lab down ---------------------------------------------------------------------------------


def _namespace_pids(ns: str) -> dict[int, Callable[[int], bool]]:
    """Processes living in network namespace `ns` (sshd sessions and the like), each with a
    check that it still does."""
    try:
        ns_inode = os.stat(f"/run/netns/{ns}").st_ino
        listed = _run("ip", "netns", "pids", ns).split()
    except (OSError, LabError):
        return {}

    def in_ns(pid: int) -> bool:
        with contextlib.suppress(OSError):
            return os.stat(f"/proc/{pid}/ns/net").st_ino == ns_inode
        return False

    return {int(pid): in_ns for pid in listed}


def _stop_all(targets: dict[int, Callable[[int], bool]]) -> list[int]:
    """Stop the processes that still pass their check, in batches that keep the pidfds few."""
    left: list[int] = []
    pids = [pid for pid in targets if pid != os.getpid()]  # the supervisor at its deadline
    for first in range(0, len(pids), 256):
        pinned = {pid: pin(pid, targets[pid]) for pid in pids[first : first + 256]}
        left += stop({pid: fd for pid, fd in pinned.items() if fd is not None})
    return left


def _unreachable_route(prefix: str) -> bool:
    """True if the root namespace's main table has this unreachable route."""
    try:
        return bool(_run("ip", "-4", "route", "show", "exact", prefix, "type", "unreachable")
                    .strip())
    except LabError:
        return True  # cannot tell: try to delete it and report what happens


def _teardown(directory: Path) -> None:
    path = directory / "lab.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: {exc}") from exc
    processes = data.get("processes", [])
    started = {p["pid"]: p["start_time"] for p in processes}

    def same(pid: int) -> bool:
        return start_time(pid) == started[pid]

    targets: dict[int, Callable[[int], bool]] = {}
    for ns in data.get("namespaces", []):
        targets.update(_namespace_pids(ns))
    # Whatever joined a host's mount namespace from outside would keep it, and the named
    # namespaces in its /run/netns, alive.
    inits: dict[int, Callable[[int], bool]] = {
        p["pid"]: same for p in processes if p["role"] == "init"}
    held, members = mount_ns_members((pid, started[pid]) for pid in inits)
    try:
        targets.update(members)
        targets.update({pid: same for pid in started})
        # The hosts' inits after the processes in their hosts, the supervisor last: it reaps
        # the others as they exit, and an init only finishes once its host's are reaped.
        supervisors: dict[int, Callable[[int], bool]] = {
            p["pid"]: same for p in processes if p["role"] == "supervisor"}
        left = [f"process {pid}" for pid in
                _stop_all({p: c for p, c in targets.items() if p not in inits | supervisors})
                + _stop_all({p: targets[p] for p in inits}) + _stop_all(supervisors)]
    finally:
        for fd in held:
            os.close(fd)
    # Veths before namespaces: deleting our end takes the pair down at once, whereas a deleted
    # namespace releases its eth0 (and our end with it) some time later, in the background.
    objects = [("link", Path("/sys/class/net"), link) for link in data.get("veths", [])]
    objects += [("netns", Path("/run/netns"), ns) for ns in data.get("namespaces", [])]
    objects += [("link", Path("/sys/class/net"), data["bridge"])] if data.get("bridge") else []
    for kind, where, name in objects:
        if (where / name).exists():
            try:
                _run("ip", kind, "delete", name)
            except LabError as exc:
                if (where / name).exists():  # else it went away by itself meanwhile
                    left.append(str(exc))
    # Last: until the hosts behind it are gone, the unreachable route keeps their block local.
    for route in data.get("routes", []):
        if _unreachable_route(route):
            try:
                _run("ip", "-4", "route", "delete", "unreachable", route)
            except LabError as exc:
                if _unreachable_route(route):
                    left.append(str(exc))
    if left:
        raise LabError(f"lab in {directory} not fully removed: {'; '.join(left)}")
    path.unlink(missing_ok=True)


def lab_down(directory: Path) -> None:
    """Stop and remove everything recorded in directory/lab.json; nothing to do if absent."""
    directory = Path(directory).resolve()
    if not (directory / "lab.json").exists():
        return
    with _locked(directory / ".lab.lock"):
        _teardown(directory)


# --- command line -----------------------------------------------------------------------------


def _scenario_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"scenarios are a comma-separated list of "
                                         f"{', '.join(SCENARIOS)}")
    for name in names:
        try:
            parse_scenario(name)
        except LabError as exc:
            raise argparse.ArgumentTypeError(
                f"{exc}; scenarios are a comma-separated list of {', '.join(SCENARIOS)}, "
                f"each optionally @netns, @named or @named=NAME") from None
    return names


def _idle_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= MAX_IDLE_NETNS:
        raise argparse.ArgumentTypeError(f"a number from 0 to {MAX_IDLE_NETNS}")
    return n


def _where(host: LabHost) -> str:
    netns = host.expected.get("netns")
    if netns is None:
        return host.scenario
    place = f"netns {netns['name']}" if netns.get("name") else "a nested netns"
    return f"{host.scenario} (in {place}, inode {netns.get('inode')})"


def _cli_up(args: argparse.Namespace) -> int:
    state = lab_up(args.dir, args.hosts, seed=args.seed, scenarios=args.scenarios, ttl=args.ttl,
                   bastion=args.bastion, idle_netns=args.idle_netns or None,
                   idle_named=args.idle_named or None)
    print(f"lab seed: {state.seed}")
    width = max(len(h.name) for h in state.hosts)
    if state.bastion is not None:
        jump = state.bastion
        print(f"{jump.name}: {jump.address} (the hosts behind it, on {jump.inner_subnet}, are "
              f"reached with ProxyJump root@{jump.address})")
    for host in state.hosts:
        idle = [n for n in host.netns if n.scenario is None]
        more = f"; {len(idle)} idle nested netns" if idle else ""
        print(f"{host.name:<{width}}  {host.address:<15}  {_where(host)}{more}")
    print(f"inventory: {state.inventory}")
    print(f"known_hosts: {state.known_hosts}")
    print(f"down after {args.ttl:.0f}s, or now: fleetrst lab down --dir {args.dir}")
    return 0


def _cli_down(args: argparse.Namespace) -> int:
    lab_down(args.dir)
    print(f"lab in {args.dir} is down")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add `lab up` and `lab down` to the CLI's subcommands."""
    lab = subparsers.add_parser("lab", help="a demo fleet of network namespaces on this machine")
    sub = lab.add_subparsers(dest="lab_command", required=True)
    up = sub.add_parser("up", help="start a lab (root)")
    up.add_argument("--hosts", type=int, default=4, help="number of hosts (default 4)")
    up.add_argument("--dir", type=Path, default=Path("fleetrst-lab"), help="lab directory")
    up.add_argument("--seed", type=int, default=None, help="reproduce a lab's scenarios")
    up.add_argument("--scenarios", type=_scenario_list, default=None,
                    help=f"comma-separated, assigned in order: {','.join(SCENARIOS)}; "
                         "SCENARIO@netns runs it in a network namespace nested in its host, "
                         "SCENARIO@named[=NAME] in a named one (ip netns add, in the host)")
    up.add_argument("--idle-netns", type=_idle_count, default=0, metavar="N",
                    help="N idle nested network namespaces on every running host, each held "
                         f"by a sleep (at most {MAX_IDLE_NETNS})")
    up.add_argument("--idle-named", type=_idle_count, default=0, metavar="N",
                    help="N idle named network namespaces in every running host's own "
                         f"/run/netns (at most {MAX_IDLE_NETNS})")
    up.add_argument("--ttl", type=float, default=1800.0,
                    help="seconds until the lab takes itself down (default 1800)")
    up.add_argument("--bastion", action="store_true",
                    help="put the hosts behind a bastion with OpenSSH's default sshd limits, "
                         "on a network this machine reaches only through it")
    up.set_defaults(func=_cli_up)
    down = sub.add_parser("down", help="stop and remove a lab")
    down.add_argument("--dir", type=Path, default=Path("fleetrst-lab"), help="lab directory")
    down.set_defaults(func=_cli_down)
