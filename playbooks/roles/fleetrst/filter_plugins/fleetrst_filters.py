"""Filters of the fleetrst role: read what fleetrst's host script prints, and name things
exactly as `fleetrst scan` does, so that `fleetrst analyze` reads the result the same way.

Plain Python on purpose: the Ansible controller needs nothing but ansible-core, not fleetrst.
The parsing mirrors fleetrst/collect.py (parse_kv, host_dir_names, host_token, the interface
choice), fleetrst/facts.py (parse_ip_link) and fleetrst/netns.py (the network namespaces'
discovery and the --namespaces choice); tests/test_ansible_e2e.py checks they agree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

_LINK = re.compile(r"^(\d+):\s+(\S+?):\s+<([^>]*)>")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_TAG = re.compile(r"[A-Za-z0-9_.@+-]{1,15}")
_RESERVED = ("index.html", "summary.json", "junit.xml", "run.json")
NEEDED_TOOLS = ("timeout", "ip", "ss", "awk", "sha256sum")
_NOT_FETCHED = ("capture.sh", "owner.pid")
_CONTAINER = re.compile(r"(?:^|/)(?:docker-|docker/|cri-containerd-|crio-|libpod-)([0-9a-f]{64})"
                        r"(?:\.scope)?(?:/|$)")
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_POD = re.compile(rf"(?:^|[/-])pod({_UID})(?:\.slice)?(?:/|$)")
_POD_CHILD = re.compile(rf"(?:^|[/-])pod{_UID}/([0-9a-f]{{64}})(?:/|$)")
_UID_FULL = r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}"
_K8S_DOCKER = re.compile(rf"k8s_([^_]+)_([^_]+)_([^_]+)_({_UID_FULL})_[0-9]+")
_ID64 = re.compile(r"[0-9a-f]{64}")


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def fleetrst_token(name: str, address: Any, port: Any) -> str:
    """The per-host tag in remote directory names (collect.host_token), so that `fleetrst scan`
    and this playbook each find and sweep the other's leftovers."""
    return hashlib.sha256(f"{name}|{address}|{int(port)}".encode()).hexdigest()[:10]


def fleetrst_dir_names(hosts: list[str]) -> dict[str, str]:
    """A safe, unique folder name per host, as collect.host_dir_names gives them."""
    used: set[str] = {"", ".", ".."}
    names: dict[str, str] = {}
    for host in hosts:
        base = _SAFE.sub("_", host)[:80].lstrip(".") or "host"
        name, n = base, 2
        while name in used or name.lower() in _RESERVED:
            name = f"{base}-{n}"
            n += 1
        used.add(name)
        names[host] = name
    return names


def fleetrst_iso(ts: Any) -> str | None:
    """ISO-8601 UTC with milliseconds, as run.json has it; None stays None."""
    if ts is None or ts == "":
        return None
    when = dt.datetime.fromtimestamp(float(ts), dt.timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _links(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        match = _LINK.match(line.strip())
        if match is None:
            continue
        name = match[2]
        name = name.rsplit("@", 1)[0] if "@" in name[1:] else name
        out.append({"index": int(match[1]), "name": name,
                    "up": "UP" in [f for f in match[3].split(",") if f]})
    return sorted(out, key=lambda i: i["index"])


def _wanted(interfaces: Any) -> list[str] | None:
    if interfaces is None:
        return None
    if isinstance(interfaces, str):
        if interfaces.strip() in ("", "all"):
            return None
        return [i.strip() for i in interfaces.split(",") if i.strip()]
    return [str(i) for i in interfaces] or None


def _netns(stdout: str) -> tuple[int | None, list[dict[str, Any]]]:
    """The host's own namespace and the preflight's `--- netns` lines (netns.preflight_netns)."""
    self_inode = None
    found: list[dict[str, Any]] = []
    inside = False
    for line in stdout.split("\n"):
        if line.startswith("netns_self=") and not inside:
            value = line[11:].strip()
            self_inode = int(value) if value.isdigit() else None
        elif line.startswith("--- "):
            inside = line[4:].strip() == "netns"
        elif inside:
            parts = line.split("\t")
            if len(parts) >= 7 and parts[0].isdigit():
                cgroup = parts[4].lower() if parts[4] != "-" else ""
                ids = [m[1] for m in (_CONTAINER.search(cgroup), _POD_CHILD.search(cgroup)) if m]
                pod = _POD.search(cgroup)
                found.append({"inode": int(parts[0]), "name": parts[2] if parts[2] != "-" else None,
                              "container": ids[0] if ids else None,
                              "pod": pod[1].replace("_", "-") if pod else None})
    return self_inode, found


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _runtime_names(stdout: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """What the preflight's `--- runtime NAME` sections call containers and pods (as
    fleetrst/netns.py parse_runtimes reads complete listings): container id → name, pod uid →
    namespace/name, container or sandbox id → pod uid."""
    names: dict[str, str] = {}
    pods: dict[str, str] = {}
    pod_of: dict[str, str] = {}
    sections: list[tuple[str, list[str]]] = []
    for line in stdout.split("\n"):
        if line.startswith("--- "):
            sections.append((line[4:].strip(), []))
        elif sections:
            sections[-1][1].append(line)
    for header, lines in sections:
        runtime = header[8:].strip() if header.startswith("runtime ") else ""
        if runtime in ("docker", "podman", "nerdctl"):
            for row in lines:
                parts = re.split(r"\t|\\t|\s+", row.strip(), maxsplit=1)
                cid = parts[0].lower()
                if not _ID64.fullmatch(cid) or len(parts) < 2:
                    continue
                every = [n.strip() for n in parts[1].strip().strip("[]").split(",") if n.strip()]
                own = [n for n in every if "/" not in n.strip("/")] or every or [""]
                name = own[0].lstrip("/")
                k8s = _K8S_DOCKER.fullmatch(name)
                if k8s:
                    name = k8s[1]
                    pods.setdefault(k8s[4], f"{k8s[3]}/{k8s[2]}")
                    pod_of[cid] = k8s[4]
                if name:
                    names.setdefault(cid, name)
        elif runtime in ("crictl ps", "crictl pods"):
            try:
                data = _obj(json.loads("\n".join(lines)))
            except ValueError:
                data = {}
            items = data.get("containers" if runtime == "crictl ps" else "items")
            for item in map(_obj, items if isinstance(items, list) else []):
                meta, labels = _obj(item.get("metadata")), _obj(item.get("labels"))
                cid = _text(item.get("id")).lower()
                if runtime == "crictl ps":
                    uid = _text(labels.get("io.kubernetes.pod.uid")).lower()
                    pod = (_text(labels.get("io.kubernetes.pod.namespace")),
                           _text(labels.get("io.kubernetes.pod.name")))
                    sandbox = _text(item.get("podSandboxId")).lower()
                    if _ID64.fullmatch(cid) and _text(meta.get("name")):
                        names.setdefault(cid, _text(meta.get("name")))
                else:
                    uid = _text(meta.get("uid")).lower()
                    pod = (_text(meta.get("namespace")), _text(meta.get("name")))
                    sandbox = cid
                if not uid:
                    continue
                for key in {cid, sandbox}:
                    if _ID64.fullmatch(key):
                        pod_of.setdefault(key, uid)
                if all(pod):
                    # The pods' own listing is the better word on a pod's name.
                    if runtime == "crictl pods":
                        pods[uid] = "/".join(pod)
                    else:
                        pods.setdefault(uid, "/".join(pod))
    return names, pods, pod_of


def _ns_arg(spec: Any, self_inode: int | None, found: list[dict[str, Any]],
            runtimes: tuple[dict[str, str], dict[str, str], dict[str, str]] = ({}, {}, {}),
            ) -> tuple[str, list[str]]:
    """--namespaces as capture.sh's ns= argument (netns.select), and notes."""
    spec = str(spec if spec is not None else "all").strip()
    if spec in ("all", "host", "none"):
        return spec, []
    wanted: list[int] = []
    notes: list[str] = []
    names, pods, pod_of = runtimes
    for ns in found:
        cid = ns["container"] or ""
        pod = pods.get(ns["pod"] or pod_of.get(cid, ""), "")
        ns["names"] = {n for n in (names.get(cid), pod, pod.partition("/")[2]) if n}
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        low = item.lower()
        hits = [ns["inode"] for ns in found if ns["inode"] != self_inode and (
            (item.isdigit() and int(item) == ns["inode"]) or item in (ns["name"], *ns["names"])
            or (len(low) >= 4 and re.fullmatch(r"[0-9a-f-]+", low) is not None
                and any(v and v.startswith(low) for v in (ns["container"], ns["pod"]))))]
        if not hits:
            notes.append(f"--namespaces: {item} matches no network namespace on this host")
        wanted += [i for i in hits if i not in wanted]
    return ",".join(map(str, wanted)) or "0", notes


def fleetrst_preflight(stdout: str, interfaces: Any = "all", refused: Any = None,
                       namespaces: Any = "all") -> dict[str, Any]:
    """What `capture.sh preflight` said, turned into the host's facts, status and captures.

    `refused`: why sudo refused, when preflight had to run again without it (counters only).
    `namespaces`: which network namespaces to capture inside (all, host, or a list).
    """
    kv: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("--- "):
            current = sections.setdefault(line[4:].strip(), [])
        elif current is not None:
            current.append(line)
        elif "=" in line:
            key, _, value = line.partition("=")
            kv[key.strip()] = value.strip()
    text = {k: "\n".join(v) + "\n" for k, v in sections.items()}
    tools = {k[5:]: v or None for k, v in kv.items() if k.startswith("tool.")}
    free = kv.get("free_kb", "")
    facts = {
        "hostname": kv.get("hostname"),
        "kernel": kv.get("kernel"),
        "uid": kv.get("uid"),
        "tools": tools,
        "tcpdump": kv.get("tcpdump_version"),
        "free_kb": int(free) if free.isdigit() else None,
        "tracefs": kv.get("tracefs") or None,
        "tcp_send_reset": kv.get("tcp_send_reset") or None,
        # Ansible cannot time a round trip: the host clocks are taken as NTP-synced.
        "clock_offset_s": None,
        "rtt_s": None,
    }
    status, error, notes = "ok", None, []
    if refused:
        reason = _one_line(refused)
        status, error = "partial", f"sudo refused: {reason}"
        notes.append(f"sudo refused ({reason}): counters only, no captures")
    uid = kv.get("uid")
    if not tools.get("tcpdump") and status == "ok":
        status, error = "partial", "tcpdump not found on the host: counters only"
    elif uid != "0" and status == "ok":
        status, error = "partial", (
            f"not root on the host (uid {uid}) and no become: counters only, no captures")
    wanted = _wanted(interfaces)
    links = _links(text.get("ip -o link", ""))
    captures = []
    for iface in links:
        if status == "partial":
            break
        if wanted and iface["name"] not in wanted:
            continue
        if not iface["up"]:
            notes.append(f"interface {iface['name']} is down: not captured")
            continue
        tag = iface["name"] if _TAG.fullmatch(iface["name"]) else f"if{iface['index']}"
        captures.append({"interface": iface["name"], "index": iface["index"], "tag": tag})
    if wanted:
        known = {i["name"] for i in links}
        notes += [f"interface {n} does not exist on this host" for n in wanted if n not in known]
    netns_self, found = _netns(stdout)
    facts["network_namespaces"] = sum(1 for ns in found if ns["inode"] != netns_self)
    ns, ns_notes = _ns_arg(namespaces, netns_self, found, _runtime_names(stdout))
    notes += ns_notes
    return {
        "ran": kv.get("fleetrst_remote") == "1",
        "missing": [t for t in NEEDED_TOOLS if not tools.get(t)],
        "facts": facts,
        "ip_link": text.get("ip -o link", ""),
        "ip_addr": text.get("ip -o addr", ""),
        "status": status,
        "error": error,
        "notes": notes,
        "captures": captures,
        "trace": uid == "0",
        # capture.sh's ns=: no captures at all where the host has none of its own.
        "ns": ns if captures else "none",
    }


def fleetrst_capture_args(captures: list[dict[str, Any]]) -> list[str]:
    """IFNAME TAG pairs for `capture.sh run ... --`."""
    return [str(x) for c in captures for x in (c["interface"], c["tag"])]


def fleetrst_status(text: str) -> dict[str, Any]:
    """What `capture.sh run` printed: the host's window instants and the files to fetch."""
    window: dict[str, float] = {}
    files: list[dict[str, Any]] = []
    errors: list[str] = []
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key in ("armed", "started", "ended", "done") and "time=" in rest:
            try:
                window[key] = float(rest.rpartition("time=")[2])
            except ValueError:
                errors.append(f"unreadable line from the host: {line[:80]!r}")
        elif key == "file":
            parts = rest.split(" ", 2)
            if len(parts) != 3 or not parts[0].isdigit():
                errors.append(f"unreadable line from the host: {line[:80]!r}")
                continue
            size, sha, name = parts
            # Not the script nor its pid file (as fleetrst scan), nothing outside the folder.
            if name not in _NOT_FETCHED and "/" not in name and not name.startswith("."):
                files.append({"name": name, "size": int(size), "sha256": sha})
        elif line.startswith("error="):
            errors.append(line[6:])
    return {"window_host": window, "files": files, "done": "done" in window,
            "error": _one_line("; ".join(errors)) if errors else None}


class FilterModule:
    """fleetrst's filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "fleetrst_token": fleetrst_token,
            "fleetrst_dir_names": fleetrst_dir_names,
            "fleetrst_iso": fleetrst_iso,
            "fleetrst_preflight": fleetrst_preflight,
            "fleetrst_capture_args": fleetrst_capture_args,
            "fleetrst_status": fleetrst_status,
        }
