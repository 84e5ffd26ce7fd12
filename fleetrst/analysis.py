"""Turn one host's raw run files into rates, findings and a verdict, and a run into a summary."""

from __future__ import annotations

import ipaddress
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PcapError
from .facts import (
    KEY_COUNTERS,
    CounterSnapshot,
    SocketTable,
    counter_deltas,
    parse_counters_file,
    parse_ip_addr,
    parse_ip_link,
    parse_sockets_file,
)
from .pcap import PcapInfo, RstPacket, format_tcpdump_line, iter_resets
from .trace import ConnectEvent, ResetEvent, Trace, parse_trace

ACK = 0x10
SEVERITIES = ("info", "warning", "critical")
# The common "resets sent" alarm: a 10-second average above 5/s (Netdata-style).
ALARM_SENT_PER_S = 5.0
ALARM_FAILED_PER_S = 5.0
SCAN_MIN_PORTS = 8
# Reasons the kernel gives for resets sent at close()/abort time, in the owner's context.
ACTIVE_REASONS = {
    "TCP_ABORT_ON_DATA",
    "TCP_ABORT_ON_CLOSE",
    "TCP_ABORT_ON_LINGER",
    "TCP_ABORT_ON_MEMORY",
    "TCP_STATE",
    "TCP_KEEPALIVE_TIMEOUT",
    "TCP_DISCONNECT_WITH_DATA",
}
ABORT_COUNTERS = (
    "TCPAbortOnData",
    "TCPAbortOnClose",
    "TCPAbortOnMemory",
    "TCPAbortOnTimeout",
    "TCPAbortOnLinger",
    "TCPAbortFailed",
)


def severity_rank(s: str | None) -> int:
    """info < warning < critical; anything else ranks below info."""
    return SEVERITIES.index(s) + 1 if s in SEVERITIES else 0


def _rate_level(per_s: float) -> str:
    if per_s >= 50:
        return "critical"
    if per_s >= ALARM_SENT_PER_S:
        return "warning"
    return "info"


def _max_sev(*levels: str) -> str:
    return max(levels, key=severity_rank)


def endpoint(addr: str, port: int | str) -> str:
    """ADDR:PORT, IPv6 in brackets."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


@dataclass
class Packet:
    """A reset seen in the window, with what analysis learned about it."""

    p: RstPacket
    sent: bool
    cls: str  # refusal, abort, stray
    reason: str | None = None
    trace_comm: str | None = None
    trace_pid: int | None = None


@dataclass
class HostFiles:
    """The raw inputs of one host folder, parsed."""

    directory: Path
    meta: dict[str, Any]
    start: CounterSnapshot | None
    end: CounterSnapshot | None
    sockets_start: SocketTable | None
    sockets_end: SocketTable | None
    own: set[str]
    ifnames: dict[int, str]
    trace: Trace | None
    notes: list[str] = field(default_factory=list)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def load_host(directory: Path) -> HostFiles:
    """Read and parse everything in a host folder; missing files are tolerated."""
    meta: dict[str, Any] = {}
    text = _read(directory / "host.json")
    if text:
        try:
            meta = json.loads(text)
        except json.JSONDecodeError:
            meta = {"status": "failed", "error": "host.json is not valid JSON"}
    start_t = _read(directory / "counters-start.txt")
    end_t = _read(directory / "counters-end.txt")
    ss_start = _read(directory / "sockets-start.txt")
    ss_end = _read(directory / "sockets.txt")
    addrs = parse_ip_addr(_read(directory / "ip-addr.txt") or "")
    own = {"127.0.0.1", "::1"}
    for lst in addrs.values():
        own.update(lst)
    links = parse_ip_link(_read(directory / "ip-link.txt") or "")
    trace = None
    trace_text = _read(directory / "tcp_send_reset.trace")
    if trace_text is not None:
        trace = parse_trace(trace_text, _read(directory / "tcp_send_reset.format") or "")
    notes = [ln[5:] for ln in (_read(directory / "notes.txt") or "").splitlines() if ln.startswith("note=")]
    return HostFiles(
        directory=directory,
        meta=meta,
        start=parse_counters_file(start_t) if start_t else None,
        end=parse_counters_file(end_t) if end_t else None,
        sockets_start=parse_sockets_file(ss_start) if ss_start else None,
        sockets_end=parse_sockets_file(ss_end) if ss_end else None,
        own=own,
        ifnames={i: x.name for i, x in links.items()},
        trace=trace,
        notes=notes,
    )


def _is_own(addr: str, own: set[str]) -> bool:
    if addr in own:
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def _packet_class(p: RstPacket) -> str:
    if not p.flags & ACK:
        return "stray"
    if p.seq == 0 and p.window == 0 and p.options_len == 0:
        return "refusal"
    return "abort"


def _refine(cls: str, reason: str | None) -> str:
    if reason == "NO_SOCKET":
        return "refusal" if cls == "refusal" else "stray"
    if reason == "TCP_TIMEWAIT_SOCKET":
        return "stray"
    if reason in ACTIVE_REASONS:
        return "abort"
    return cls


class _TraceIndex:
    """Join trace events to packets by addresses, ports and time (tracefs sees every namespace)."""

    def __init__(self, trace: Trace | None) -> None:
        self.by_flow: dict[tuple[str, int, str, int], list[ResetEvent]] = defaultdict(list)
        self.by_local: dict[tuple[str, int], list[ResetEvent]] = defaultdict(list)
        self.connects: dict[tuple[str, int], list[ConnectEvent]] = defaultdict(list)
        if trace is None:
            return
        for e in trace.resets:
            self.by_flow[(e.src, e.sport, e.dst, e.dport)].append(e)
            self.by_local[(e.src, e.sport)].append(e)
        for c in trace.connects:
            self.connects[(c.dst, c.dport)].append(c)

    def reset_for(self, p: RstPacket) -> ResetEvent | None:
        cands = self.by_flow.get((p.src, p.sport, p.dst, p.dport))
        if not cands:
            # Accept-queue overflow may be traced with a peer of 0.0.0.0:0.
            cands = [e for e in self.by_local.get((p.src, p.sport), []) if e.dport == 0]
        best = min(cands, key=lambda e: abs(e.ts - p.ts), default=None) if cands else None
        return best if best is not None and abs(best.ts - p.ts) < 2.0 else None

    def connector_for(self, p: RstPacket) -> ConnectEvent | None:
        """The process whose connect() this refusal answered (SYN-SENT just before)."""
        best = None
        for c in self.connects.get((p.src, p.sport), []):
            if c.ts <= p.ts + 0.05 and p.ts - c.ts < 1.5 and (best is None or c.ts > best.ts):
                best = c
        return best


def _read_packets(hf: HostFiles, lo: float, hi: float) -> tuple[list[RstPacket], list[dict[str, Any]], list[str]]:
    packets: list[RstPacket] = []
    pcaps: list[dict[str, Any]] = []
    problems: list[str] = []
    exit_codes = {}
    for ln in (_read(hf.directory / "exit-codes.txt") or "").splitlines():
        pid, _, rc = ln.partition("\t")
        exit_codes[pid] = rc
    pids = {}
    for ln in (_read(hf.directory / "captures.txt") or "").splitlines():
        parts = ln.split("\t")
        if len(parts) >= 2:
            pids[parts[0]] = parts[1]
    for cap in hf.meta.get("captures", []):
        tag, ifname = str(cap.get("tag")), str(cap.get("interface"))
        path = hf.directory / f"rst-{tag}.pcap"
        if not path.exists():
            continue
        info = PcapInfo(path=str(path), format="", linktypes=[], packets=0, resets=0, non_tcp=0,
                        truncated=False, error=None, ts_precision="")
        n = 0
        try:
            for p in iter_resets(path, ifnames=hf.ifnames, default_ifname=ifname, info=info):
                if lo <= p.ts <= hi:
                    packets.append(p)
                    n += 1
        except PcapError as e:
            problems.append(f"{ifname}: {e}")
        rc = exit_codes.get(pids.get(tag, ""), "")
        # 153 = 128 + SIGXFSZ: the file hit the size cap.
        capped = rc == "153"
        if capped:
            problems.append(f"{ifname}: capture hit the size cap; later resets were not recorded")
        if info.truncated and not capped:
            problems.append(f"{ifname}: last packet of the capture was cut short ({info.error})")
        pcaps.append({"interface": ifname, "file": path.name, "packets": n,
                      "bytes": path.stat().st_size, "truncated": bool(info.truncated or capped)})
    packets.sort(key=lambda p: p.ts)
    return packets, pcaps, problems


def _process(name: str | None, pid: int | None) -> dict[str, Any] | None:
    return {"pid": pid, "name": name} if name else None


def _listener(hf: HostFiles, addr: str, port: int) -> tuple[Any, dict[str, Any] | None]:
    for table in (hf.sockets_end, hf.sockets_start):
        if table is None:
            continue
        sock = table.listener_for(port, addr)
        if sock is not None:
            owners = table.owners_of(sock.local_addr, sock.local_port)
            if owners:
                return sock, _process(owners[0].comm, owners[0].pid)
            if sock.processes:
                return sock, _process(sock.processes[0].name, sock.processes[0].pid)
            return sock, None
    return None, None


def _counter_evidence(counters: dict[str, dict[str, Any]], names: Iterable[str]) -> dict[str, int]:
    return {n: int(counters[n]["delta"]) for n in names if n in counters and counters[n]["delta"]}


def _finding(kind: str, sev: str, iface: str, local: str, peers: list[str], pk: list[Packet],
             seconds: float, summary: str, next_step: str | None, process: dict[str, Any] | None,
             counters: dict[str, int]) -> dict[str, Any]:
    reasons = Counter(x.reason for x in pk if x.reason)
    return {
        "severity": sev,
        "kind": kind,
        "interface": iface,
        "local": local,
        "peers": peers[:20],
        "count": len(pk),
        "per_s": round(len(pk) / seconds, 3) if seconds > 0 else float(len(pk)),
        "reason": reasons.most_common(1)[0][0] if reasons else None,
        "reasons": dict(reasons),
        "process": process,
        "summary": summary,
        "next_step": next_step,
        "evidence": {"samples": [format_tcpdump_line(x.p) for x in pk[:5]], "counters": counters},
    }


def _fmt_rate(n: int, seconds: float, noun: str = "resets") -> str:
    """'20 resets in 10 s (2.0/s)'."""
    return f"{n} {noun} in {seconds:.0f} s ({n / seconds:.1f}/s)" if seconds > 0 else f"{n} {noun}"


def _proc_text(proc: dict[str, Any] | None) -> str:
    if not proc:
        return ""
    return f"{proc['name']} (pid {proc['pid']})" if proc.get("pid") else str(proc["name"])


def classify(hf: HostFiles, pk: list[Packet], seconds: float,
             counters: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Group the window's resets into findings, most important first."""
    findings: list[dict[str, Any]] = []
    tix = _TraceIndex(hf.trace)
    sent = [x for x in pk if x.sent]
    received = [x for x in pk if not x.sent]
    overflowing = counters.get("ListenOverflows", {}).get("delta", 0) > 0

    # Scans first: one peer refused on many ports.
    refusals = [x for x in sent if x.cls == "refusal"]
    by_peer: dict[tuple[str, str], list[Packet]] = defaultdict(list)
    for x in refusals:
        by_peer[(x.p.ifname or "?", x.p.dst)].append(x)
    scanned: set[int] = set()
    for (iface, peer), group in by_peer.items():
        ports = {x.p.sport for x in group}
        if len(ports) >= SCAN_MIN_PORTS and not _is_local_peer(iface, peer, hf.own):
            scanned.update(id(x) for x in group)
            local_addr = Counter(x.p.src for x in group).most_common(1)[0][0]
            n = len(group)
            findings.append(_finding(
                "scan", _max_sev("warning", _rate_level(n / seconds)), iface, endpoint(local_addr, "*"),
                [peer], group, seconds,
                f"{iface}: {peer} probed {len(ports)} closed ports of {local_addr}: "
                f"{_fmt_rate(n, seconds, 'refusals')} — a port scan",
                f"Find out who runs {peer} and whether a scan is expected; block it if not.",
                None, _counter_evidence(counters, ("OutRsts",)),
            ))

    # Refusals by local endpoint.
    groups: dict[tuple[str, str, int], list[Packet]] = defaultdict(list)
    for x in refusals:
        if id(x) not in scanned:
            groups[(x.p.ifname or "?", x.p.src, x.p.sport)].append(x)
    for (iface, addr, port), group in groups.items():
        n = len(group)
        peers = [p for p, _ in Counter(x.p.dst for x in group).most_common()]
        local = endpoint(addr, port)
        sock, lproc = _listener(hf, addr, port)
        nothing = f"nothing listens on {port}" if sock is None else (
            f"{_proc_text(lproc) or 'a process'} listens on {port} now (it was missing during the window)"
        )
        local_client = iface == "lo" or all(_is_own(p, hf.own) for p in peers)
        if local_client:
            callers: Counter[str] = Counter()
            pids: dict[str, int] = {}
            for x in group:
                c = tix.connector_for(x.p)
                if c is not None:
                    callers[c.comm] += 1
                    pids[c.comm] = c.pid
            caller = callers.most_common(1)[0][0] if callers else None
            proc = _process(caller, pids.get(caller)) if caller else None
            who = f"; the caller is {_proc_text(proc)}" if proc else ""
            sev = _max_sev("warning" if n >= 3 else "info", _rate_level(n / seconds))
            findings.append(_finding(
                "local_dead_service", sev, iface, local, peers, group, seconds,
                f"{iface}: {local} sent {_fmt_rate(n, seconds)} to local ephemeral ports — "
                f"{nothing}{who}",
                (f"Nothing listens on {local} but {_proc_text(proc)} connects to it "
                 f"{n / seconds:.1f} times a second: start the service that should listen there, "
                 f"or stop {proc['name']}." if proc else
                 f"Nothing listens on {local} but a local process keeps connecting to it: start the "
                 f"service that should listen there, or find the caller with `ss -tanp dst {local}`."),
                proc, _counter_evidence(counters, ("OutRsts", "AttemptFails")),
            ))
        else:
            sev = _max_sev("info", _rate_level(n / seconds))
            findings.append(_finding(
                "refused", sev, iface, local, peers, group, seconds,
                f"{iface}: {local} refused {_fmt_rate(n, seconds, 'connections')} from "
                f"{', '.join(peers[:3])}{' and others' if len(peers) > 3 else ''} — {nothing}",
                f"{peers[0]} expects a service on port {port}: start it, or fix the client's target.",
                None, _counter_evidence(counters, ("OutRsts",)),
            ))

    # Aborts and strays, by the side that holds the stable (service) port.
    others: dict[tuple[str, str, str, int], list[Packet]] = defaultdict(list)
    for x in sent:
        if x.cls == "refusal":
            continue
        addr, port = x.p.src, x.p.sport
        sock, _ = _listener(hf, addr, port)
        if sock is None and x.p.dport < x.p.sport:
            # The client side aborted: key by the service it talked to.
            addr, port = x.p.dst, x.p.dport
        kind = x.cls
        if overflowing and sock is not None and x.cls == "stray":
            kind = "listen_overflow"
        others[(kind, x.p.ifname or "?", addr, port)].append(x)
    for (kind, iface, addr, port), group in others.items():
        n = len(group)
        local = endpoint(addr, port)
        peers = [p for p, _ in Counter(x.p.dst if x.p.src == addr else x.p.src for x in group).most_common()]
        sock, lproc = _listener(hf, addr, port)
        proc = lproc
        if proc is None:
            owners = Counter((x.trace_comm, x.trace_pid) for x in group if x.reason in ACTIVE_REASONS and x.trace_comm)
            if owners:
                (comm, pid), _ = owners.most_common(1)[0]
                proc = _process(comm, pid)
        who = f" ({proc['name']}, pid {proc['pid']})" if proc and proc.get("pid") else (
            f" ({proc['name']})" if proc else "")
        if kind == "abort":
            moved = _counter_evidence(counters, ABORT_COUNTERS)
            why = ", ".join(f"{k} +{v}" for k, v in moved.items()) or "no abort counter moved"
            reason = Counter(x.reason for x in group if x.reason).most_common(1)
            rtxt = f"; kernel reason {reason[0][0]}" if reason else ""
            findings.append(_finding(
                "abort", _max_sev("warning" if n >= 3 else "info", _rate_level(n / seconds)), iface,
                local, peers, group, seconds,
                f"{iface}: {local}{who} aborted {_fmt_rate(n, seconds, 'established connections')}{rtxt}; {why}",
                "The application closes connections abortively (SO_LINGER 0, or close with unread "
                "data): check its logs and connection handling around these times.",
                proc, _counter_evidence(counters, ABORT_COUNTERS + ("EstabResets",)),
            ))
        elif kind == "listen_overflow":
            ev = _counter_evidence(counters, ("ListenOverflows", "ListenDrops"))
            findings.append(_finding(
                "listen_overflow", _max_sev("warning", _rate_level(n / seconds)), iface, local, peers,
                group, seconds,
                f"{iface}: the accept queue of {local}{who} overflowed: {_fmt_rate(n, seconds, 'connections')} "
                f"reset (ListenOverflows +{ev.get('ListenOverflows', 0)}, tcp_abort_on_overflow=1)",
                "The listener accepts too slowly: raise its backlog (and net.core.somaxconn), or find "
                "why it stalls.",
                proc, ev,
            ))
        else:
            findings.append(_finding(
                "stray", _max_sev("info", _rate_level(n / seconds)), iface, local, peers, group, seconds,
                f"{iface}: {local}{who} sent {_fmt_rate(n, seconds)} without ACK for connections "
                "it no longer knows (restart, half-open or late segments)",
                "Usually harmless after a restart; if it persists, look for peers reusing stale connections.",
                proc, _counter_evidence(counters, ("OutRsts",)),
            ))

    # Resets this host received, grouped by the peer that sent them.
    recv: dict[tuple[str, str, str], list[Packet]] = defaultdict(list)
    for x in received:
        recv[("received_" + x.cls.replace("refusal", "refused"), x.p.ifname or "?", x.p.src)].append(x)
    for (kind, iface, addr), group in recv.items():
        n = len(group)
        rports = sorted({x.p.sport for x in group})
        remote = endpoint(addr, rports[0]) if len(rports) == 1 else endpoint(addr, "*")
        on = "" if len(rports) == 1 else f" on {len(rports)} ports ({', '.join(map(str, rports[:5]))}" + (
            ", ...)" if len(rports) > 5 else ")")
        local_addrs = [p for p, _ in Counter(x.p.dst for x in group).most_common()]
        what = {"received_refused": "refused", "received_abort": "aborted", "received_stray": "reset"}[kind]
        findings.append(_finding(
            kind, _rate_level(n / seconds), iface, local_addrs[0] if local_addrs else "", [remote], group,
            seconds, f"{iface}: {remote} {what} {_fmt_rate(n, seconds, 'of this host' + chr(39) + 's connections')}{on}",
            f"Look at {addr}: its side explains why.", None,
            _counter_evidence(counters, ("AttemptFails", "EstabResets")),
        ))

    # Worst first; at equal severity what this host sends comes before what it received.
    findings.sort(key=lambda f: (-severity_rank(f["severity"]), f["kind"].startswith("received_"), -f["count"]))
    return findings


def _is_local_peer(iface: str, peer: str, own: set[str]) -> bool:
    return iface == "lo" or _is_own(peer, own)


def analyze_host(directory: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Analyze one host folder into its summary entry (see summary.schema.json)."""
    hf = load_host(directory)
    meta = hf.meta
    name = meta.get("name", directory.name)
    status = meta.get("status", "failed")
    base: dict[str, Any] = {
        "name": name,
        "address": meta.get("address", ""),
        "status": status,
        "error": meta.get("error"),
        "warnings": list(meta.get("notes", [])) + hf.notes,
        "report": f"{directory.name}/report.html",
        "findings": [],
    }
    if status == "failed" or hf.start is None or hf.end is None:
        if status != "failed":
            base["status"] = "failed"
            base["error"] = base["error"] or "no counters were collected"
        base["verdict"] = {"severity": "failed", "text": f"failed: {base['error']}"}
        return base

    seconds = float((hf.end.time or 0) - (hf.start.time or 0)) if hf.start.time and hf.end.time else 0.0
    if seconds <= 0:
        seconds = float(run.get("window", {}).get("seconds") or 1.0)
    lo, hi = (hf.start.time or 0.0) - 0.02, (hf.end.time or 0.0) + 0.02
    counters = counter_deltas(hf.start, hf.end, KEY_COUNTERS)
    raw, pcaps, problems = _read_packets(hf, lo, hi)
    tix = _TraceIndex(hf.trace)
    packets = []
    for p in raw:
        sent = _is_own(p.src, hf.own)
        cls = _packet_class(p)
        ev = tix.reset_for(p) if sent else None
        x = Packet(p, sent, cls)
        if ev is not None:
            x.reason, x.trace_comm, x.trace_pid = ev.reason, ev.comm, ev.pid
            x.cls = _refine(cls, ev.reason)
        packets.append(x)
    findings = classify(hf, packets, seconds, counters)

    n_sent = sum(1 for x in packets if x.sent)
    n_recv = len(packets) - n_sent
    out_rsts = int(counters.get("OutRsts", {}).get("delta", 0))
    captured_ifaces = [c["interface"] for c in meta.get("captures", [])]
    if not captured_ifaces and out_rsts > 0:
        findings.append({
            "severity": _rate_level(out_rsts / seconds), "kind": "counters_only", "interface": "*",
            "local": "", "peers": [], "count": out_rsts, "per_s": round(out_rsts / seconds, 3),
            "reason": None, "process": None,
            "summary": f"OutRsts rose by {out_rsts} ({out_rsts / seconds:.1f}/s) but nothing was captured "
                       f"on this host ({meta.get('error') or 'no capture'})",
            "next_step": "Give fleetrst root (become) and tcpdump on this host to see who sends them.",
            "evidence": {"samples": [], "counters": {"OutRsts": out_rsts}},
        })
    elif captured_ifaces and out_rsts > n_sent * 1.5 + 3:
        problems.append(
            f"OutRsts rose by {out_rsts} but {n_sent} sent resets were captured: the rest left through "
            "interfaces or network namespaces that were not captured"
        )

    by_iface: dict[str, dict[str, int]] = {i: {"sent": 0, "received": 0} for i in captured_ifaces}
    ports: dict[str, Counter[str]] = defaultdict(Counter)
    peers: dict[str, Counter[str]] = defaultdict(Counter)
    buckets = max(1, round(seconds))
    series: dict[str, list[int]] = {}
    t0 = hf.start.time or 0.0
    for x in packets:
        d = "sent" if x.sent else "received"
        iface = x.p.ifname or "?"
        by_iface.setdefault(iface, {"sent": 0, "received": 0})[d] += 1
        local = endpoint(x.p.src, x.p.sport) if x.sent else endpoint(x.p.dst, x.p.dport)
        peer = x.p.dst if x.sent else x.p.src
        ports[local][d] += 1
        peers[peer][d] += 1
        label = f"{iface} {d}"
        b = min(buckets - 1, max(0, int(x.p.ts - t0)))
        series.setdefault(label, [0] * buckets)[b] += 1
    top_ports = sorted(ports.items(), key=lambda kv: -(kv[1]["sent"] + kv[1]["received"]))[:10]
    top_peers = sorted(peers.items(), key=lambda kv: -(kv[1]["sent"] + kv[1]["received"]))[:10]
    sent_series = [sum(v[i] for k, v in series.items() if k.endswith(" sent")) for i in range(buckets)]
    worst10 = max((sum(sent_series[i:i + 10]) / min(10, buckets) for i in range(max(1, buckets - 9))), default=0.0)
    sent_avg = max(out_rsts / seconds, worst10 if buckets >= 10 else n_sent / seconds)
    failed = counters.get("AttemptFails", {}).get("per_s") or 0.0
    alarms = [
        {"name": "resets sent, 10 s average (Netdata 10s_ipv4_tcp_resets_sent style)",
         "value": round(sent_avg, 2), "threshold": ALARM_SENT_PER_S, "unit": "/s",
         "firing": sent_avg > ALARM_SENT_PER_S,
         "text": f"a 10 s resets-sent alarm at {ALARM_SENT_PER_S:g}/s would be "
                 f"{'firing' if sent_avg > ALARM_SENT_PER_S else 'quiet'}: {sent_avg:.1f}/s"},
        {"name": "failed connection attempts (Tcp AttemptFails; 'resets received' alarms)",
         "value": round(failed, 2), "threshold": ALARM_FAILED_PER_S, "unit": "/s",
         "firing": failed > ALARM_FAILED_PER_S,
         "text": f"a failed-connections alarm at {ALARM_FAILED_PER_S:g}/s would be "
                 f"{'firing' if failed > ALARM_FAILED_PER_S else 'quiet'}: {failed:.1f}/s"},
    ]
    facts = dict(meta.get("facts", {}))
    links = parse_ip_link(_read(directory / "ip-link.txt") or "")
    addrs = parse_ip_addr(_read(directory / "ip-addr.txt") or "")
    captured = {c["interface"] for c in meta.get("captures", [])}
    facts["interfaces"] = [
        {"name": i.name, "index": idx, "up": i.up, "captured": i.name in captured,
         "addresses": addrs.get(i.name, []),
         "skip_reason": None if i.name in captured else ("down" if not i.up else "not selected")}
        for idx, i in sorted(links.items())
    ]
    missing = []
    if hf.trace is None:
        missing.append("no kernel reset reasons (tcp:tcp_send_reset tracing unavailable): "
                       "classification used the packet rules")
    elif hf.trace.lost:
        missing.append(f"the trace buffer overwrote {hf.trace.lost} events: some reasons are unknown")
    facts["missing"] = missing + [p for p in problems]
    facts["classification"] = "kernel reasons + packet rules" if hf.trace else "packet rules"
    host = dict(base)
    host.update({
        "window": {"start": _iso(hf.start.time), "end": _iso(hf.end.time), "seconds": round(seconds, 3)},
        "facts": facts,
        "counters": counters,
        "alarms": alarms,
        "resets": {"sent": n_sent, "received": n_recv, "sent_per_s": round(n_sent / seconds, 3),
                   "received_per_s": round(n_recv / seconds, 3), "by_interface": by_iface},
        "top_ports": [{"local": k, "sent": v["sent"], "received": v["received"]} for k, v in top_ports],
        "top_peers": [{"peer": k, "sent": v["sent"], "received": v["received"]} for k, v in top_peers],
        "timeline": {"bucket_s": 1.0, "start": _iso(t0),
                     "series": [{"label": k, "values": v} for k, v in sorted(series.items())]},
        "findings": findings,
        "samples": [format_tcpdump_line(x.p) for x in packets[:20]],
        "pcaps": pcaps,
    })
    host["warnings"] = host["warnings"] + problems
    host["verdict"] = verdict(host)
    return host


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from .collect import iso
    return iso(ts)


def verdict(host: dict[str, Any]) -> dict[str, str]:
    """One sentence and a severity for the top of the host page."""
    if host.get("status") == "failed":
        return {"severity": "failed", "text": f"failed: {host.get('error')}"}
    findings = host.get("findings") or []
    if not findings:
        secs = host.get("window", {}).get("seconds", 0)
        ifs = ", ".join(i for i in host.get("resets", {}).get("by_interface", {})) or "no interface"
        extra = f" ({host['error']})" if host.get("error") else ""
        return {"severity": "ok", "text": f"No TCP resets in the {secs:.0f} s window on {ifs}{extra}."}
    top = findings[0]
    more = f" (+{len(findings) - 1} more finding{'s' if len(findings) > 2 else ''})" if len(findings) > 1 else ""
    return {"severity": top["severity"], "text": top["summary"] + more}


def _analyze_one(args: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    directory, run = args
    try:
        return analyze_host(Path(directory), run)
    except Exception as e:  # noqa: BLE001 - one broken host folder must not sink the others
        name = Path(directory).name
        return {"name": name, "address": "", "status": "failed", "findings": [],
                "error": f"analysis failed: {type(e).__name__}: {e}", "report": f"{name}/report.html",
                "verdict": {"severity": "failed", "text": f"analysis failed: {e}"}}


def analyze_run(run_dir: Path, jobs: int | None = None) -> dict[str, Any]:
    """Analyze every host folder of a run directory (in parallel) into the summary dict."""
    run = json.loads((run_dir / "run.json").read_text())
    dirs = [run_dir / h["directory"] for h in run.get("hosts", [])]
    if not dirs:
        dirs = sorted(p.parent for p in run_dir.glob("*/host.json"))
    args = [(str(d), run) for d in dirs]
    jobs = jobs or min(len(args), os.cpu_count() or 1)
    if jobs > 1 and len(args) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            hosts = list(ex.map(_analyze_one, args))
    else:
        hosts = [_analyze_one(a) for a in args]
    return {"run": run, "hosts": hosts, "links": cross_links(hosts)}


def cross_links(hosts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Who resets whom among the run's hosts: A's findings whose peers are B's addresses."""
    by_addr: dict[str, str] = {}
    for h in hosts:
        for i in (h.get("facts") or {}).get("interfaces", []):
            for a in i.get("addresses", []):
                if not ipaddress.ip_address(a).is_loopback:
                    by_addr[a] = h["name"]
        if h.get("address"):
            by_addr.setdefault(h["address"], h["name"])
    links = []
    for h in hosts:
        for f in h.get("findings", []):
            if f["kind"].startswith("received_"):
                continue
            for peer in f.get("peers", []):
                addr = peer.rsplit(":", 1)[0].strip("[]") if peer.count(":") == 1 or peer.startswith("[") else peer
                other = by_addr.get(addr)
                if other and other != h["name"]:
                    port = f["local"].rsplit(":", 1)[-1]
                    links.append({"from": h["name"], "to": other, "kind": f["kind"], "count": f["count"],
                                  "port": int(port) if port.isdigit() else None})
    return links
