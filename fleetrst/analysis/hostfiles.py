"""Read one host folder of a run directory: parsed inputs, and the resets of the window."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PcapError
from ..facts import (
    CounterSnapshot,
    Iface,
    SocketTable,
    parse_counters_file,
    parse_ip_addr,
    parse_ip_link,
    parse_sockets_file,
)
from ..pcap import PcapInfo, RstPacket, iter_resets
from ..trace import Trace, parse_trace

# The same reset seen by two captures (`-i any` beside `-i lo`) is one reset: copies closer than
# this in time, with equal addresses, ports, flags and sequence numbers, are dropped.
DUPLICATE_S = 0.5
ANY = "any"
CAP_SLACK = 16 + 128 + 1  # a record header and a whole snaplen: the most a capped file falls short
CLOCK_SLACK_S = 5.0  # host clock offsets below this are left alone
_REASON_FIELD = re.compile(r"field:[^;]*\breason;")


@dataclass
class HostFiles:
    """The raw inputs of one host folder, parsed."""

    directory: Path
    meta: dict[str, Any]
    start: CounterSnapshot | None
    end: CounterSnapshot | None
    sockets_start: SocketTable | None
    sockets_end: SocketTable | None
    own: set[str]  # this host's addresses, loopback included
    addresses_known: bool  # ip-addr.txt was there: an address not in `own` is someone else's
    links: dict[int, Iface]
    addrs: dict[str, list[str]]
    trace: Trace | None
    trace_reasons: bool = False  # the host's tcp_send_reset event has a reason field
    notes: list[str] = field(default_factory=list)
    # Lookups that classification repeats for every packet (listeners, the trace index).
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def ifnames(self) -> dict[int, str]:
        """Interface index to name, for captures that store indexes (`tcpdump -i any`)."""
        return {i: x.name for i, x in self.links.items()}


def read_text(path: Path) -> str | None:
    """A file's text, or None when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def load_host(directory: Path) -> HostFiles:
    """Read and parse everything in a host folder; missing files are tolerated."""
    meta: dict[str, Any] = {}
    text = read_text(directory / "host.json")
    if text:
        try:
            loaded = json.loads(text)
            meta = loaded if isinstance(loaded, dict) else {}
        except json.JSONDecodeError:
            meta = {"status": "failed", "error": "host.json is not valid JSON"}
    start_t = read_text(directory / "counters-start.txt")
    end_t = read_text(directory / "counters-end.txt")
    ss_start = read_text(directory / "sockets-start.txt")
    ss_end = read_text(directory / "sockets.txt")
    addr_text = read_text(directory / "ip-addr.txt")
    addrs = parse_ip_addr(addr_text or "")
    own = {"127.0.0.1", "::1"}
    for lst in addrs.values():
        own.update(lst)
    trace = None
    trace_text = read_text(directory / "tcp_send_reset.trace")
    format_text = read_text(directory / "tcp_send_reset.format") or ""
    if trace_text is not None:
        trace = parse_trace(trace_text, format_text)
    notes = [ln[5:] for ln in (read_text(directory / "notes.txt") or "").splitlines()
             if ln.startswith("note=")]
    if "captures" not in meta:
        # A network namespace's folder has no host.json: its captures.txt says what ran.
        meta["captures"] = captures_from_file(read_text(directory / "captures.txt") or "")
    return HostFiles(
        directory=directory,
        meta=meta,
        start=parse_counters_file(start_t) if start_t else None,
        end=parse_counters_file(end_t) if end_t else None,
        sockets_start=parse_sockets_file(ss_start) if ss_start else None,
        sockets_end=parse_sockets_file(ss_end) if ss_end else None,
        own=own,
        addresses_known=bool(addrs),
        links=parse_ip_link(read_text(directory / "ip-link.txt") or ""),
        addrs=addrs,
        trace=trace,
        trace_reasons=trace is not None and (
            _REASON_FIELD.search(format_text) is not None or any(e.reason for e in trace.resets)),
        notes=notes,
    )


def captures_from_file(text: str) -> list[dict[str, Any]]:
    """The captures a captures.txt lists (TAG PID IFNAME per line), as host.json has them."""
    out = []
    for line in text.split("\n"):
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0]:
            out.append({"interface": parts[2], "tag": parts[0]})
    return out


def captured_interfaces(hf: HostFiles) -> list[str]:
    """The interfaces the captures covered; an `any` capture covers every interface that was up."""
    names: list[str] = []
    for cap in hf.meta.get("captures", []):
        name = str(cap.get("interface"))
        covered = [i.name for i in hf.links.values() if i.up] if name == ANY and hf.links else [name]
        names += [n for n in covered if n not in names]
    return names


def cap_bytes(cap: dict[str, Any]) -> int | None:
    """The size cap a capture ran under, when the run recorded it."""
    value = cap.get("cap_bytes")
    return value if isinstance(value, int) and value > 0 else None


def _dedupe(per_file: list[tuple[bool, list[RstPacket]]]) -> list[RstPacket]:
    """Merge the captures' packets; copies in `any` captures of packets an interface capture
    already holds are dropped (the interface capture knows its interface without an index)."""
    out: list[RstPacket] = []
    seen: dict[tuple[Any, ...], list[float]] = {}
    # Interface captures first, so that they are the copies kept.
    for _, packets in sorted(per_file, key=lambda fp: fp[0]):
        for p in packets:
            key = (p.ifname, p.src, p.sport, p.dst, p.dport, p.seq, p.ack, p.flags)
            times = seen.setdefault(key, [])
            if any(abs(t - p.ts) < DUPLICATE_S for t in times):
                continue
            times.append(p.ts)
            out.append(p)
    return out


def read_packets(hf: HostFiles, lo: float, hi: float
                 ) -> tuple[list[RstPacket], list[dict[str, Any]], list[str]]:
    """The resets captured between `lo` and `hi` (epoch), what each capture held, and problems."""
    per_file: list[tuple[bool, list[RstPacket]]] = []
    pcaps: list[dict[str, Any]] = []
    problems: list[str] = []
    exit_codes = {}
    for ln in (read_text(hf.directory / "exit-codes.txt") or "").splitlines():
        pid, _, rc = ln.partition("\t")
        exit_codes[pid] = rc
    pids = {}
    for ln in (read_text(hf.directory / "captures.txt") or "").splitlines():
        parts = ln.split("\t")
        if len(parts) >= 2:
            pids[parts[0]] = parts[1]
    ifnames = hf.ifnames
    # The host's clock minus the orchestrator's, as measured at connect time.
    offset = (hf.meta.get("facts") or {}).get("clock_offset_s")
    shift = float(offset) if isinstance(offset, (int, float)) and abs(offset) > CLOCK_SLACK_S else 0.0
    for cap in hf.meta.get("captures", []):
        tag, ifname = str(cap.get("tag")), str(cap.get("interface"))
        path = hf.directory / f"rst-{tag}.pcap"
        if not path.exists():
            continue
        info = PcapInfo()
        packets: list[RstPacket] = []
        elsewhere: list[RstPacket] = []
        try:
            for p in iter_resets(path, ifnames=ifnames, default_ifname=ifname, info=info):
                if lo <= p.ts <= hi:
                    packets.append(p)
                elif shift and lo <= p.ts + shift <= hi:
                    elsewhere.append(p)
        except PcapError as e:
            problems.append(f"{ifname}: {e}")
        if len(elsewhere) > len(packets):
            # The capture's timestamps are on the orchestrator's time, not on the clock the host
            # script read (a kernel and a C library that disagree, e.g. under libfaketime).
            packets = [dataclasses.replace(p, ts=p.ts + shift) for p in elsewhere]
            problems.append(f"{ifname}: capture timestamps are {shift:+.0f} s off this host's "
                            "clock (they follow real time); aligned to the host's window")
        if ifname == ANY and any(p.ifindex is not None and p.ifindex not in ifnames for p in packets):
            problems.append(f"{ifname}: some packets name interface indexes that ip-link.txt "
                            "does not list; they are shown as 'any'")
        per_file.append((ifname == ANY, packets))
        rc = exit_codes.get(pids.get(tag, ""), "")
        # 153 = 128 + SIGXFSZ: the file hit the size cap. A tcpdump that inherited SIGXFSZ
        # ignored gets EFBIG instead and runs on, so a file within one record of the cap counts.
        limit = cap_bytes(cap)
        capped = rc == "153" or (limit is not None and path.stat().st_size > limit - CAP_SLACK)
        if rc == "97":
            # capture.sh's check inside a namespace: it was not the namespace meant any more.
            problems.append(f"{ifname}: not captured: the namespace's process was gone (or its "
                            "PID reused) when the capture started")
        if capped:
            problems.append(f"{ifname}: capture hit the size cap; later resets were not recorded")
        if info.truncated and not capped:
            problems.append(f"{ifname}: last packet of the capture was cut short ({info.error})")
        pcaps.append({"interface": ifname, "file": path.name, "packets": len(packets),
                      "bytes": path.stat().st_size, "truncated": bool(info.truncated or capped),
                      "capped": capped})
    packets = _dedupe(per_file) if len(per_file) > 1 else [p for _, ps in per_file for p in ps]
    packets.sort(key=lambda p: p.ts)
    return packets, pcaps, problems
