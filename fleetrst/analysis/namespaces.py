"""The network namespaces of one host (containers, pods): each captured one analyzed like a host of
its own (its own `lo`, addresses, counters and sockets), each counted one by its counters, and the
kernel's reset reasons placed in the namespace whose packets they belong to.

A namespace's folder is HOST/netns/INODE/, read by `load_host` like a host folder; HOST/netns.txt
says which namespaces there were and why some were only counted (see capture.sh), and
HOST/containers.txt, when the host has container runtimes, what they call the containers and pods.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..facts import KEY_COUNTERS, counter_deltas, parse_counters_file
from ..netns import (
    RUNTIMES_MAX,
    Netns,
    RuntimeNames,
    label,
    parse_cost,
    parse_netns,
    parse_runtimes,
    why_not,
)
from ..pcap import RstPacket
from ..trace import Trace
from .classify import JOIN_S, annotate, classify
from .hostfiles import HostFiles, captured_interfaces, load_host, read_packets, read_text
from .severity import rate_level

NS_DIR = "netns"
# An event goes to the namespace with the packet nearest to it in time, unless another
# namespace has one nearly as near (a loopback refusal follows its connect() within a
# millisecond; both are compared on the same clock, so the trace's own offset cancels out).
APART_S = 0.01
# Counters a namespace's row shows (the host's table has them all).
NS_COUNTERS = ("OutRsts", "AttemptFails", "EstabResets", "TCPAbortOnData", "TCPAbortOnClose",
               "ListenOverflows", "InSegs", "OutSegs")


@dataclass
class Namespace:
    """One namespace of the host: what netns.txt says, and its folder when it has one."""

    inode: int
    info: Netns | None
    folder: Path | None
    hf: HostFiles | None = None  # loaded for captured namespaces
    raw: list[RstPacket] = field(default_factory=list)
    pcaps: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    window: tuple[float, float] | None = None
    container_name: str | None = None  # what its runtime calls its container (containers.txt)
    pod_name: str | None = None  # and its pod: "namespace/name"

    @property
    def captured(self) -> bool:
        return self.hf is not None

    def ref(self) -> dict[str, Any]:
        """The `netns` of this namespace's findings."""
        info = self.info
        c = info.container if info else None
        return {"inode": self.inode, "name": info.name if info else None,
                "pid": info.pid if info else None, "container": c.id if c else None,
                "pod": c.pod if c else None, "container_name": self.container_name,
                "pod_name": self.pod_name, "comm": info.comm if info else None}


@dataclass
class Namespaces:
    """Every namespace a host folder has data for (none for runs made before namespaces)."""

    self_inode: int | None
    items: list[Namespace]
    select: str = "all"
    max: int = 16
    present: bool = False  # the host script listed namespaces (netns.txt was fetched)

    @property
    def captured(self) -> list[Namespace]:
        return [ns for ns in self.items if ns.captured]


def load_namespaces(directory: Path, hf: HostFiles) -> Namespaces:
    """netns.txt and the netns/INODE/ folders of a host folder; captured ones are loaded."""
    text = read_text(directory / "netns.txt")
    listed = parse_netns(text or "")
    given = hf.meta.get("namespaces")
    opts: dict[str, Any] = given if isinstance(given, dict) else {}
    self_inode = next((ns.inode for ns in listed if ns.state == "self"), None)
    by_inode = {ns.inode: ns for ns in listed if ns.inode != self_inode}
    folders = {}
    base = directory / NS_DIR
    if base.is_dir():
        for sub in base.iterdir():
            if sub.is_dir() and sub.name.isdigit() and int(sub.name) != self_inode:
                folders[int(sub.name)] = sub
    items = []
    host_caps = hf.meta.get("captures") or []
    cap = next((c.get("cap_bytes") for c in host_caps if isinstance(c, dict) and c.get("cap_bytes")), None)
    offset = (hf.meta.get("facts") or {}).get("clock_offset_s")
    names = read_runtime_names(directory)
    for inode in sorted(set(by_inode) | set(folders)):
        info = by_inode.get(inode)
        if info is None and inode in folders:
            # Not listed when the capture started: its counters still say which process it was.
            info = Netns(inode, _counters_pid(folders[inode]), None, None, None, None, None)
        container_name, pod_name = names.names(info.container if info else None)
        ns = Namespace(inode, info, folders.get(inode), container_name=container_name,
                       pod_name=pod_name)
        if ns.folder is not None and (ns.folder / "captures.txt").exists():
            ns.hf = load_host(ns.folder)
            # The host's own run settings apply inside its namespaces too.
            ns.hf.meta.setdefault("facts", {"clock_offset_s": offset})
            for c in ns.hf.meta.get("captures", []):
                if cap:
                    c.setdefault("cap_bytes", cap)
        items.append(ns)
    return Namespaces(self_inode, items, str(opts.get("select") or "all"),
                      int(opts.get("max") or 16), text is not None)


def read_runtime_names(directory: Path) -> RuntimeNames:
    """What the container runtimes called the host's containers and pods (containers.txt, raw
    as the host printed it; only so much of it is read)."""
    try:
        with (directory / "containers.txt").open(encoding="utf-8", errors="replace") as f:
            text = f.read(RUNTIMES_MAX)
    except OSError:
        return RuntimeNames()
    return parse_runtimes(text)


def _counters_pid(folder: Path) -> int | None:
    for line in (read_text(folder / "counters-start.txt") or "").split("\n")[:5]:
        if line.startswith("pid=") and line[4:].strip().isdigit():
            return int(line[4:].strip()) or None
    return None


def read_namespace_packets(nss: Namespaces, lo: float, hi: float) -> None:
    """Read every captured namespace's resets of the window (its own counters' times if it has
    them, else the host's `lo`..`hi`)."""
    for ns in nss.captured:
        assert ns.hf is not None
        if ns.hf.start is not None and ns.hf.end is not None and ns.hf.start.time and ns.hf.end.time:
            ns.window = (ns.hf.start.time, ns.hf.end.time)
        else:
            ns.window = (lo, hi)
        ns.raw, ns.pcaps, ns.problems = read_packets(ns.hf, *ns.window)


class _Times:
    """Packet times of one flow or endpoint, each with the key of the namespace it was seen in,
    sorted; for each packet, where the nearest packet of another key is on either side."""

    __slots__ = ("ts", "key", "_keys", "_next", "_prev")

    def __init__(self) -> None:
        self.ts: list[float] = []
        self.key: list[Hashable] = []
        self._keys: list[Hashable] | None = None
        self._next: list[int] = []  # index of the next packet of another key (len: none)
        self._prev: list[int] = []  # index of the previous packet of another key (-1: none)

    def __len__(self) -> int:
        return len(self.ts)

    def add(self, ts: float, key: Hashable) -> None:
        self.ts.append(ts)
        self.key.append(key)

    def sort(self) -> None:
        order = sorted(range(len(self.ts)), key=self.ts.__getitem__)
        self.ts = [self.ts[i] for i in order]
        key = self.key = [self.key[i] for i in order]
        n = len(key)
        self._next = [n] * n
        for i in range(n - 2, -1, -1):
            self._next[i] = i + 1 if key[i + 1] != key[i] else self._next[i + 1]
        self._prev = [-1] * n
        for i in range(1, n):
            self._prev[i] = i - 1 if key[i - 1] != key[i] else self._prev[i - 1]

    def keys(self) -> list[Hashable]:
        """Every key, once each."""
        if self._keys is None:
            self._keys = list(dict.fromkeys(self.key))
        return self._keys

    def near(self, t: float, before: float, after: float, apart: float,
             strict: bool = False) -> list[Hashable]:
        """The key of the packet nearest to t, among those from `before` seconds before it to
        `after` seconds after it (the latter bound open; both open when `strict`), and the key
        of another namespace's packet nearly as near (within `apart` more), if there is one: one
        key, two (a tie), or none. O(log n), however many packets there are."""
        ts, key = self.ts, self.key

        def fits(i: int) -> float | None:
            """The distance of packet i from t, if it is within the bounds."""
            if i < 0 or i >= len(ts):
                return None
            d = ts[i] - t
            if d >= 0:
                return d if d < after else None
            return -d if (-d < before if strict else -d <= before) else None

        right = bisect.bisect_left(ts, t)
        dl, dr = fits(right - 1), fits(right)
        if dl is None and dr is None:
            return []
        if dr is None or (dl is not None and dl <= dr):
            first, k = dl, key[right - 1]
        else:
            first, k = dr, key[right]
        assert first is not None
        # The nearest packet of another key on each side of t.
        others = []
        if right < len(ts):
            others.append(right if key[right] != k else self._next[right])
        if right > 0:
            others.append(right - 1 if key[right - 1] != k else self._prev[right - 1])
        for i in others:
            d = fits(i)
            if d is not None and d - first <= apart:
                return [k, key[i]]
        return [k]


def place_trace(trace: Trace, packets: dict[Hashable, list[RstPacket]],
                window: tuple[float, float] | None = None
                ) -> tuple[dict[Hashable, Trace], int, int]:
    """Split a host's trace (tracefs sees every namespace and cannot tell one 127.0.0.1 from
    another) between the namespaces whose packets each event belongs to: a reset to the one with
    the nearest packet of the same addresses and ports within JOIN_S (any such packet when the
    trace has no wall-clock sync); a connect() to the one whose refusal from its destination
    came nearest after it. When another namespace's packet is nearly as near, the event is
    given to none.

    Returns the trace of each key of `packets`, the number of reset events (within `window`,
    if given) that matched packets of several namespaces (ambiguous: given to none), and of
    those that matched none."""
    # Each list sorted by time, so that an event looks only at the packets nearest to it: a
    # flood of refusals from one port must not make every event scan every packet.
    flows: dict[tuple[str, int, str, int], _Times] = defaultdict(_Times)
    local: dict[tuple[str, int], _Times] = defaultdict(_Times)
    local_to: dict[tuple[str, int, str], _Times] = defaultdict(_Times)
    for key, pkts in packets.items():
        for p in pkts:
            flows[(p.src, p.sport, p.dst, p.dport)].add(p.ts, key)
            local[(p.src, p.sport)].add(p.ts, key)
            local_to[(p.src, p.sport, p.dst)].add(p.ts, key)
    for table in (flows, local, local_to):
        for times in table.values():
            times.sort()
    synced = trace.synced
    none = _Times()

    resets: dict[Hashable, list[Any]] = {k: [] for k in packets}
    connects: dict[Hashable, list[Any]] = {k: [] for k in packets}
    ambiguous = unplaced = 0
    for e in trace.resets:
        times = flows.get((e.src, e.sport, e.dst, e.dport), none)
        if not times and e.dport == 0:
            # Accept-queue overflow is traced on the listener, with a peer of 0.0.0.0:0.
            times = local.get((e.src, e.sport), none)
        # Without wall-clock sync, time cannot tell namespaces apart: any second one ties.
        keys = (times.near(e.ts, JOIN_S, JOIN_S, APART_S, strict=True) if synced
                else times.keys())
        counted = window is None or not synced or window[0] <= e.ts <= window[1]
        if len(keys) == 1:
            resets[keys[0]].append(e)
        elif keys:
            ambiguous += counted
        else:
            unplaced += counted
    for c in trace.connects:
        # connect() to dst:dport, answered by a reset from there shortly after.
        times = (local_to.get((c.dst, c.dport, c.src), none) if c.src
                 else local.get((c.dst, c.dport), none))
        keys = times.near(c.ts, 0.05, 1.5, APART_S) if synced else times.keys()
        if len(keys) == 1:
            connects[keys[0]].append(c)
    placed = {k: Trace(resets[k], connects[k], trace.lost, trace.synced) for k in packets}
    return placed, ambiguous, unplaced


def place(hf: HostFiles, host_raw: list[RstPacket], nss: Namespaces,
          window: tuple[float, float] | None = None) -> list[str]:
    """Give the host and each captured namespace its part of the host's trace; notes for the
    reasons that could not be placed."""
    if hf.trace is None or not nss.present:
        return []
    packets: dict[Hashable, list[RstPacket]] = {None: host_raw}
    for ns in nss.captured:
        packets[ns.inode] = ns.raw
    placed, ambiguous, unplaced = place_trace(hf.trace, packets, window)
    hf.trace = placed[None]
    hf.memo.pop("trace_index", None)
    for ns in nss.captured:
        assert ns.hf is not None
        ns.hf.trace = placed[ns.inode]
        ns.hf.trace_reasons = hf.trace_reasons
        ns.hf.memo.pop("trace_index", None)
    notes = []
    if ambiguous:
        notes.append(f"{ambiguous} kernel reset reason(s) could not be placed: the same connection "
                     "(addresses and ports) was reset in more than one network namespace at that "
                     "moment; those resets are classified by the packet rules")
    senders = [ns for ns in nss.items if not ns.captured and (_outrsts(ns) or 0) > 0]
    if unplaced and senders:
        names = ", ".join(label(ns.ref(), with_pid=False) for ns in senders[:3])
        more = f" and {len(senders) - 3} more" if len(senders) > 3 else ""
        notes.append(f"{unplaced} kernel reset reason(s) match no captured packet: namespaces that "
                     f"were only counted sent resets ({names}{more}), and their reasons cannot be "
                     "shown without their packets")
    return notes


def _counters(ns: Namespace) -> dict[str, dict[str, Any]]:
    if ns.hf is not None:
        start, end = ns.hf.start, ns.hf.end
    elif ns.folder is not None:
        s = read_text(ns.folder / "counters-start.txt")
        e = read_text(ns.folder / "counters-end.txt")
        start = parse_counters_file(s) if s else None
        end = parse_counters_file(e) if e else None
    else:
        return {}
    if start is None or end is None:
        return {}
    return counter_deltas(start, end, KEY_COUNTERS)


def _outrsts(ns: Namespace) -> int | None:
    counters = _counters(ns)
    return int(counters["OutRsts"]["delta"]) if "OutRsts" in counters else None


def _on_own(summary: str, iface: str, who: str) -> str:
    """'lo: 127.0.0.1:7211 sent ...' as 'WHO, on its own lo: 127.0.0.1:7211 sent ...'."""
    if iface and summary.startswith(f"{iface}: "):
        return f"{who}, on its own {iface}: {summary[len(iface) + 2:]}"
    return f"{who}: {summary}"


def analyze_namespaces(nss: Namespaces, seconds: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Findings of every namespace (each carrying its `netns`) and the host's `namespaces`
    summary: which there were, what each sent, which were captured and why not the others."""
    findings: list[dict[str, Any]] = []
    rows = []
    for ns in nss.items:
        ref = ns.ref()
        who = label(ref)
        counters = _counters(ns)
        sent = int(counters["OutRsts"]["delta"]) if "OutRsts" in counters else None
        state = ns.info.state if ns.info else None
        if ns.captured:
            state = "captured"
        row: dict[str, Any] = {
            **ref,
            "cmdline": ns.info.cmdline if ns.info else None,
            "cgroup": ns.info.cgroup if ns.info else None,
            "runtime": (c.runtime if (c := ns.info.container if ns.info else None) else None),
            "state": state,
            "captured": ns.captured,
            "not_captured": None if ns.captured else why_not(state, nss.select, nss.max),
            "recent_outrsts": ns.info.recent if ns.info else None,
            "counters": {k: v for k, v in counters.items() if k in NS_COUNTERS},
            "sent": sent,
            "sent_per_s": round(sent / seconds, 3) if sent is not None and seconds > 0 else None,
            "findings": 0,
            "folder": f"{NS_DIR}/{ns.inode}" if ns.folder is not None else None,
            "warnings": [],
        }
        own: list[dict[str, Any]] = []
        if ns.hf is not None:
            own, row["resets"], row["warnings"] = _analyze_captured(ns, counters, seconds)
            row["pcaps"] = [{**p, "file": f"{NS_DIR}/{ns.inode}/{p['file']}"} for p in ns.pcaps]
        elif sent:
            why = row["not_captured"] or "not captured"
            own.append({
                "severity": rate_level(sent / seconds), "kind": "counters_only", "interface": "*",
                "local": "", "peers": [], "count": sent, "per_s": round(sent / seconds, 3),
                "reason": None, "process": None,
                "summary": f"{who}: sent {sent} resets ({sent / seconds:.1f}/s, OutRsts), "
                           f"not captured: {why}",
                "next_step": _next_step(state, ns.inode),
                "evidence": {"samples": [], "counters": {"OutRsts": sent}, "basis": "counters"},
            })
        for f in own:
            f["netns"] = ref
        row["findings"] = len(own)
        findings += own
        rows.append(row)
    summary = {
        "self": nss.self_inode,
        "counted": sum(1 for r in rows if r["counters"]),
        "captured": sum(1 for r in rows if r["captured"]),
        "select": nss.select,
        "max": nss.max,
        "items": rows,
    }
    return findings, summary


def _next_step(state: str | None, inode: int) -> str:
    if state == "beyond_max":
        return (f"Capture inside it next time: fleetrst scan --namespaces {inode} (or a higher "
                "--max-namespaces).")
    if state in ("not_selected", "host_only"):
        return f"Capture inside it next time: fleetrst scan --namespaces {inode}."
    if state == "no_capture":
        return "Give fleetrst root (become) and tcpdump on this host to see who sends them."
    return "Scan again while it runs to see who sends them."


def _analyze_captured(ns: Namespace, counters: dict[str, dict[str, Any]], seconds: float
                      ) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """A captured namespace, like a host: its resets classified against its own addresses,
    sockets and counters. Findings' summaries name the namespace."""
    hf = ns.hf
    assert hf is not None
    packets = annotate(hf, ns.raw)
    own = classify(hf, packets, seconds, counters)
    who = label(ns.ref())
    for f in own:
        f["summary"] = _on_own(f["summary"], f.get("interface") or "", who)
    n_sent = sum(1 for x in packets if x.sent)
    by_iface: dict[str, dict[str, int]] = {i: {"sent": 0, "received": 0}
                                           for i in captured_interfaces(hf)}
    for x in packets:
        by_iface.setdefault(x.p.ifname or "?", {"sent": 0, "received": 0})[
            "sent" if x.sent else "received"] += 1
    problems = list(ns.problems)
    out_rsts = int(counters.get("OutRsts", {}).get("delta", 0))
    if out_rsts > n_sent * 1.5 + 3:
        problems.append(f"OutRsts rose by {out_rsts} but {n_sent} sent resets were captured in it")
    resets = {"sent": n_sent, "received": len(packets) - n_sent,
              "sent_per_s": round(n_sent / seconds, 3),
              "received_per_s": round((len(packets) - n_sent) / seconds, 3),
              "by_interface": by_iface}
    return own, resets, problems


def read_cost(directory: Path) -> dict[str, Any] | None:
    """What the run cost the host (cost.txt), or None when the host script did not say."""
    text = read_text(directory / "cost.txt")
    return parse_cost(text) if text else None
