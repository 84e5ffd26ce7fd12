"""Network namespaces of a host (containers, pods, `ip netns`): pure parsers of what the host script
prints about them, container ids from cgroup paths, and the `--namespaces` choice.

Everything here is untrusted text from the host (names, comms, command lines, cgroup paths): it
is parsed, never interpreted, and shown only through the report's and the terminal's escaping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_MAX = 16
# The host script's own ceiling (NS_CAPTURE_LIMIT in capture.sh), whatever --max-namespaces says.
CAPTURE_LIMIT = 64

# Why a namespace was not captured, by the state capture.sh gives it in netns.txt.
STATES = ("self", "captured", "capture", "beyond_max", "not_selected", "host_only", "no_capture",
          "no_nsenter", "no_interface", "slow", "gone")


@dataclass(frozen=True)
class Container:
    """What a cgroup path says about the container a process runs in."""

    runtime: str | None  # docker, containerd, cri-o, podman; None: a pod without a known runtime
    id: str | None  # the full container id (hex)
    pod: str | None  # the Kubernetes pod uid (with dashes)

    @property
    def short(self) -> str | None:
        """The id as `docker ps` shows it (12 characters)."""
        return self.id[:12] if self.id else None


@dataclass(frozen=True)
class Netns:
    """One network namespace as the host script listed it."""

    inode: int
    pid: int | None  # its main (lowest) process; None: a named namespace no process is in
    name: str | None  # its name under /run/netns
    outrsts: int | None  # Tcp OutRsts when listed (discovery lines)
    cgroup: str | None
    comm: str | None
    cmdline: str | None
    state: str | None = None  # netns.txt only: captured, beyond_max, ... (see STATES)
    recent: int | None = None  # netns.txt only: OutRsts between preflight and the capture start
    total: int | None = None  # netns.txt only: OutRsts at the capture start

    @property
    def container(self) -> Container | None:
        """The container its main process runs in, from its cgroup path."""
        return container_of(self.cgroup)


_CONTAINER = (
    ("docker", re.compile(r"(?:^|/)docker-([0-9a-f]{64})\.scope(?:/|$)")),
    ("docker", re.compile(r"(?:^|/)docker/([0-9a-f]{64})(?:/|$)")),
    ("containerd", re.compile(r"(?:^|/)cri-containerd-([0-9a-f]{64})\.scope(?:/|$)")),
    ("cri-o", re.compile(r"(?:^|/)crio-([0-9a-f]{64})\.scope(?:/|$)")),
    ("podman", re.compile(r"(?:^|/)libpod-([0-9a-f]{64})\.scope(?:/|$)")),
)
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
# kubepods-burstable-pod<uid>.slice (systemd driver, "_" for "-") or kubepods/burstable/pod<uid>.
_POD = re.compile(rf"(?:^|[/-])pod({_UID})(?:\.slice)?(?:/|$)")
# The cgroupfs driver names the container by its bare id under the pod.
_POD_CHILD = re.compile(rf"(?:^|[/-])pod{_UID}/([0-9a-f]{{64}})(?:/|$)")


def container_of(cgroup: str | None) -> Container | None:
    """The container and pod a cgroup path belongs to (Docker, containerd, CRI-O, podman,
    Kubernetes), or None for anything else."""
    if not cgroup:
        return None
    path = cgroup.strip().lower()
    runtime = cid = None
    for name, pattern in _CONTAINER:
        found = pattern.search(path)
        if found:
            runtime, cid = name, found.group(1)
            break
    pod_match = _POD.search(path)
    pod = pod_match.group(1).replace("_", "-") if pod_match else None
    if cid is None and pod is not None:
        child = _POD_CHILD.search(path)
        cid = child.group(1) if child else None
    if cid is None and pod is None:
        return None
    return Container(runtime, cid, pod)


def _field(value: str) -> str | None:
    return None if value in ("", "-") else value


def _int(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() else None


def parse_netns(text: str) -> list[Netns]:
    """Parse namespace lines: the preflight's `--- netns` section (INODE PID NAME OUTRSTS CGROUP
    COMM CMDLINE) or netns.txt (INODE PID NAME STATE RECENT TOTAL CGROUP COMM CMDLINE)."""
    out: list[Netns] = []
    seen: set[int] = set()
    # Only "\n" ends a line: a process name may hold any other control character.
    for line in text.split("\n"):
        parts = line.rstrip("\r").split("\t")
        inode = _int(parts[0])
        if inode is None or inode in seen:
            continue
        pid = _int(parts[1]) if len(parts) > 1 else None
        if len(parts) >= 9 and parts[3] in STATES:
            ns = Netns(inode, pid or None, _field(parts[2]), _int(parts[5]), _field(parts[6]),
                       _field(parts[7]), _field("\t".join(parts[8:])), parts[3], _int(parts[4]),
                       _int(parts[5]))
        elif len(parts) >= 7:
            ns = Netns(inode, pid or None, _field(parts[2]), _int(parts[3]), _field(parts[4]),
                       _field(parts[5]), _field("\t".join(parts[6:])))
        else:
            continue
        seen.add(inode)
        out.append(ns)
    return out


def preflight_netns(stdout: str) -> tuple[int | None, list[Netns]]:
    """The host's own namespace (inode) and every namespace the preflight listed."""
    self_inode = None
    lines: list[str] = []
    inside = False
    for line in stdout.split("\n"):
        if line.startswith("netns_self=") and not inside:
            self_inode = _int(line[11:].strip())
        elif line.startswith("--- "):
            inside = line[4:].strip() == "netns"
        elif inside:
            lines.append(line)
    return self_inode, parse_netns("\n".join(lines))


def select(spec: str, namespaces: Iterable[Netns], self_inode: int | None) -> tuple[str, list[str]]:
    """`--namespaces` (all, host, or a comma-separated list of inodes, names under /run/netns,
    container ids or prefixes, pod uids or prefixes) as the host script's ns= argument, and
    notes about list items that match no namespace."""
    spec = spec.strip()
    if spec in ("all", "host", "none"):
        return spec, []
    wanted: list[int] = []
    notes: list[str] = []
    listed = [ns for ns in namespaces if ns.inode != self_inode]
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        found = [ns for ns in listed if _matches(ns, item)]
        if not found:
            notes.append(f"--namespaces: {item} matches no network namespace on this host")
        wanted += [ns.inode for ns in found if ns.inode not in wanted]
    # "0" names no namespace: every one is then "not selected".
    return ",".join(map(str, wanted)) or "0", notes


def _matches(ns: Netns, item: str) -> bool:
    if item.isdigit() and int(item) == ns.inode:
        return True
    if ns.name is not None and item == ns.name:
        return True
    low = item.lower()
    c = ns.container
    if c is None or len(low) < 4 or not re.fullmatch(r"[0-9a-f-]+", low):
        return False
    return bool((c.id and c.id.startswith(low)) or (c.pod and c.pod.startswith(low)))


def label(ns: dict[str, object] | None, with_pid: bool = True) -> str:
    """How a finding names its namespace: 'container 3f2a9c1b7e40, pid 4121 (python3)'."""
    if not ns:
        return "the host's own namespace"
    parts = []
    if ns.get("pod"):
        parts.append(f"pod {str(ns['pod'])[:8]}")
    if ns.get("container"):
        parts.append(f"container {str(ns['container'])[:12]}")
    if not parts:
        parts.append(f"netns {ns['name']}" if ns.get("name") else f"netns {ns.get('inode')}")
    if with_pid and ns.get("pid"):
        comm = f" ({ns['comm']})" if ns.get("comm") else ""
        parts.append(f"pid {ns['pid']}{comm}")
    return ", ".join(parts)


def why_not(state: str | None, select_spec: str = "all", max_namespaces: int = DEFAULT_MAX) -> str | None:
    """Why a namespace was only counted, in the words of the options that decided it."""
    return {
        "beyond_max": f"beyond --max-namespaces={max_namespaces}",
        "not_selected": f"not in --namespaces {select_spec}",
        "host_only": "--namespaces host",
        "no_capture": "no captures on this host",
        "no_nsenter": "nsenter not found on the host",
        "no_interface": "no interface was up in it",
        "slow": "listing its interfaces took too long",
        "gone": "its processes were gone when the capture started",
        None: "it appeared after the capture had started",
    }.get(state)


_TIMES = re.compile(r"^(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s$")


def parse_cost(text: str) -> dict[str, float | int]:
    """cost.txt: counts, wall times of the snapshots, and CPU (shell `times`) of the script and
    of its children (the captures included), in seconds."""
    out: dict[str, float | int] = {}
    times: list[tuple[float, float]] = []
    in_times = False
    for line in text.split("\n"):
        line = line.strip()
        if line == "--- times":
            in_times = True
        elif in_times:
            m = _TIMES.match(line)
            if m:
                times.append((int(m[1]) * 60 + float(m[2]), int(m[3]) * 60 + float(m[4])))
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            try:
                out[key] = int(value) if value.isdigit() else float(value)
            except ValueError:
                continue
    if len(times) >= 2:
        out["script_user_s"], out["script_sys_s"] = times[0]
        out["children_user_s"], out["children_sys_s"] = times[1]
        out["cpu_s"] = round(sum(times[0]) + sum(times[1]), 3)
    return out
