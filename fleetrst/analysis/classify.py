"""Classification: what each reset of the window is, and the findings they add up to.

The packet says a lot by itself (see "What a reset tells you" in the design notes); the kernel's
reason, where the host traced it, settles the rest. Counters and socket tables name what the
packets cannot: which abort counter moved, whether a listen queue overflowed, who listens.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..facts import SocketTable
from ..pcap import RstPacket, format_tcpdump_line
from ..trace import ConnectEvent, ResetEvent, Trace
from .hostfiles import HostFiles
from .severity import finding_severity

ACK = 0x10
SCAN_MIN_PORTS = 8
MAX_GROUPS = 20  # findings per kind; the smaller groups beyond are told as one finding
EPHEMERAL_MIN = 32768  # Linux's default ip_local_port_range starts here
JOIN_S = 2.0  # a trace event and its packet are at most this far apart
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
# The counter each active reason moves (an SO_LINGER {1, 0} close is TCP_STATE + TCPAbortOnData).
REASON_COUNTER = {
    "TCP_STATE": "TCPAbortOnData",
    "TCP_ABORT_ON_DATA": "TCPAbortOnData",
    "TCP_DISCONNECT_WITH_DATA": "TCPAbortOnData",
    "TCP_ABORT_ON_CLOSE": "TCPAbortOnClose",
    "TCP_ABORT_ON_MEMORY": "TCPAbortOnMemory",
    "TCP_KEEPALIVE_TIMEOUT": "TCPAbortOnTimeout",
    "TCP_ABORT_ON_LINGER": "TCPAbortOnLinger",
}
COUNTER_MEANING = {
    "TCPAbortOnData": "it closes connections with SO_LINGER 0 (zero linger), or gets data after "
                      "closing them",
    "TCPAbortOnClose": "it closes connections with received data still unread",
    "TCPAbortOnMemory": "the kernel ran short of socket memory (too many orphaned sockets)",
    "TCPAbortOnTimeout": "connections timed out (retransmissions or keepalive unanswered)",
    "TCPAbortOnLinger": "closed connections stayed in FIN-WAIT-2 past tcp_fin_timeout",
    "TCPAbortFailed": "the kernel could not even send the resets it wanted to",
}
RECEIVED_KIND = {"refusal": "received_refused", "abort": "received_abort", "stray": "received_stray"}


def endpoint(addr: str, port: int | str) -> str:
    """ADDR:PORT, IPv6 in brackets."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def is_own(addr: str, own: set[str]) -> bool:
    """The address is this host's (loopback included)."""
    if addr in own:
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


@dataclass
class Packet:
    """A reset seen in the window, with what analysis learned about it."""

    p: RstPacket
    sent: bool
    cls: str  # refusal, abort, stray (from the packet; the reason may correct it)
    reason: str | None = None
    trace_comm: str | None = None
    trace_pid: int | None = None
    trace_listener: bool = False  # traced on a listening socket without a peer (queue overflow)


def packet_class(p: RstPacket) -> str:
    """What the packet alone says: refusal ([R.] seq 0 win 0, no options), stray (no ACK) or abort."""
    if not p.flags & ACK:
        return "stray"
    if p.seq == 0 and p.window == 0 and p.options_len == 0:
        return "refusal"
    return "abort"


def refine(cls: str, reason: str | None) -> str:
    """The class once the kernel's reason is known."""
    if reason == "NO_SOCKET":
        return "refusal" if cls == "refusal" else "stray"
    if reason == "TCP_TIMEWAIT_SOCKET":
        return "stray"
    if reason in ACTIVE_REASONS:
        return "abort"
    return cls


class TraceIndex:
    """Join trace events to packets by addresses, ports and time (tracefs sees every namespace)."""

    def __init__(self, trace: Trace | None) -> None:
        self.by_flow: dict[tuple[str, int, str, int], list[ResetEvent]] = defaultdict(list)
        self.by_local: dict[tuple[str, int], list[ResetEvent]] = defaultdict(list)
        self.connects: dict[tuple[str, int], list[ConnectEvent]] = defaultdict(list)
        # Without sync markers trace times are not wall-clock: join on the flow alone.
        self.synced = bool(trace and trace.synced)
        if trace is None:
            return
        for e in trace.resets:
            self.by_flow[(e.src, e.sport, e.dst, e.dport)].append(e)
            self.by_local[(e.src, e.sport)].append(e)
        for c in trace.connects:
            self.connects[(c.dst, c.dport)].append(c)

    def reset_for(self, p: RstPacket) -> ResetEvent | None:
        """The trace event of this sent reset, if the trace has it."""
        cands = self.by_flow.get((p.src, p.sport, p.dst, p.dport))
        if not cands and self.synced:
            # Accept-queue overflow is traced on the listener, with a peer of 0.0.0.0:0.
            cands = [e for e in self.by_local.get((p.src, p.sport), []) if e.dport == 0]
        if not cands:
            return None
        if not self.synced:
            return cands[0]
        best = min(cands, key=lambda e: abs(e.ts - p.ts))
        return best if abs(best.ts - p.ts) < JOIN_S else None

    def connector(self, addr: str, port: int, local: str, ts: float) -> ConnectEvent | None:
        """The connect() (SYN-SENT) from `local` to addr:port just before `ts`."""
        if not self.synced:
            return None
        best = None
        for c in self.connects.get((addr, port), []):
            if c.src and c.src != local:
                continue
            if c.ts <= ts + 0.05 and ts - c.ts < 1.5 and (best is None or c.ts > best.ts):
                best = c
        return best


def trace_index(hf: HostFiles) -> TraceIndex:
    """The host's trace, indexed for joins (built once per host)."""
    if "trace_index" not in hf.memo:
        hf.memo["trace_index"] = TraceIndex(hf.trace)
    index: TraceIndex = hf.memo["trace_index"]
    return index


def annotate(hf: HostFiles, packets: Iterable[RstPacket]) -> list[Packet]:
    """Direction, class and kernel reason of each reset; resets between two other hosts are left out."""
    tix = trace_index(hf)
    out = []
    for p in packets:
        sent = is_own(p.src, hf.own)
        if not sent and hf.addresses_known and not is_own(p.dst, hf.own):
            continue  # passing through (bridge, router): neither sent nor received here
        x = Packet(p, sent, packet_class(p))
        ev = tix.reset_for(p) if sent else None
        if ev is not None:
            x.reason, x.trace_comm, x.trace_pid = ev.reason, ev.comm, ev.pid
            x.trace_listener = ev.dport == 0 and ev.state == "TCP_LISTEN"
            x.cls = refine(x.cls, ev.reason)
        out.append(x)
    return out


# --- helpers for findings ------------------------------------------------------------------------


def _process(name: str | None, pid: int | None) -> dict[str, Any] | None:
    return {"pid": pid, "name": name} if name else None


def _tables(hf: HostFiles) -> list[SocketTable]:
    return [t for t in (hf.sockets_end, hf.sockets_start) if t is not None]


def listener(hf: HostFiles, addr: str, port: int) -> tuple[Any, dict[str, Any] | None]:
    """The socket listening on addr:port in the ss snapshots, and its owner."""
    key = ("listener", addr, port)
    if key not in hf.memo:
        hf.memo[key] = _find_listener(hf, addr, port)
    found: tuple[Any, dict[str, Any] | None] = hf.memo[key]
    return found


def _find_listener(hf: HostFiles, addr: str, port: int) -> tuple[Any, dict[str, Any] | None]:
    for table in _tables(hf):
        sock = table.listener_for(port, addr)
        if sock is not None:
            owners = table.owners_of(sock.local_addr, sock.local_port)
            if owners:
                return sock, _process(owners[0].comm, owners[0].pid)
            if sock.processes:
                return sock, _process(sock.processes[0].name, sock.processes[0].pid)
            return sock, None
    return None, None


def socket_owner(hf: HostFiles, addr: str, port: int) -> dict[str, Any] | None:
    """The process holding a socket at addr:port in the ss snapshots."""
    for table in _tables(hf):
        owners = table.owners_of(addr, port)
        if owners:
            return _process(owners[0].comm, owners[0].pid)
    return None


def syn_sent_owner(hf: HostFiles, addr: str, port: int) -> dict[str, Any] | None:
    """A process caught in SYN-SENT towards addr:port by an ss snapshot."""
    for table in _tables(hf):
        for s in table.sockets:
            if s.state.startswith("SYN-SENT") and s.peer_addr == addr and s.peer_port == port:
                for proc in s.processes:
                    info = table.procs.get(proc.pid)
                    return _process(info.comm if info else proc.name, proc.pid)
    return None


def counter_evidence(counters: dict[str, dict[str, Any]], names: Iterable[str]) -> dict[str, int]:
    """The named counters that moved, with their deltas."""
    return {n: int(counters[n]["delta"]) for n in names if n in counters and counters[n]["delta"]}


def _rate(n: int, seconds: float, noun: str = "resets") -> str:
    """'20 resets in 10 s (2.0/s)'."""
    return f"{n} {noun} in {seconds:.0f} s ({n / seconds:.1f}/s)" if seconds > 0 else f"{n} {noun}"


def proc_text(proc: dict[str, Any] | None) -> str:
    """'name (pid N)', or '' without a process."""
    if not proc:
        return ""
    return f"{proc['name']} (pid {proc['pid']})" if proc.get("pid") else str(proc["name"])


def _ports_text(ports: list[int]) -> str:
    shown = ", ".join(map(str, ports[:5]))
    return f"{shown}, ..." if len(ports) > 5 else shown


def _finding(kind: str, iface: str, local: str, peers: list[str], pk: list[Packet], seconds: float,
             summary: str, next_step: str | None, process: dict[str, Any] | None,
             counters: dict[str, int], **extra: Any) -> dict[str, Any]:
    reasons = Counter(x.reason for x in pk if x.reason)
    per_s = round(len(pk) / seconds, 3) if seconds > 0 else float(len(pk))
    f = {
        "severity": finding_severity(kind, len(pk), per_s),
        "kind": kind,
        "interface": iface,
        "local": local,
        "peers": peers[:20],
        "count": len(pk),
        "per_s": per_s,
        "reason": reasons.most_common(1)[0][0] if reasons else None,
        "reasons": dict(reasons),
        "process": process,
        "summary": summary,
        "next_step": next_step,
        "evidence": {
            "samples": [format_tcpdump_line(x.p) for x in pk[:5]],
            "counters": counters,
            "basis": "kernel reason" if reasons else "packet rules",
        },
    }
    f.update(extra)
    return f


def _bounded(groups: dict[Any, list[Packet]], kind: Callable[[Any], str]
             ) -> tuple[list[tuple[Any, list[Packet]]], dict[str, list[list[Packet]]]]:
    """The MAX_GROUPS biggest groups of each kind, and the rest of each kind (told as one)."""
    by_kind: dict[str, list[tuple[Any, list[Packet]]]] = defaultdict(list)
    for key, group in groups.items():
        by_kind[kind(key)].append((key, group))
    kept: list[tuple[Any, list[Packet]]] = []
    rest: dict[str, list[list[Packet]]] = {}
    for k, items in by_kind.items():
        items.sort(key=lambda kg: -len(kg[1]))
        kept += items[:MAX_GROUPS]
        if len(items) > MAX_GROUPS:
            rest[k] = [g for _, g in items[MAX_GROUPS:]]
    return kept, rest


def _others(kind: str, groups: list[list[Packet]], seconds: float,
            counters: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One finding for the many small groups of a kind left over by _bounded."""
    pk = sorted((x for g in groups for x in g), key=lambda x: x.p.ts)
    iface = Counter(x.p.ifname or "?" for x in pk).most_common(1)[0][0]
    received = kind.startswith("received_")
    peers = Counter(x.p.src if received else x.p.dst for x in pk)
    where = "peers" if received else "local endpoints"
    return _finding(
        kind, iface, "*", [a for a, _ in peers.most_common()], pk, seconds,
        f"{iface}: {_rate(len(pk), seconds)} more of the same kind, spread over {len(groups)} other "
        f"{where}: too many to list one by one",
        "The pcaps hold every one of them.", None, counter_evidence(counters, ("OutRsts",)),
        groups=len(groups),
    )


# --- the rules -----------------------------------------------------------------------------------


def _is_client_side(hf: HostFiles, p: RstPacket) -> bool:
    """The reset left from the client end of the connection (the peer holds the service port)."""
    if listener(hf, p.src, p.sport)[0] is not None:
        return False
    if is_own(p.dst, hf.own) and listener(hf, p.dst, p.dport)[0] is not None:
        return True
    if p.sport >= EPHEMERAL_MIN > p.dport:
        return True
    return p.dport < p.sport and p.sport >= 1024


def _scans(sent: list[Packet], hf: HostFiles, seconds: float, counters: dict[str, dict[str, Any]],
           findings: list[dict[str, Any]]) -> set[int]:
    """One remote peer refused on many ports: a scan. Returns the packets used."""
    by_peer: dict[tuple[str, str], list[Packet]] = defaultdict(list)
    for x in sent:
        if x.cls == "refusal":
            by_peer[(x.p.ifname or "?", x.p.dst)].append(x)
    used: set[int] = set()
    for (iface, peer), group in by_peer.items():
        ports = sorted({x.p.sport for x in group})
        if len(ports) < SCAN_MIN_PORTS or iface == "lo" or is_own(peer, hf.own):
            continue
        used.update(id(x) for x in group)
        local_addr = Counter(x.p.src for x in group).most_common(1)[0][0]
        findings.append(_finding(
            "scan", iface, endpoint(local_addr, "*"), [peer], group, seconds,
            f"{iface}: {peer} probed {len(ports)} closed ports of {local_addr} "
            f"({_ports_text(ports)}): {_rate(len(group), seconds, 'refusals')} — a port scan",
            f"Find out who runs {peer} and whether a scan is expected; block it if not.",
            None, counter_evidence(counters, ("OutRsts", "AttemptFails")),
            ports=ports[:100], port_count=len(ports),
        ))
    return used


def _refusals(sent: list[Packet], skip: set[int], hf: HostFiles, tix: TraceIndex, seconds: float,
              counters: dict[str, dict[str, Any]], findings: list[dict[str, Any]]) -> None:
    groups: dict[tuple[str, str, int], list[Packet]] = defaultdict(list)
    for x in sent:
        if x.cls == "refusal" and id(x) not in skip:
            groups[(x.p.ifname or "?", x.p.src, x.p.sport)].append(x)
    kept, rest = _bounded(groups, lambda key: "refusal")
    for pks in rest.values():
        all_local = all(x.p.ifname == "lo" or is_own(x.p.dst, hf.own) for g in pks for x in g)
        findings.append(_others("local_dead_service" if all_local else "refused", pks, seconds, counters))
    for (iface, addr, port), group in kept:
        n = len(group)
        peers = [p for p, _ in Counter(x.p.dst for x in group).most_common()]
        local = endpoint(addr, port)
        sock, lproc = listener(hf, addr, port)
        nothing = f"nothing listens on {port}" if sock is None else (
            f"{proc_text(lproc) or 'a process'} listens on {port} now (it was missing during the window)"
        )
        if iface == "lo" or all(is_own(p, hf.own) for p in peers):
            callers: Counter[tuple[str, int]] = Counter()
            for x in group:
                c = tix.connector(x.p.src, x.p.sport, x.p.dst, x.p.ts)
                if c is not None:
                    callers[(c.comm, c.pid)] += 1
            proc = _process(*callers.most_common(1)[0][0]) if callers else syn_sent_owner(hf, addr, port)
            who = f"; the caller is {proc_text(proc)}" if proc else ""
            findings.append(_finding(
                "local_dead_service", iface, local, peers, group, seconds,
                f"{iface}: {local} sent {_rate(n, seconds)} to local ephemeral ports — {nothing}{who}",
                (f"Nothing listens on {local} but {proc_text(proc)} connects to it "
                 f"{n / seconds:.1f} times a second: start the service that should listen there, "
                 f"or stop {proc['name']}." if proc else
                 f"Nothing listens on {local} but a local process keeps connecting to it: start the "
                 f"service that should listen there, or find the caller with `ss -tanp dst {local}`."),
                proc, counter_evidence(counters, ("OutRsts", "AttemptFails")),
            ))
        else:
            findings.append(_finding(
                "refused", iface, local, peers, group, seconds,
                f"{iface}: {local} refused {_rate(n, seconds, 'connections')} from "
                f"{', '.join(peers[:3])}{' and others' if len(peers) > 3 else ''} — {nothing}",
                f"{peers[0]} expects a service on port {port}: start it, or fix the client's target.",
                None, counter_evidence(counters, ("OutRsts",)),
            ))


def _overflowing(x: Packet, hf: HostFiles, overflows: int) -> bool:
    """A reset of an accept-queue overflow: the listen queue overflowed during the window, the
    reset left a listening port, without ACK (or traced on the listener), for no other reason."""
    if overflows <= 0 or x.reason in ("NO_SOCKET", "TCP_TIMEWAIT_SOCKET") or x.reason in ACTIVE_REASONS:
        return False
    if not (x.trace_listener or x.cls == "stray"):
        return False
    return listener(hf, x.p.src, x.p.sport)[0] is not None


def _abort_counter(group: list[Packet], counters: dict[str, dict[str, Any]]) -> str | None:
    """The abort counter that explains these resets: the one their reason moves, if it moved,
    else the one that moved most."""
    moved = counter_evidence(counters, ABORT_COUNTERS)
    for reason, _ in Counter(x.reason for x in group if x.reason).most_common():
        name = REASON_COUNTER.get(reason)
        if name in moved:
            return name
    return max(moved, key=lambda k: moved[k]) if moved else None


def _active(hf: HostFiles, tix: TraceIndex, seconds: float, sent: list[Packet],
            counters: dict[str, dict[str, Any]], findings: list[dict[str, Any]]) -> None:
    """Aborts, strays and listen-queue overflows: resets sent for connections, not refusals."""
    overflows = int(counters.get("ListenOverflows", {}).get("delta", 0))
    groups: dict[tuple[str, str, str, str, str, str | None], list[Packet]] = defaultdict(list)
    for x in sent:
        if x.cls == "refusal":
            continue
        p = x.p
        kind = "listen_overflow" if _overflowing(x, hf, overflows) else x.cls
        detail = None
        if kind == "stray":
            detail = {"TCP_TIMEWAIT_SOCKET": "time_wait", "NO_SOCKET": "no_socket"}.get(x.reason or "")
        if kind != "listen_overflow" and _is_client_side(hf, p):
            # The client end: one finding per service it talked to.
            key = (kind, p.ifname or "?", endpoint(p.src, "*"), endpoint(p.dst, p.dport), "client", detail)
        else:
            key = (kind, p.ifname or "?", endpoint(p.src, p.sport), "", "server", detail)
        groups[key].append(x)
    kept, rest = _bounded(groups, lambda key: key[0])
    findings += [_others(kind, pks, seconds, counters) for kind, pks in rest.items()]
    for (kind, iface, local, remote, side, detail), group in kept:
        n = len(group)
        first = group[0].p
        peers = [remote] if remote else [a for a, _ in Counter(x.p.dst for x in group).most_common()]
        lproc = listener(hf, first.src, first.sport)[1] if side == "server" else None
        proc = lproc
        if proc is None and kind == "abort":
            # Resets sent at close() carry their owner in the trace; passive ones never do.
            owners = Counter((x.trace_comm, x.trace_pid) for x in group
                             if x.reason in ACTIVE_REASONS and x.trace_comm)
            if owners:
                proc = _process(*owners.most_common(1)[0][0])
        if proc is None and kind != "listen_overflow":
            proc = socket_owner(hf, first.src, first.sport)
        who = f" ({proc['name']}, pid {proc['pid']})" if proc and proc.get("pid") else (
            f" ({proc['name']})" if proc else "")
        to = f" to {remote}" if remote else ""
        if kind == "abort":
            counter = _abort_counter(group, counters)
            moved = counter_evidence(counters, ABORT_COUNTERS)
            reason = Counter(x.reason for x in group if x.reason).most_common(1)
            why = [f"kernel reason {reason[0][0]}"] if reason else []
            why += [f"{counter} +{moved[counter]}"] if counter else ["no abort counter moved"]
            meaning = f" — {COUNTER_MEANING[counter]}" if counter else ""
            findings.append(_finding(
                "abort", iface, local, peers, group, seconds,
                f"{iface}: {local}{who} aborted {_rate(n, seconds, 'established connections')}{to}: "
                f"{', '.join(why)}{meaning}",
                "The application closes connections abortively (SO_LINGER 0, or close with unread "
                "data): check its logs and connection handling around these times.",
                proc, counter_evidence(counters, ABORT_COUNTERS + ("EstabResets",)), counter=counter,
            ))
        elif kind == "listen_overflow":
            ev = counter_evidence(counters, ("ListenOverflows", "ListenDrops"))
            findings.append(_finding(
                "listen_overflow", iface, local, peers, group, seconds,
                f"{iface}: the accept queue of {local}{who} overflowed: "
                f"{_rate(n, seconds, 'connections')} reset (ListenOverflows +{ev.get('ListenOverflows', 0)}, "
                "tcp_abort_on_overflow=1)",
                f"{proc['name'] if proc else 'The listener'} accepts too slowly: raise its backlog "
                "(and net.core.somaxconn), or find why it stalls.",
                proc, ev, counter="ListenOverflows",
            ))
        else:
            if detail == "time_wait":
                what = (f"sent {_rate(n, seconds)}{to} from TIME-WAIT: segments arrived for "
                        "connections it had already closed (late data, or a peer that did not see the close)")
                step = ("Usually a peer writing after this side closed: check that the peer reads "
                        "the close before sending, and the connection reuse of the client.")
            else:
                what = (f"sent {_rate(n, seconds)} without ACK{to} for connections it no longer knows "
                        "(restart, half-open or late segments)")
                step = ("Usually harmless after a restart; if it persists, look for peers reusing "
                        "stale connections.")
            findings.append(_finding(
                "stray", iface, local, peers, group, seconds, f"{iface}: {local}{who} {what}", step,
                proc, counter_evidence(counters, ("OutRsts",)), detail=detail,
            ))


def _received(hf: HostFiles, tix: TraceIndex, seconds: float, received: list[Packet],
              counters: dict[str, dict[str, Any]], findings: list[dict[str, Any]]) -> None:
    """Resets this host got, grouped by the peer that sent them."""
    groups: dict[tuple[str, str, str], list[Packet]] = defaultdict(list)
    for x in received:
        groups[(RECEIVED_KIND[x.cls], x.p.ifname or "?", x.p.src)].append(x)
    kept, rest = _bounded(groups, lambda key: key[0])
    findings += [_others(kind, pks, seconds, counters) for kind, pks in rest.items()]
    for (kind, iface, addr), group in kept:
        n = len(group)
        rports = sorted({x.p.sport for x in group})
        remote = endpoint(addr, rports[0]) if len(rports) == 1 else endpoint(addr, "*")
        on = "" if len(rports) == 1 else f" on {len(rports)} ports ({_ports_text(rports)})"
        local_addr = Counter(x.p.dst for x in group).most_common(1)[0][0]
        lports = {x.p.dport for x in group}
        local = endpoint(local_addr, lports.pop() if len(lports) == 1 else "*")
        procs: Counter[tuple[str, int | None]] = Counter()
        for x in group:
            proc = None
            if kind == "received_refused":
                c = tix.connector(x.p.src, x.p.sport, x.p.dst, x.p.ts)
                proc = _process(c.comm, c.pid) if c else None
            proc = proc or socket_owner(hf, x.p.dst, x.p.dport)
            if proc:
                procs[(proc["name"], proc["pid"])] += 1
        process = _process(*procs.most_common(1)[0][0]) if procs else None
        by = f"; the caller is {proc_text(process)}" if process and kind == "received_refused" else (
            f"; the local end is {proc_text(process)}" if process else "")
        what = {"received_refused": "refused", "received_abort": "aborted",
                "received_stray": "reset"}[kind]
        findings.append(_finding(
            kind, iface, local, [remote], group, seconds,
            f"{iface}: {remote} {what} {_rate(n, seconds, 'of this host' + chr(39) + 's connections')}{on}{by}",
            f"Look at {addr}: its side explains why.", process,
            counter_evidence(counters, ("AttemptFails", "EstabResets")), ports=rports[:100],
        ))


def classify(hf: HostFiles, pk: list[Packet], seconds: float,
             counters: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Group the window's resets into findings (not yet ordered)."""
    findings: list[dict[str, Any]] = []
    tix = trace_index(hf)
    sent = [x for x in pk if x.sent]
    used = _scans(sent, hf, seconds, counters, findings)
    _refusals(sent, used, hf, tix, seconds, counters, findings)
    _active(hf, tix, seconds, sent, counters, findings)
    _received(hf, tix, seconds, [x for x in pk if not x.sent], counters, findings)
    return findings
