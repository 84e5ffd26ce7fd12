"""Network namespaces of a host (containers, pods, `ip netns`): pure parsers of what the host script
prints about them, container ids from cgroup paths, container and pod names from the runtimes'
own listings, and the `--namespaces` choice.

Everything here is untrusted text from the host (names, comms, command lines, cgroup paths, the
runtimes' listings): it is parsed, never interpreted, and shown only through the report's and the
terminal's escaping.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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
    # nerdctl with the systemd cgroup driver (with cgroupfs, /default/ID: too plain to tell).
    ("containerd", re.compile(r"(?:^|/)nerdctl-([0-9a-f]{64})\.scope(?:/|$)")),
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


# --- names from the container runtimes ---------------------------------------------------------

# Characters of the runtimes' listings read at most (the host keeps 256 KiB of each of five).
RUNTIMES_MAX = 4 * 1024 * 1024
# Entries read from one listing at most.
RUNTIME_ITEMS_MAX = 20000
# A name kept at most this long (Kubernetes allows 253; a runtime's own listing, no more).
NAME_MAX = 253
_HEX64 = re.compile(r"[0-9a-f]{64}")
_UID_FULL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# What the kubelet's dockershim and cri-dockerd call a pod's containers in Docker:
# k8s_CONTAINER_POD_NAMESPACE_UID_ATTEMPT (Kubernetes names have no "_").
_K8S_DOCKER = re.compile(r"k8s_([^_]+)_([^_]+)_([^_]+)_([0-9a-f-]{36})_[0-9]+")


@dataclass(frozen=True)
class RuntimeNames:
    """What the container runtimes' CLIs on a host call its containers and pods."""

    containers: Mapping[str, str] = field(default_factory=dict)  # full container id → its name
    pods: Mapping[str, str] = field(default_factory=dict)  # pod uid → "namespace/name"
    pod_of: Mapping[str, str] = field(default_factory=dict)  # container or sandbox id → pod uid

    def names(self, c: Container | None) -> tuple[str | None, str | None]:
        """The names of a container and of its pod, when a runtime told them."""
        if c is None:
            return None, None
        uid = c.pod or (self.pod_of.get(c.id) if c.id else None)
        return (self.containers.get(c.id) if c.id else None), (self.pods.get(uid) if uid else None)


def _name(value: object) -> str | None:
    """A runtime's name for something, as text, or None for anything that is not one."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:NAME_MAX] if value else None


def _id(value: object) -> str | None:
    """A full container or sandbox id (64 hex digits, as cgroup paths have them), or None."""
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value if _HEX64.fullmatch(value) else None


def _uid(value: object) -> str | None:
    """A pod uid (with dashes, as container_of gives it), or None."""
    if not isinstance(value, str):
        return None
    value = value.strip().lower().replace("_", "-")
    return value if _UID_FULL.fullmatch(value) else None


def _pod_name(namespace: object, name: object) -> str | None:
    pod, ns = _name(name), _name(namespace)
    if pod is None:
        return None
    return f"{ns}/{pod}"[:2 * NAME_MAX] if ns else pod


def runtime_sections(text: str) -> list[tuple[str, str]]:
    """The `--- runtime NAME` sections of preflight output or containers.txt: (NAME, text)."""
    out: list[tuple[str, str]] = []
    name: str | None = None
    lines: list[str] = []
    for line in text[:RUNTIMES_MAX].split("\n"):
        if line.startswith("--- "):
            if name is not None:
                out.append((name, "\n".join(lines)))
            header = line[4:].strip()
            name = header[8:].strip() if header.startswith("runtime ") else None
            lines = []
        elif name is not None:
            lines.append(line)
    if name is not None:
        out.append((name, "\n".join(lines)))
    return out


def runtime_text(stdout: str) -> str:
    """The runtimes' sections of a preflight's output, as the host keeps them in containers.txt."""
    out = []
    for name, body in runtime_sections(stdout):
        body = body.rstrip("\n")
        out.append(f"--- runtime {name}\n{body}\n")
    return "".join(out)


def parse_ps(text: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """`docker|podman|nerdctl ps --no-trunc --format '{{.ID}}\\t{{.Names}}'`: container id →
    name, and what names in Kubernetes' Docker form say (pod uid → namespace/name, container id
    → pod uid)."""
    names: dict[str, str] = {}
    pods: dict[str, str] = {}
    pod_of: dict[str, str] = {}
    for line in text.split("\n")[:RUNTIME_ITEMS_MAX]:
        # A tab, or the two characters "\t" from a CLI that took the format literally.
        parts = re.split(r"\t|\\t|\s+", line.strip(), maxsplit=1)
        cid = _id(parts[0])
        if cid is None or len(parts) < 2:
            continue
        # Docker lists every name of a container, comma-separated; links add "other/alias".
        candidates = [n.strip() for n in parts[1].strip().strip("[]").split(",") if n.strip()]
        own = [n for n in candidates if "/" not in n.strip("/")] or candidates
        name = _name(own[0].lstrip("/")) if own else None
        if name is None:
            continue
        k8s = _K8S_DOCKER.fullmatch(name)
        uid = _uid(k8s.group(4)) if k8s else None
        if k8s and uid:
            name = k8s.group(1)
            pod_name = _pod_name(k8s.group(3), k8s.group(2))
            if pod_name:
                pods.setdefault(uid, pod_name)
            pod_of[cid] = uid
        names[cid] = name
    return names, pods, pod_of


def _json_items(text: str, key: str) -> list[object]:
    """The elements of the array `key` of a JSON listing ({"KEY": [...]}, as crictl prints it);
    of one cut short (the host keeps only so much of it), those complete before the cut. Anything
    else gives nothing."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    else:
        items = data.get(key) if isinstance(data, dict) else None
        return items[:RUNTIME_ITEMS_MAX] if isinstance(items, list) else []
    start = re.match(r'\s*\{\s*"' + re.escape(key) + r'"\s*:\s*\[', text)
    if start is None:
        return []
    decoder = json.JSONDecoder()
    out: list[object] = []
    pos = start.end()
    while len(out) < RUNTIME_ITEMS_MAX:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            item, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            break
        out.append(item)
    return out


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def parse_crictl_ps(text: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """`crictl ps -o json`: container id → name (its metadata.name), pod uid → namespace/name
    (from the kubelet's labels) and container and sandbox ids → pod uid."""
    names: dict[str, str] = {}
    pods: dict[str, str] = {}
    pod_of: dict[str, str] = {}
    for item in _json_items(text, "containers"):
        c = _dict(item)
        cid = _id(c.get("id"))
        if cid is None:
            continue
        name = _name(_dict(c.get("metadata")).get("name"))
        if name is not None:
            names[cid] = name
        labels = _dict(c.get("labels"))
        uid = _uid(labels.get("io.kubernetes.pod.uid"))
        if uid is None:
            continue
        pod_of[cid] = uid
        sandbox = _id(c.get("podSandboxId"))
        if sandbox is not None:
            pod_of.setdefault(sandbox, uid)
        pod_name = _pod_name(labels.get("io.kubernetes.pod.namespace"),
                             labels.get("io.kubernetes.pod.name"))
        if pod_name is not None:
            pods.setdefault(uid, pod_name)
    return names, pods, pod_of


def parse_crictl_pods(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """`crictl pods -o json`: pod uid → namespace/name, and sandbox id → pod uid."""
    pods: dict[str, str] = {}
    pod_of: dict[str, str] = {}
    for item in _json_items(text, "items"):
        p = _dict(item)
        meta = _dict(p.get("metadata"))
        uid = _uid(meta.get("uid"))
        if uid is None:
            continue
        sandbox = _id(p.get("id"))
        if sandbox is not None:
            pod_of[sandbox] = uid
        pod_name = _pod_name(meta.get("namespace"), meta.get("name"))
        if pod_name is not None:
            pods[uid] = pod_name
    return pods, pod_of


def parse_runtimes(text: str | None) -> RuntimeNames:
    """Every runtime section of containers.txt (or of preflight output) as one map of names.
    Untrusted text: garbage, wrong types and listings cut short give what they can, never an
    error."""
    containers: dict[str, str] = {}
    pods: dict[str, str] = {}
    pod_of: dict[str, str] = {}
    for runtime, body in runtime_sections(text or ""):
        found_pods: dict[str, str] = {}
        found_of: dict[str, str] = {}
        if runtime in ("docker", "podman", "nerdctl"):
            found, found_pods, found_of = parse_ps(body)
        elif runtime == "crictl ps":
            found, found_pods, found_of = parse_crictl_ps(body)
        elif runtime == "crictl pods":
            found = {}
            found_pods, found_of = parse_crictl_pods(body)
        else:
            continue
        for cid, name in found.items():
            containers.setdefault(cid, name)
        # The pods' own listing is the better word on a pod's name than its containers' labels.
        if runtime == "crictl pods":
            pods.update(found_pods)
        else:
            for uid, name in found_pods.items():
                pods.setdefault(uid, name)
        for cid, uid in found_of.items():
            pod_of.setdefault(cid, uid)
    return RuntimeNames(containers, pods, pod_of)


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


def select(spec: str, namespaces: Iterable[Netns], self_inode: int | None,
           runtimes: RuntimeNames | None = None) -> tuple[str, list[str]]:
    """`--namespaces` (all, host, or a comma-separated list of inodes, names under /run/netns,
    container ids or prefixes, pod uids or prefixes, and the names the container runtimes give
    containers and pods: `api`, `default/web-0` or `web-0`) as the host script's ns= argument,
    and notes about list items that match no namespace."""
    spec = spec.strip()
    if spec in ("all", "host", "none"):
        return spec, []
    wanted: list[int] = []
    notes: list[str] = []
    listed = [ns for ns in namespaces if ns.inode != self_inode]
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        found = [ns for ns in listed if _matches(ns, item, runtimes or _NO_NAMES)]
        if not found:
            notes.append(f"--namespaces: {item} matches no network namespace on this host")
        wanted += [ns.inode for ns in found if ns.inode not in wanted]
    # "0" names no namespace: every one is then "not selected".
    return ",".join(map(str, wanted)) or "0", notes


_NO_NAMES = RuntimeNames()


def _matches(ns: Netns, item: str, runtimes: RuntimeNames) -> bool:
    if item.isdigit() and int(item) == ns.inode:
        return True
    if ns.name is not None and item == ns.name:
        return True
    container_name, pod_name = runtimes.names(ns.container)
    if item in (container_name, pod_name) or (pod_name and item == pod_name.partition("/")[2]):
        return True
    low = item.lower()
    c = ns.container
    if c is None or len(low) < 4 or not re.fullmatch(r"[0-9a-f-]+", low):
        return False
    return bool((c.id and c.id.startswith(low)) or (c.pod and c.pod.startswith(low)))


def label(ns: dict[str, object] | None, with_pid: bool = True) -> str:
    """How a finding names its namespace, by the runtime's names when it gave them:
    'pod default/web-0, container api (3f2a9c1b7e40), pid 4121 (python3)', else by the ids its
    cgroup names: 'container 3f2a9c1b7e40, pid 4121 (python3)'."""
    if not ns:
        return "the host's own namespace"
    parts = []
    if ns.get("pod_name"):
        parts.append(f"pod {ns['pod_name']}")
    elif ns.get("pod"):
        parts.append(f"pod {str(ns['pod'])[:8]}")
    short = str(ns["container"])[:12] if ns.get("container") else None
    if ns.get("container_name"):
        parts.append(f"container {ns['container_name']}" + (f" ({short})" if short else ""))
    elif short:
        parts.append(f"container {short}")
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
