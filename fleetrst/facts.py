"""Pure parsers of what the host side collects: TCP counters, socket tables, interfaces.

Every function here takes text as the host printed it and never raises on odd input: hosts run
different kernels and iproute2 versions, and process names are chosen by whoever runs the process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

KEY_COUNTERS = (
    "OutRsts",
    "AttemptFails",
    "EstabResets",
    "TCPAbortOnData",
    "TCPAbortOnClose",
    "TCPAbortOnMemory",
    "TCPAbortOnTimeout",
    "TCPAbortOnLinger",
    "TCPAbortFailed",
    "ListenOverflows",
    "ListenDrops",
    "TCPChallengeACK",
    "PAWSEstab",
    "TCPSynRetrans",
    "InSegs",
    "OutSegs",
    "ActiveOpens",
    "PassiveOpens",
    "InErrs",
    "CurrEstab",
)

_SNMP6_PREFIXES = ("UdpLite6", "Icmp6", "Udp6", "Ip6")
_INT = re.compile(r"^-?[0-9]+$")


def _lines(text: str) -> list[str]:
    # Only "\n" ends a line: str.splitlines() would also cut a process name at "\x85" or
    # "\u2028", which the host script leaves in place.
    return [line.removesuffix("\r") for line in text.split("\n")]


def _decimal(text: str) -> bool:
    # str.isdigit() alone also accepts "²", which int() refuses.
    return text.isascii() and text.isdigit()


# --- /proc/net counters -------------------------------------------------------------------------


def parse_proc_net(text: str) -> dict[str, dict[str, int]]:
    """Parse /proc/net/snmp, /proc/net/netstat or /proc/net/snmp6 into {prefix: {name: value}}."""
    out: dict[str, dict[str, int]] = {}
    headers: dict[str, list[str]] = {}
    for line in _lines(text):
        head, colon, rest = line.partition(":")
        tokens = rest.split()
        if colon and head and " " not in head and tokens:
            if all(_INT.match(t) for t in tokens):
                names = headers.pop(head, None)
                if names is not None:
                    # A short line (a truncated read) keeps the values it has.
                    out.setdefault(head, {}).update(zip(names, map(int, tokens), strict=False))
            else:
                headers[head] = tokens
            continue
        parts = line.split()
        if len(parts) == 2 and _INT.match(parts[1]):
            for prefix in _SNMP6_PREFIXES:
                if parts[0].startswith(prefix) and len(parts[0]) > len(prefix):
                    out.setdefault(prefix, {})[parts[0][len(prefix):]] = int(parts[1])
                    break
    return out


@dataclass(frozen=True)
class CounterSnapshot:
    """Counters read on a host at one instant (`time` is the host's epoch, when it said so)."""

    time: float | None
    values: dict[str, dict[str, int]] = field(default_factory=dict)

    def get(self, name: str) -> int | None:
        """Value of `name` ("OutRsts", or qualified "TcpExt:ListenDrops"); Tcp, then TcpExt."""
        prefix, colon, bare = name.partition(":")
        if colon:
            return self.values.get(prefix.strip(), {}).get(bare.strip())
        for prefix in ("Tcp", "TcpExt"):
            value = self.values.get(prefix, {}).get(name)
            if value is not None:
                return value
        return None


def _sections(text: str) -> Iterator[tuple[str, str]]:
    """Yield (name, body) for each "--- NAME" section; text before the first one is skipped."""
    name: str | None = None
    body: list[str] = []
    for line in _lines(text):
        if line.startswith("--- "):
            if name is not None:
                yield name, "\n".join(body)
            name, body = line[4:].strip(), []
        elif name is not None:
            body.append(line)
    if name is not None:
        yield name, "\n".join(body)


def parse_counters_file(text: str) -> CounterSnapshot:
    """Parse a counters file from the host script: a `time=` header, then raw /proc sections."""
    when: float | None = None
    for line in _lines(text):
        if line.startswith("--- "):
            break
        if line.startswith("time="):
            try:
                when = float(line[5:].strip())
            except ValueError:
                when = None
    values: dict[str, dict[str, int]] = {}
    for _, body in _sections(text):
        for prefix, counters in parse_proc_net(body).items():
            values.setdefault(prefix, {}).update(counters)
    return CounterSnapshot(time=when, values=values)


def counter_deltas(
    start: CounterSnapshot, end: CounterSnapshot, names: tuple[str, ...] | list[str] = KEY_COUNTERS
) -> dict[str, dict[str, Any]]:
    """{name: {"start": int, "end": int, "delta": int, "per_s": float | None}} per counter found.

    Counters missing from either snapshot are left out; `per_s` is None without a usable interval.
    """
    seconds: float | None = None
    if start.time is not None and end.time is not None and end.time > start.time:
        seconds = end.time - start.time
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        a, b = start.get(name), end.get(name)
        if a is None or b is None:
            continue
        delta = b - a
        out[name] = {
            "start": a,
            "end": b,
            "delta": delta,
            "per_s": delta / seconds if seconds else None,
        }
    return out


# --- ss -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """A process holding a socket, as `ss -p` names it (the name may be cut at its first ')')."""

    name: str
    pid: int
    fd: int


@dataclass(frozen=True)
class Socket:
    """One line of `ss -tan[l]p`. Ports are None for "*"; `iface` is a local "%dev" scope."""

    state: str
    recv_q: int
    send_q: int
    local_addr: str
    local_port: int | None
    peer_addr: str
    peer_port: int | None
    processes: tuple[Proc, ...] = ()
    iface: str | None = None


@dataclass(frozen=True)
class ProcInfo:
    """A process from the host's procs table: full `comm` (15 bytes) and its command line."""

    pid: int
    comm: str
    cmdline: str


_WILDCARDS_V4 = ("0.0.0.0", "*")
_WILDCARDS_V6 = ("::", "*")
# One users entry ends at `",pid=N,fd=N)`: ss stops a name at its first ')', so a name can fake
# `",pid=9,fd=9` but never the closing parenthesis.
_USER_END = re.compile(r'",pid=(\d+),fd=(\d+)\)')


def _split_endpoint(token: str) -> tuple[str, int | None, str | None]:
    """"[::1]%lo:22" -> ("::1", 22, "lo"); "*:*" -> ("*", None, None)."""
    host, _, port = token.rpartition(":")
    iface: str | None = None
    if "%" in host:
        host, _, iface = host.partition("%")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port) if _decimal(port) else None
    return host, number, iface or None


def _parse_users(text: str) -> tuple[Proc, ...]:
    """Parse `users:(("name",pid=1,fd=3),...)`, keeping the entries read before any garbage."""
    start = text.find("users:(")
    if start < 0:
        return ()
    pos = start + len("users:(")
    procs: list[Proc] = []
    while text.startswith('("', pos):
        match = _USER_END.search(text, pos + 2)
        if match is None:
            break
        procs.append(Proc(text[pos + 2 : match.start()], int(match[1]), int(match[2])))
        pos = match.end()
        if not text.startswith(",", pos):
            break
        pos += 1
    return tuple(procs)


def _parse_ss_line(line: str) -> Socket | None:
    if not line or line[0].isspace():
        return None  # blank, or an indented `ss -i` detail line
    parts = line.split(None, 5)
    if len(parts) < 5 or not (_decimal(parts[1]) and _decimal(parts[2])):
        return None
    if ":" not in parts[3] or ":" not in parts[4]:
        return None
    local, lport, iface = _split_endpoint(parts[3])
    peer, pport, _ = _split_endpoint(parts[4])
    users = _parse_users(parts[5]) if len(parts) > 5 else ()
    return Socket(parts[0], int(parts[1]), int(parts[2]), local, lport, peer, pport, users, iface)


def parse_ss(text: str) -> list[Socket]:
    """Parse `ss -Htanp` / `ss -Hltnp` output; lines that are not sockets are skipped."""
    return [s for s in map(_parse_ss_line, _lines(text)) if s is not None]


def _unmap(addr: str) -> str:
    """"::ffff:127.0.0.1" -> "127.0.0.1": a v4 peer of a dual-stack socket is the same endpoint."""
    return addr[7:] if addr.lower().startswith("::ffff:") and "." in addr else addr


def parse_procs(text: str) -> dict[int, ProcInfo]:
    """Parse `PID<TAB>COMM<TAB>CMDLINE` lines (the host script's procs table)."""
    out: dict[int, ProcInfo] = {}
    for line in _lines(text):
        pid, _, rest = line.partition("\t")
        pid = pid.strip()
        if not _decimal(pid):
            continue
        comm, _, cmdline = rest.partition("\t")
        # cmdline ends with a NUL the script turned into a space.
        out[int(pid)] = ProcInfo(int(pid), comm, cmdline.rstrip(" "))
    return out


@dataclass(frozen=True)
class SocketTable:
    """Listeners, all sockets and their owners, as a host saw them at one instant."""

    listeners: tuple[Socket, ...] = ()
    sockets: tuple[Socket, ...] = ()
    procs: dict[int, ProcInfo] = field(default_factory=dict)

    def listener_for(self, port: int, addr: str | None = None) -> Socket | None:
        """The listener that would take a SYN to addr:port: exact address first, then wildcards."""
        candidates = [s for s in self.listeners if s.local_port == port]
        if addr is None:
            return candidates[0] if candidates else None
        want = _unmap(addr)
        v6 = ":" in want
        for s in candidates:
            if _unmap(s.local_addr) == want:
                return s
        # Linux listeners on [::] take IPv4 too unless IPV6_V6ONLY, which ss does not show.
        wildcards = _WILDCARDS_V6 if v6 else _WILDCARDS_V4 + _WILDCARDS_V6
        for wildcard in wildcards:
            for s in candidates:
                if s.local_addr == wildcard:
                    return s
        return None

    def owners_of(self, local_addr: str, local_port: int | None) -> list[ProcInfo]:
        """Processes holding a socket at local_addr:local_port, or the listener that covers it."""
        if local_port is None:
            return []
        want = _unmap(local_addr)
        found = [s for s in self.sockets if s.local_port == local_port
                 and _unmap(s.local_addr) == want]
        listener = self.listener_for(local_port, local_addr)
        if listener is not None:
            found.append(listener)
        out: dict[int, ProcInfo] = {}
        for sock in found:
            for proc in sock.processes:
                if proc.pid not in out:
                    out[proc.pid] = self.procs.get(proc.pid) or ProcInfo(proc.pid, proc.name, "")
        return list(out.values())


def parse_sockets_file(text: str) -> SocketTable:
    """Parse the host script's sockets file ("--- listen", "--- all", "--- procs" sections)."""
    sections = dict(_sections(text))
    sockets = parse_ss(sections.get("all", ""))
    if "listen" in sections:
        listeners = parse_ss(sections["listen"])
    else:
        listeners = [s for s in sockets if s.state == "LISTEN"]
    return SocketTable(tuple(listeners), tuple(sockets), parse_procs(sections.get("procs", "")))


# --- ip -o link / addr ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Iface:
    """A network interface from `ip -o link`; `up` is the administrative state (UP flag)."""

    index: int
    name: str
    flags: tuple[str, ...]
    up: bool
    mtu: int | None
    link_type: str | None
    mac: str | None
    state: str | None = None  # operational state: UP, DOWN, UNKNOWN, ...


_LINK = re.compile(r"^(\d+):\s+(\S+?):\s+<([^>]*)>(.*)$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2})+$")


def _strip_link_suffix(name: str) -> str:
    # `ip` prints "veth0@if5" or "eth0.10@eth0"; the kernel name is the part before the last "@".
    return name.rsplit("@", 1)[0] if "@" in name[1:] else name


def _word_after(words: list[str], key: str) -> str | None:
    try:
        return words[words.index(key) + 1]
    except (ValueError, IndexError):
        return None


def parse_ip_link(text: str) -> dict[int, Iface]:
    """Parse `ip -o link` into {ifindex: Iface}."""
    out: dict[int, Iface] = {}
    for line in _lines(text):
        match = _LINK.match(line.strip())
        if match is None:
            continue
        # `ip -o` joins the record's lines with a backslash.
        words = match[4].replace("\\", " ").split()
        flags = tuple(f for f in match[3].split(",") if f)
        mtu = _word_after(words, "mtu")
        link_type = mac = None
        for i, word in enumerate(words):
            if word.startswith("link/"):
                link_type = word[5:]
                if i + 1 < len(words) and _MAC.match(words[i + 1]):
                    mac = words[i + 1].lower()
                break
        index = int(match[1])
        out[index] = Iface(
            index=index,
            name=_strip_link_suffix(match[2]),
            flags=flags,
            up="UP" in flags,
            mtu=int(mtu) if mtu and _decimal(mtu) else None,
            link_type=link_type,
            mac=mac,
            state=_word_after(words, "state"),
        )
    return out


_ADDR = re.compile(r"^\d+:\s+(\S+)\s+(inet6?)\s+(\S+)")


def parse_ip_addr(text: str) -> dict[str, list[str]]:
    """Parse `ip -o addr` into {ifname: [addresses without prefix length]}, both families."""
    out: dict[str, list[str]] = {}
    for line in _lines(text):
        match = _ADDR.match(line.strip())
        if match is None:
            continue
        addr = match[3].split("/", 1)[0]
        addrs = out.setdefault(_strip_link_suffix(match[1]), [])
        if addr not in addrs:
            addrs.append(addr)
    return out
