"""Streaming reader for the capture files tcpdump writes on Linux: TCP resets as records.

Reads classic pcap (microsecond and nanosecond, either byte order) and pcapng (any number of
sections and interfaces), with Ethernet (802.1Q/802.1ad tags), Linux cooked v1/v2, raw IP and
BSD loopback link types, IPv4 and IPv6 (extension headers walked). Pure Python, one pass,
memory bounded whatever the file size.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from fleetrst.errors import PcapError

__all__ = [
    "ACK", "FIN", "PSH", "RST", "SYN", "URG",
    "PcapError", "PcapInfo", "RstPacket",
    "flag_string", "format_tcpdump_line", "ifnames_from_ip_link", "iter_resets", "read_resets",
]

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

# link types by number, as the decoder tests them: 1 EN10MB, 276 LINUX_SLL2, 113 LINUX_SLL,
# raw IP (101 RAW, 12 and 14 DLT_RAW, 228 IPV4, 229 IPV6), 0 NULL and 108 LOOP (BSD loopback)
_RAW_TYPES = frozenset((101, 12, 14, 228, 229))

MAX_CAPLEN = 256 * 1024  # above libpcap's own maximum snaplen: only garbage is bigger
_MAX_BLOCK = 16 * 1024 * 1024  # pcapng non-packet blocks (comments, keys) can be large
_CHUNK = 1 << 20
_CACHE_MAX = 4096  # address pairs; cleared when full so memory stays flat

_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_IP6_EXT = frozenset((0, 43, 60, 135, 139, 140))  # length in 8-octet units after the first 8
_TCP = struct.Struct("!HHIIBBH")
_V4TCP = struct.Struct("!2xH8x8sHHIIBBH")  # IPv4 without options, then TCP
_V6TCP = struct.Struct("!4xH2x32sHHIIBBH")  # IPv6 without extension headers, then TCP
_U32BE = struct.Struct("!I")
_SHB, _IDB, _EPB, _SPB, _OPB = 0x0A0D0D0A, 1, 6, 3, 2
_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000), b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000), b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PRECISION = {1: "s", 1000: "ms", 1_000_000: "us", 1_000_000_000: "ns", 10**12: "ps"}


class Readable(Protocol):
    """Anything with a binary read(): an open file, a pipe, a socket's makefile("rb")."""

    def read(self, size: int = ..., /) -> bytes: ...


Source = str | os.PathLike[str] | Readable


@dataclass(frozen=True, slots=True)
class RstPacket:
    """One TCP segment (a reset unless asked for all), as recorded in the capture."""

    ts: float  # epoch seconds
    ifname: str | None  # pcapng if_name, SLL2 index via `ifnames`, else the caller's default
    ifindex: int | None  # SLL2 only
    pkttype: int | None  # SLL/SLL2: 0 host, 1 broadcast, 2 multicast, 3 other host, 4 outgoing
    family: int  # 4 or 6
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int  # as on the wire, even without the ACK flag
    flags: int  # the TCP flags byte
    window: int
    options_len: int  # TCP header length - 20
    payload_len: int  # from the IP length, so a short snaplen does not hide it
    vlan: int | None  # outermost 802.1Q/802.1ad VLAN ID

    @property
    def is_ack(self) -> bool:
        """The ACK flag is set (a reset answering a SYN or a live connection)."""
        return bool(self.flags & ACK)

    @property
    def is_rst(self) -> bool:
        """The RST flag is set."""
        return bool(self.flags & RST)


class _NewRst:
    """Builds RstPacket objects at plain-slots speed.

    A frozen dataclass's __init__ goes through object.__setattr__ per field (about 4 us for 16
    fields on CPython 3.11, most of the reader's budget). This twin has the same slot layout, is
    filled by ordinary attribute stores, and then becomes a genuine RstPacket.
    """

    __slots__ = RstPacket.__slots__

    def __init__(self, ts: float, ifname: str | None, ifindex: int | None, pkttype: int | None,
                 family: int, src: str, sport: int, dst: str, dport: int, seq: int, ack: int,
                 flags: int, window: int, options_len: int, payload_len: int,
                 vlan: int | None) -> None:
        self.ts = ts
        self.ifname = ifname
        self.ifindex = ifindex
        self.pkttype = pkttype
        self.family = family
        self.src = src
        self.sport = sport
        self.dst = dst
        self.dport = dport
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.options_len = options_len
        self.payload_len = payload_len
        self.vlan = vlan
        self.__class__ = RstPacket  # type: ignore[assignment]


@dataclass
class PcapInfo:
    """What reading one capture saw; counters are complete once iteration ends."""

    path: str = ""
    format: str = ""  # "pcap" | "pcapng"
    linktypes: list[int] = field(default_factory=list)
    packets: int = 0  # every record, TCP or not
    tcp: int = 0  # TCP segments whose header was readable
    resets: int = 0
    non_tcp: int = 0  # not IP/TCP, non-first fragments, malformed headers, unknown link types
    snapped: int = 0  # headers cut short by the snapshot length
    truncated: bool = False  # the last record is cut short (capture killed, size cap hit)
    error: str | None = None
    ts_precision: str = ""  # "us" | "ns" | "mixed" | ...


_Decoder = Callable[[bytes, int, int, int, int, int], RstPacket | None]


class _Iface(NamedTuple):
    """One capture interface: its link type, name, timestamp scale and per-packet decoder.

    A packet's time is a * k + b * inv + tsoff, from the record's two timestamp words.
    """

    lt: int
    ifname: str | None
    k: float
    inv: float
    tsoff: int
    decode: _Decoder


class BatchSink(Protocol):
    """Takes whole runs of records instead of one decoded packet at a time (see fastpcap)."""

    def find(self, buf: bytes, pos: int, ng: bool, e: str, /) -> tuple[Sequence[int], int]:
        """The records that follow each other from `pos` on, complete in `buf`, as far as the
        sink can tell at once (pcap records, or pcapng enhanced packet blocks when `ng`; "<" or
        ">" is the headers' byte order): their offsets, and where the last one ends. The reader
        walks on from there itself."""

    def __call__(self, buf: bytes, pieces: list[Sequence[int]], ng: bool, e: str,
                 ifaces: list[_Iface], cnt: list[int], /) -> int:
        """Decode records of `buf` at the offsets in `pieces` (one run, in parts), of interfaces
        `ifaces` by id; add to the [tcp, resets, non_tcp, snapped] counters `cnt`. Returns how
        many records, from the first, were well-formed; the reader raises on the next one."""


def _nth(pieces: list[Sequence[int]], i: int) -> int:
    for piece in pieces:
        if i < len(piece):
            return int(piece[i])
        i -= len(piece)
    raise IndexError(i)


def _decoder(lt: int, ifname: str | None, ifnames: Mapping[int, str] | None, only_resets: bool,
             cnt: list[int], cache: dict[bytes, tuple[str, str]], k: float, inv: float,
             tsoff: float) -> _Decoder:
    """Return the per-packet decoder for one interface: link layer, IP, TCP, in one call.

    The packet's time is a * k + b * inv + tsoff, from the record's two timestamp words.
    """
    tcp_unpack, v4tcp, v6tcp = _TCP.unpack_from, _V4TCP.unpack_from, _V6TCP.unpack_from
    u32 = _U32BE.unpack_from
    ntop = socket.inet_ntop
    af4, af6 = socket.AF_INET, socket.AF_INET6
    vlan_tpids, ip6_ext = _VLAN_TPIDS, _IP6_EXT
    names = ifnames or {}
    new = _NewRst
    # cnt is [tcp, resets, non_tcp, snapped], indexed by literals: a named constant would cost a
    # global lookup per packet

    def decode(buf: bytes, off: int, caplen: int, origlen: int, a: int, b: int) -> RstPacket | None:
        end = off + caplen
        vlan = pkttype = ifindex = None
        name = ifname
        if lt == 1:  # Ethernet
            if caplen < 14:
                cnt[3] += 1
                return None
            etype = buf[off + 12] << 8 | buf[off + 13]
            p = off + 14
        elif lt == 276:  # Linux cooked v2 (-i any): protocol, interface index, packet type
            if caplen < 20:
                cnt[3] += 1
                return None
            etype = buf[off] << 8 | buf[off + 1]
            ifindex = u32(buf, off + 4)[0]
            pkttype = buf[off + 10]
            name = names.get(ifindex, ifname)
            p = off + 20
        elif lt == 113:  # Linux cooked v1: packet type, no interface
            if caplen < 16:
                cnt[3] += 1
                return None
            pkttype = buf[off] << 8 | buf[off + 1]
            etype = buf[off + 14] << 8 | buf[off + 15]
            p = off + 16
        elif lt in _RAW_TYPES:
            if caplen < 1:
                cnt[3] += 1
                return None
            v = buf[off] >> 4
            etype = 0x0800 if v == 4 else 0x86DD if v == 6 else 0
            p = off
        elif lt == 0 or lt == 108:
            if caplen < 4:
                cnt[3] += 1
                return None
            # NULL holds the writer's AF_ value in its own byte order, LOOP in network order
            fam = u32(buf, off)[0]
            if fam > 0xFFFF:
                fam = int.from_bytes(buf[off:off + 4], "little")
            etype = 0x0800 if fam == 2 else 0x86DD if fam in (10, 24, 28, 30) else 0
            p = off + 4
        else:
            cnt[2] += 1
            return None
        while etype in vlan_tpids:
            if p + 4 > end:
                cnt[3] += 1
                return None
            if vlan is None:
                vlan = (buf[p] << 8 | buf[p + 1]) & 0xFFF
            etype = buf[p + 2] << 8 | buf[p + 3]
            p += 4
        if etype == 0x0800:
            if p + 20 > end:
                cnt[3] += 1
                return None
            vihl = buf[p]
            ihl = (vihl & 15) << 2
            # non-first fragments carry no TCP header
            if vihl >> 4 != 4 or ihl < 20 or buf[p + 9] != 6 or (buf[p + 6] & 0x1F) | buf[p + 7]:
                cnt[2] += 1
                return None
            t = p + ihl
            ext = 0
        elif etype == 0x86DD:
            if p + 40 > end:
                cnt[3] += 1
                return None
            if buf[p] >> 4 != 6:
                cnt[2] += 1
                return None
            nh = buf[p + 6]
            t = p + 40
            while nh != 6:
                if nh not in ip6_ext and nh != 44 and nh != 51:
                    cnt[2] += 1  # ESP, no next header, another protocol
                    return None
                if t + 8 > end:
                    cnt[3] += 1
                    return None
                if nh == 44:
                    if (buf[t + 2] << 8 | buf[t + 3]) & 0xFFF8:
                        cnt[2] += 1
                        return None
                    hl = 8
                elif nh == 51:  # AH counts 4-octet units, minus 2
                    hl = (buf[t + 1] + 2) << 2
                else:
                    hl = (buf[t + 1] + 1) << 3
                nh = buf[t]
                t += hl
            ext = t - p - 40
        else:
            cnt[2] += 1
            return None
        if t + 20 > end:
            cnt[3] += 1
            return None
        if buf[t + 12] < 0x50:  # data offset under 5 words: not a real TCP header
            cnt[2] += 1
            return None
        cnt[0] += 1
        if buf[t + 13] & 4:
            cnt[1] += 1
        elif only_resets:
            return None
        # one unpack for IP and TCP headers together when nothing sits between them
        if etype == 0x0800:
            if ihl == 20:
                iplen, key, sport, dport, seq, ack, offx, flags, win = v4tcp(buf, p)
            else:
                iplen, key = buf[p + 2] << 8 | buf[p + 3], buf[p + 12:p + 20]
                sport, dport, seq, ack, offx, flags, win = tcp_unpack(buf, t)
            if iplen == 0:  # segmentation offload: the kernel leaves the length to the NIC
                iplen = origlen - (p - off)
            plen = iplen - ihl
            family = 4
        else:
            if not ext:
                plen, key, sport, dport, seq, ack, offx, flags, win = v6tcp(buf, p)
            else:
                plen, key = buf[p + 4] << 8 | buf[p + 5], buf[p + 8:p + 40]
                sport, dport, seq, ack, offx, flags, win = tcp_unpack(buf, t)
            if plen == 0:  # jumbogram or BIG TCP: only the frame length is left
                plen = origlen - (p - off) - 40
            plen -= ext
            family = 6
        thl = (offx >> 4) << 2
        pair = cache.get(key)
        if pair is None:
            if family == 4:
                pair = (ntop(af4, key[:4]), ntop(af4, key[4:]))
            else:
                pair = (ntop(af6, key[:16]), ntop(af6, key[16:]))
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[key] = pair
        plen = plen - thl if plen > thl else 0  # never negative, even with a lying IP length
        ts = a * k + b * inv + tsoff
        pkt: RstPacket = new(ts, name, ifindex, pkttype, family,  # type: ignore[assignment]
                             pair[0], sport, pair[1], dport, seq, ack, flags, win, thl - 20, plen,
                             vlan)
        return pkt

    return decode


class _Stream:
    """A read buffer over the file: `buf[pos:]` is unread, `base` is buf[0]'s file offset."""

    __slots__ = ("base", "buf", "chunk", "eof", "f", "pos")

    def __init__(self, f: Readable, head: bytes, chunk: int = 0) -> None:
        self.f, self.buf, self.pos, self.base, self.eof = f, head, 0, 0, False
        self.chunk = chunk  # 0: the module's _CHUNK

    def more(self, need: int) -> bool:
        """Read at least `need` more bytes unless the file ends first; False at end of file."""
        parts = [self.buf[self.pos:]]
        self.base += self.pos
        self.buf = b""  # let the old chunk go before the next one arrives
        got = 0
        while got < need or got == 0:
            chunk = self.f.read(max(self.chunk or _CHUNK, need - got))
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
            got += len(chunk)
        self.buf = parts[1] if len(parts) == 2 and not parts[0] else b"".join(parts)
        self.pos = 0
        return got > 0


def _truncated(st: PcapInfo, s: _Stream, what: str) -> None:
    st.truncated = True
    st.error = f"truncated {what} at byte {s.base + s.pos}"


def _read_pcap(s: _Stream, name: str, st: PcapInfo, mk: Callable[..., _Iface],
               sink: BatchSink | None, cnt: list[int]) -> Iterator[RstPacket]:
    end_, div = _PCAP_MAGIC[s.buf[:4]]
    major, _minor, _zone, _sigfigs, _snap, network = struct.unpack_from(end_ + "HHiIII", s.buf, 4)
    if major != 2:
        raise PcapError(f"{name}: unsupported pcap version {major}.{_minor}")
    lt = network & 0xFFFF  # the upper bits carry the FCS length, not the link type
    st.format, st.linktypes, st.ts_precision = "pcap", [lt], _PRECISION[div]
    iface = mk(lt, None, 1.0, 1 / div, 0)
    s.pos = 24
    if sink is not None:
        _batch_pcap(s, name, st, end_, iface, sink, cnt)
        return
    decode = iface.decode
    rec = struct.Struct(end_ + "IIII").unpack_from
    maxcap = MAX_CAPLEN
    n = 0
    try:
        while True:
            buf, pos, blen = s.buf, s.pos, len(s.buf)
            need = 16
            while pos + 16 <= blen:
                sec, frac, caplen, origlen = rec(buf, pos)
                if caplen > maxcap:
                    raise _too_big(name, s.base + pos, caplen)
                nxt = pos + 16 + caplen
                if nxt > blen:
                    need = nxt - blen
                    break
                n += 1
                pkt = decode(buf, pos + 16, caplen, origlen, sec, frac)
                pos = nxt
                if pkt is not None:
                    s.pos = pos
                    yield pkt
            s.pos = pos
            if not s.more(need):
                if s.pos < len(s.buf):
                    _truncated(st, s, "record")
                return
    finally:
        st.packets += n


def _too_big(name: str, at: int, caplen: int) -> PcapError:
    return PcapError(f"{name}: record at byte {at} claims {caplen} bytes (over 256 KiB): corrupt "
                     "or not a capture")


def _batch_pcap(s: _Stream, name: str, st: PcapInfo, end_: str, iface: _Iface, sink: BatchSink,
                cnt: list[int]) -> None:
    """_read_pcap for a sink: find where each record starts, and hand them over by the buffer."""
    cap = struct.Struct(end_ + "8xI").unpack_from
    ifaces = [iface]
    n = 0
    try:
        while True:
            buf, pos, blen = s.buf, s.pos, len(s.buf)
            found, pos = sink.find(buf, pos, False, end_)
            starts: list[int] = []
            add = starts.append
            need = 16
            last = blen - 16
            # the sink checks the lengths (256 KiB at most) of all records at once
            while pos <= last:
                nxt = pos + 16 + cap(buf, pos)[0]
                if nxt > blen:
                    need = nxt - blen
                    break
                add(pos)
                pos = nxt
            total = len(found) + len(starts)
            if total:
                pieces = [found, starts]
                done = sink(buf, pieces, False, end_, ifaces, cnt)
                n += done
                if done < total:
                    at = _nth(pieces, done)
                    raise _too_big(name, s.base + at, cap(buf, at)[0])
            if pos <= last and cap(buf, pos)[0] > MAX_CAPLEN:
                raise _too_big(name, s.base + pos, cap(buf, pos)[0])
            s.pos = pos
            if not s.more(need):
                if s.pos < len(s.buf):
                    _truncated(st, s, "record")
                return
    finally:
        st.packets += n


def _idb(body: bytes, e: str) -> tuple[int, int, str | None, int, int]:
    """Link type, snaplen, if_name, timestamp units per second and offset of an IDB body."""
    lt, _res, snaplen = struct.unpack_from(e + "HHI", body, 0)
    ifname, div, tsoff = None, 1_000_000, 0
    o = 8
    while o + 4 <= len(body):
        code, ln = struct.unpack_from(e + "HH", body, o)
        val = body[o + 4:o + 4 + ln]
        if code == 0:
            break
        if code == 2:
            ifname = val.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif code == 9 and ln >= 1:
            r = val[0]
            div = 2 ** (r & 0x7F) if r & 0x80 else 10 ** min(r, 30)
        elif code == 14 and ln >= 8:
            tsoff = struct.unpack_from(e + "q", val)[0]
        o += 4 + ((ln + 3) & ~3)
    return lt, snaplen, ifname, div, tsoff


def _read_pcapng(s: _Stream, name: str, st: PcapInfo, mk: Callable[..., _Iface],
                 sink: BatchSink | None, cnt: list[int]) -> Iterator[RstPacket]:
    st.format = "pcapng"
    e = "<"
    hdr = struct.Struct("<II").unpack_from
    epb = struct.Struct("<IIIII").unpack_from
    u32 = struct.Struct("<I").unpack_from
    ifaces: list[_Iface] = []
    decoders: list[_Decoder] = []
    snaplens: list[int] = []
    precisions: list[str] = []
    maxcap, maxblock = MAX_CAPLEN, _MAX_BLOCK
    batch: list[int] | None = [] if sink is not None else None
    pieces: list[Sequence[int]] = []  # runs the sink found at once, before `batch`
    n = 0

    def bad(what: str, at: int) -> PcapError:
        return PcapError(f"{name}: {what} at byte {s.base + at}: corrupt or not a capture")

    def check_epb(buf: bytes, pos: int) -> None:
        """Raise what the one-packet loop below raises for a malformed packet block."""
        bl = hdr(buf, pos)[1]
        ifid, _hi, _lo, caplen, _orig = epb(buf, pos + 8)
        if u32(buf, pos + bl - 4)[0] != bl:
            raise bad("packet block whose two lengths differ", pos)
        if caplen > bl - 32 or caplen > maxcap:
            raise bad(f"packet block claiming {caplen} bytes", pos)
        if ifid >= len(ifaces):
            raise bad(f"packet for undeclared interface {ifid}", pos)
        raise bad("packet block", pos)

    def flush(buf: bytes) -> None:
        nonlocal n
        if sink is not None and batch is not None and (batch or pieces):
            run = [*pieces, batch]
            total = sum(map(len, run))
            done = sink(buf, run, True, e, ifaces, cnt)
            n += done
            if done < total:
                check_epb(buf, _nth(run, done))
            pieces.clear()
            batch.clear()

    try:
        while True:
            buf, pos, blen = s.buf, s.pos, len(s.buf)
            need = 12
            fast = sink is not None  # let the sink find a run of packet blocks at once
            while pos + 12 <= blen:
                if fast and sink is not None and batch is not None:
                    fast = False
                    found, pos = sink.find(buf, pos, True, e)
                    if len(found):
                        if batch:
                            pieces.append(batch[:])
                            batch.clear()
                        pieces.append(found)
                    continue
                btype, bl = hdr(buf, pos)
                if btype == 6 and 32 <= bl <= maxblock and not bl & 3:  # EPB: nearly every block
                    nxt = pos + bl
                    if nxt > blen:
                        need = nxt - blen
                        break
                    if batch is not None:
                        batch.append(pos)
                        pos = nxt
                        continue
                    ifid, hi, lo, caplen, origlen = epb(buf, pos + 8)
                    if u32(buf, nxt - 4)[0] != bl:
                        raise bad("packet block whose two lengths differ", pos)
                    if caplen > bl - 32 or caplen > maxcap:
                        raise bad(f"packet block claiming {caplen} bytes", pos)
                    if ifid >= len(decoders):
                        raise bad(f"packet for undeclared interface {ifid}", pos)
                    n += 1
                    pkt = decoders[ifid](buf, pos + 28, caplen, origlen, hi, lo)
                    pos = nxt
                    if pkt is not None:
                        s.pos = pos
                        yield pkt
                    continue
                flush(buf)  # the blocks before this one belong to the section as it is now
                fast = sink is not None
                if btype == _SHB:
                    bom = buf[pos + 8:pos + 12]
                    if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                        raise bad("section header with an unknown byte-order magic", pos)
                    e = "<" if bom[0] == 0x4D else ">"
                    hdr = struct.Struct(e + "II").unpack_from
                    epb = struct.Struct(e + "IIIII").unpack_from
                    u32 = struct.Struct(e + "I").unpack_from
                    bl = hdr(buf, pos)[1]
                if bl < 12 or bl & 3 or bl > maxblock or (btype == 6 and bl < 32):
                    raise bad(f"block of type {btype:#x} with length {bl}", pos)
                if pos + bl > blen:
                    need = pos + bl - blen
                    break
                if u32(buf, pos + bl - 4)[0] != bl:
                    raise bad(f"block of type {btype:#x} whose two lengths differ", pos)
                if btype == _SHB:
                    if bl < 28 or struct.unpack_from(e + "H", buf, pos + 12)[0] != 1:
                        raise bad("unsupported section header", pos)
                    # interface ids restart with every section
                    ifaces, decoders, snaplens = [], [], []
                elif btype == _IDB:
                    if bl < 20:
                        raise bad("short interface block", pos)
                    lt, snap, ifname, div, tsoff = _idb(buf[pos + 8:pos + bl - 4], e)
                    ifaces.append(mk(lt, ifname, (1 << 32) / div, 1 / div, tsoff))
                    decoders.append(ifaces[-1].decode)
                    snaplens.append(snap)
                    if lt not in st.linktypes:
                        st.linktypes.append(lt)
                    precisions.append(_PRECISION.get(div, f"1/{div}s"))
                    st.ts_precision = precisions[0] if len(set(precisions)) == 1 else "mixed"
                elif btype == _SPB or btype == _OPB:
                    if not decoders or bl < (16 if btype == _SPB else 32):
                        raise bad("short packet block, or one before any interface", pos)
                    if btype == _SPB:  # no timestamp and no caplen: both must be inferred
                        ifid, hi, lo, origlen, off = 0, 0, 0, u32(buf, pos + 8)[0], pos + 12
                        caplen = min(origlen, bl - 16, snaplens[0] or maxcap)
                    else:
                        ifid = struct.unpack_from(e + "H", buf, pos + 8)[0]
                        hi, lo, caplen, origlen = struct.unpack_from(e + "IIII", buf, pos + 12)
                        off = pos + 28
                        if ifid >= len(decoders) or caplen > bl - 32:
                            raise bad("malformed packet block", pos)
                    n += 1
                    pkt = decoders[ifid](buf, off, caplen, origlen, hi, lo)
                    pos += bl
                    if pkt is not None:
                        s.pos = pos
                        yield pkt
                    continue
                pos += bl  # statistics, name resolution, comments, keys: not needed here
            flush(buf)
            s.pos = pos
            if not s.more(need):
                if s.pos < len(s.buf):
                    _truncated(st, s, "block")
                return
    finally:
        st.packets += n


def iter_resets(path_or_fileobj: Source, *, ifnames: Mapping[int, str] | None = None,
                default_ifname: str | None = None, info: PcapInfo | None = None,
                only_resets: bool = True) -> Iterator[RstPacket]:
    """Yield the TCP resets (every TCP segment with only_resets=False) of a pcap/pcapng file.

    Fills `info` as it goes; raises PcapError for anything unreadable, except a cut-short tail.
    """
    return _records(path_or_fileobj, ifnames, default_ifname, info, only_resets, None, 0)


def _records(src: Source, ifnames: Mapping[int, str] | None, default_ifname: str | None,
             info: PcapInfo | None, only_resets: bool, sink: BatchSink | None,
             chunk: int) -> Iterator[RstPacket]:
    """iter_resets, or with a sink: records go to it by the buffer, and only the packets of
    pcapng's rarer packet blocks (simple, obsolete) are yielded, each where it comes."""
    is_path = isinstance(src, (str, os.PathLike))
    if is_path:
        name = os.fspath(src)  # type: ignore[arg-type]
    else:
        name = str(getattr(src, "name", "<stream>"))
    st = info if info is not None else PcapInfo()
    st.path = name
    cache: dict[bytes, tuple[str, str]] = {}  # shared by all interfaces of the file
    cnt = [0, 0, 0, 0]  # tcp, resets, non_tcp, snapped

    def mk(lt: int, ifname: str | None, k: float, inv: float, tsoff: int) -> _Iface:
        label = ifname or default_ifname
        return _Iface(lt, label, k, inv, tsoff,
                      _decoder(lt, label, ifnames, only_resets, cnt, cache, k, inv, tsoff))

    try:
        with contextlib.ExitStack() as stack:
            if is_path:
                try:
                    f: Readable = stack.enter_context(open(name, "rb", buffering=0))
                except OSError as e:
                    raise PcapError(f"{name}: cannot open: {e.strerror or e}") from e
            else:
                f = src  # type: ignore[assignment]
            s = _Stream(f, b"", chunk)
            s.more(28)
            head = s.buf
            if not head:
                raise PcapError(f"{name}: empty file, not a capture")
            if head[:4] == b"\x0a\x0d\x0d\x0a":
                if len(head) < 28:
                    raise PcapError(f"{name}: pcapng section header cut short ({len(head)} bytes)")
                yield from _read_pcapng(s, name, st, mk, sink, cnt)
            elif head[:4] in _PCAP_MAGIC:
                if len(head) < 24:
                    raise PcapError(f"{name}: pcap file header cut short ({len(head)} bytes)")
                yield from _read_pcap(s, name, st, mk, sink, cnt)
            else:
                hint = " (gzip-compressed: decompress it first)" if head[:2] == b"\x1f\x8b" else ""
                raise PcapError(f"{name}: not a pcap or pcapng file "
                                f"(starts with {head[:4].hex()}){hint}")
    except PcapError as e:
        st.error = str(e)
        raise
    except (OSError, struct.error, IndexError, ValueError, OverflowError) as e:
        # the bounds checks should make these unreachable; the promise is PcapError only
        st.error = f"{name}: unreadable capture: {e}"
        raise PcapError(st.error) from e
    finally:
        st.tcp, st.resets, st.non_tcp, st.snapped = cnt


def read_resets(path: Source, **kw: object) -> tuple[list[RstPacket], PcapInfo]:
    """Read a whole capture: its resets (see iter_resets for keywords) and what was seen."""
    info = PcapInfo()
    return list(iter_resets(path, info=info, **kw)), info  # type: ignore[arg-type]


def ifnames_from_ip_link(text: str) -> dict[int, str]:
    """Map interface index to name from `ip -o link` (or `ip link`) output, for SLL2 captures."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        idx, sep, rest = line.partition(":")
        if sep and idx.strip().isdigit() and not line[:1].isspace():
            out[int(idx)] = rest.split(":", 1)[0].strip().split("@", 1)[0]
    return out


_FLAG_CHARS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"),
               (0x40, "E"), (0x80, "W"))
_DIRECTION = {0: "In", 1: "B", 2: "M", 3: "P", 4: "Out"}


def flag_string(flags: int) -> str:
    """TCP flags the way tcpdump prints them inside `Flags [...]`: "R.", "S", "P." ..."""
    return "".join(c for bit, c in _FLAG_CHARS if flags & bit) or "none"


def format_tcpdump_line(p: RstPacket, *, utc: bool = False) -> str:
    """The packet as `tcpdump -n -S` prints it (local time unless utc), without TCP option details.

    The interface column shows when the packet has an interface name or index.
    """
    sec = int(p.ts // 1)
    us = round((p.ts - sec) * 1e6)
    if us >= 1_000_000:
        sec, us = sec + 1, us - 1_000_000
    t = time.gmtime(sec) if utc else time.localtime(sec)
    out = [f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{us:06d} "]
    if p.ifname is not None or p.ifindex is not None:
        if p.pkttype is None:
            out.append(f"{p.ifname} ")
        else:  # as tcpdump prints LINUX_SLL2 records
            out.append(f"{p.ifname or '?':<5} {_DIRECTION.get(p.pkttype, '?'):<3} ")
    out.append(f"{'IP' if p.family == 4 else 'IP6'} {p.src}.{p.sport} > {p.dst}.{p.dport}: "
               f"Flags [{flag_string(p.flags)}]")
    if p.payload_len or p.flags & (SYN | FIN | RST):
        out.append(f", seq {p.seq}")
        if p.payload_len:
            out.append(f":{(p.seq + p.payload_len) & 0xFFFFFFFF}")
    if p.flags & ACK:
        out.append(f", ack {p.ack}")
    out.append(f", win {p.window}, length {p.payload_len}")
    return "".join(out)
