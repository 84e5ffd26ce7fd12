"""Parse tracefs output of tcp:tcp_send_reset and sock:inet_sock_set_state, and the event format."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]*\)\s+)?\[(?P<cpu>\d+)\]\s+(?:\S+\s+)?"
    r"(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s+(?P<body>.*)$"
)
_PAIR = re.compile(r'\{\s*(-?\d+)\s*,\s*"([^"]*)"\s*\}')


@dataclass(frozen=True, slots=True)
class ResetEvent:
    """One tcp_send_reset line: who the kernel reset, from which state, and why."""

    ts: float  # wall-clock epoch (converted with the run's sync markers)
    comm: str  # the task on the CPU: only meaningful for resets sent at close() time
    pid: int
    src: str
    sport: int
    dst: str
    dport: int
    state: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class ConnectEvent:
    """A socket entering SYN-SENT: the process that called connect() (source port not yet known)."""

    ts: float
    comm: str
    pid: int
    src: str
    dst: str
    dport: int


@dataclass
class Trace:
    """Everything read from one host's trace file."""

    resets: list[ResetEvent]
    connects: list[ConnectEvent]
    lost: int  # events the ring buffer overwrote
    synced: bool  # whether trace time could be tied to wall-clock time


def reason_names(format_text: str) -> dict[int, str]:
    """Reason numbers to names from the host's own event format file (numbering differs by kernel)."""
    start = format_text.find("__print_symbolic(REC->reason,")
    if start < 0:
        return {}
    body = format_text[start:]
    end = body.find("})")
    return {int(n): name for n, name in _PAIR.findall(body[: end + 1] if end >= 0 else body)}


def _split_endpoint(text: str) -> tuple[str, int]:
    """'127.0.0.1:80' or '[::1]:80' -> (addr, port)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    try:
        return host, int(port)
    except ValueError:
        return host, 0


def _fields(body: str) -> dict[str, str]:
    out = {}
    for part in body.split():
        k, sep, v = part.partition("=")
        if sep:
            out[k] = v
    return out


def parse_trace(text: str, format_text: str = "") -> Trace:
    """Parse an instance's `trace` output; times become epoch seconds via fleetrst-sync markers."""
    names = reason_names(format_text)
    raw_resets: list[tuple[float, str, int, dict[str, str]]] = []
    raw_connects: list[tuple[float, str, int, dict[str, str]]] = []
    offsets: list[float] = []
    lost = 0
    for line in text.splitlines():
        if line.startswith("#"):
            m = re.search(r"entries-in-buffer/entries-written:\s*(\d+)/(\d+)", line)
            if m:
                lost = max(0, int(m.group(2)) - int(m.group(1)))
            continue
        m = _LINE.match(line)
        if not m:
            continue
        ts = float(m.group("ts"))
        event, body = m.group("event"), m.group("body")
        if event == "tracing_mark_write" and body.startswith("fleetrst-sync "):
            try:
                offsets.append(float(body.split()[1]) - ts)
            except (IndexError, ValueError):
                pass
        elif event == "tcp_send_reset":
            raw_resets.append((ts, m.group("comm").strip(), int(m.group("pid")), _fields(body)))
        elif event == "inet_sock_set_state":
            raw_connects.append((ts, m.group("comm").strip(), int(m.group("pid")), _fields(body)))
    offset = sum(offsets) / len(offsets) if offsets else 0.0
    resets = []
    for ts, comm, pid, f in raw_resets:
        src, sport = _split_endpoint(f.get("src", ""))
        dst, dport = _split_endpoint(f.get("dest", ""))
        reason = f.get("reason")
        if reason is not None and reason.lstrip("-").isdigit():
            reason = names.get(int(reason), reason)
        resets.append(ResetEvent(ts + offset, comm, pid, src, sport, dst, dport, f.get("state", ""), reason))
    connects = []
    for ts, comm, pid, f in raw_connects:
        if f.get("newstate") != "TCP_SYN_SENT":
            continue
        v6 = f.get("family") == "AF_INET6"
        src = f.get("saddrv6" if v6 else "saddr", "")
        dst = f.get("daddrv6" if v6 else "daddr", "")
        try:
            dport = int(f.get("dport", "0"))
        except ValueError:
            dport = 0
        connects.append(ConnectEvent(ts + offset, comm, pid, src, dst, dport))
    return Trace(resets, connects, lost, bool(offsets))
