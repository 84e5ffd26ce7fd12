"""Reset counts of big captures at array speed, exactly as iter_resets reads them.

iter_resets builds one RstPacket per reset (a few microseconds each in CPython): fine for the
thousands of resets of an ordinary window, minutes for a flood of millions. aggregate_resets
reads the same records with the same reader (formats, checks, errors, cut-short tails), but hands
each buffer of records to numpy and decodes the common layouts all at once: Ethernet, Linux cooked
v1/v2 and raw IP, then IPv4 (options too) or IPv6 without extension headers, then TCP. Any other
record (802.1Q tags, IPv6 extension headers, non-TCP, headers cut by the snaplen) goes through
iter_resets' own decoder, one at a time. The result — resets per sender endpoint and peer, per
second and sender, the first resets as RstPacket — is what aggregate_packets computes from
iter_resets' packets, to the bit; memory stays flat whatever the number of packets.
"""

from __future__ import annotations

import math
import socket
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import numpy as np

from .pcap import (
    _MAX_BLOCK,
    MAX_CAPLEN,
    PcapInfo,
    RstPacket,
    Source,
    _Decoder,
    _decoder,
    _Iface,
    _records,
)

__all__ = ["Endpoint", "Pair", "ResetAggregate", "aggregate_packets", "aggregate_resets",
           "is_bare", "reset_class"]

ACK = 0x10
SAMPLE = 100
MAX_GROUPS = 200_000  # distinct keys a table may hold before it is given up (memory bound)

_CHUNK = 2 << 20  # bytes read at a time: each buffer's records are decoded together
_PAD = 128  # zero bytes after the buffer: header fields past a short record's end stay readable
_RAW = frozenset((101, 12, 14, 228, 229))
_FIND_MIN = 4096  # below this many bytes the reader's own walk is as quick

# A pair's key packs into 64 bits: kind (flags << 1 | bare) 9, interface id 5, source and
# destination address ids 17 each, source port 16. Ids are handed out per "epoch"; an epoch ends
# (its counts are turned into Python keys, and the ids start again) before the tables fill.
_ADDR_BITS, _IF_BITS = 17, 5
_ADDR_EPOCH = 1 << 15  # ids handed out before a new epoch: one buffer adds fewer than 2^16
_IF_MAX = 1 << _IF_BITS
_MERGE = 1 << 20  # pending (key, count) rows before they are merged
_SEC_SPAN = 1 << 32  # timeline seconds, relative to the epoch's base, that pack
_V6 = np.uint64(1 << 63)


def reset_class(flags: int, bare: bool) -> str:
    """What the packet alone says (the design notes' table): 'stray' without ACK, 'refusal' for a
    bare [R.] (seq 0, window 0, no options), else 'abort'."""
    if not flags & ACK:
        return "stray"
    return "refusal" if bare else "abort"


def is_bare(p: RstPacket) -> bool:
    """seq 0, window 0 and no TCP options: what a kernel sends where no socket answers."""
    return p.seq == 0 and p.window == 0 and p.options_len == 0


class Pair(NamedTuple):
    """A sender endpoint, the address its resets went to, and what the resets looked like."""

    ifname: str | None
    src: str
    sport: int
    dst: str
    flags: int  # the TCP flags byte
    bare: bool  # see is_bare

    @property
    def cls(self) -> str:
        """refusal, abort or stray (reset_class)."""
        return reset_class(self.flags, self.bare)


class Endpoint(NamedTuple):
    """A sender endpoint and what its resets looked like, all peers together."""

    ifname: str | None
    src: str
    sport: int
    flags: int
    bare: bool

    @property
    def cls(self) -> str:
        """refusal, abort or stray (reset_class)."""
        return reset_class(self.flags, self.bare)


@dataclass
class ResetAggregate:
    """The resets of a capture (between `start` and `end`, when given), counted."""

    info: PcapInfo
    resets: int = 0
    first_ts: float | None = None  # earliest and latest reset
    last_ts: float | None = None
    pairs: Counter[Pair] = field(default_factory=Counter)
    timeline: Counter[tuple[int, str]] = field(default_factory=Counter)  # (second, sender)
    sample: list[RstPacket] = field(default_factory=list)  # the first resets, in file order
    dropped: list[str] = field(default_factory=list)  # tables over max_groups keys, left empty

    def endpoints(self) -> Counter[Endpoint]:
        """Resets per sender endpoint and kind, all peers together."""
        out: Counter[Endpoint] = Counter()
        for p, n in self.pairs.items():
            out[Endpoint(p.ifname, p.src, p.sport, p.flags, p.bare)] += n
        return out

    def _add(self, p: RstPacket) -> None:
        self.resets += 1
        if self.first_ts is None or p.ts < self.first_ts:
            self.first_ts = p.ts
        if self.last_ts is None or p.ts > self.last_ts:
            self.last_ts = p.ts
        if "pairs" not in self.dropped:
            self.pairs[Pair(p.ifname, p.src, p.sport, p.dst, p.flags, is_bare(p))] += 1
        if "timeline" not in self.dropped:
            self.timeline[(int(p.ts // 1), p.src)] += 1

    def _bound(self, max_groups: int) -> None:
        for name in ("pairs", "timeline"):
            table: Counter[object] = getattr(self, name)
            if len(table) > max_groups:
                table.clear()
                self.dropped.append(name)


def _window(start: float | None, end: float | None) -> tuple[float, float]:
    return (-math.inf if start is None else start), (math.inf if end is None else end)


def aggregate_packets(packets: Iterable[RstPacket], *, info: PcapInfo | None = None,
                      start: float | None = None, end: float | None = None, sample: int = SAMPLE,
                      max_groups: int = MAX_GROUPS) -> ResetAggregate:
    """Count resets already read (iter_resets' packets): the meaning of aggregate_resets."""
    agg = ResetAggregate(info if info is not None else PcapInfo())
    lo, hi = _window(start, end)
    for p in packets:
        if p.is_rst and lo <= p.ts <= hi:
            agg._add(p)
            if len(agg.sample) < sample:
                agg.sample.append(p)
    agg._bound(max_groups)
    return agg


def aggregate_resets(path_or_fileobj: Source, *, ifnames: Mapping[int, str] | None = None,
                     default_ifname: str | None = None, info: PcapInfo | None = None,
                     start: float | None = None, end: float | None = None, sample: int = SAMPLE,
                     max_groups: int = MAX_GROUPS) -> ResetAggregate:
    """Count the resets of a pcap/pcapng file between `start` and `end` (epoch seconds, both
    included), equal to aggregate_packets(iter_resets(...)); keywords as iter_resets'.

    Raises PcapError where iter_resets would; a table with more than `max_groups` keys is left
    empty and named in `dropped`.
    """
    st = info if info is not None else PcapInfo()
    agg = ResetAggregate(st)
    fast = _Fast(agg, ifnames or {}, start, end, sample, max_groups)
    for p in _records(path_or_fileobj, ifnames, default_ifname, st, True, fast, _CHUNK):
        fast.packet(p)  # the rare packet blocks the reader decodes itself, in their place
    fast.finish()
    return agg


def _view(arr: np.ndarray, dtype: str) -> np.ndarray:
    """The `dtype` value starting at every byte of `arr`: fields at any offset in one gather."""
    size = np.dtype(dtype).itemsize
    return np.ndarray((len(arr) - size + 1,), dtype=dtype, buffer=arr, strides=(1,))


def _v6key(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """A 64-bit key for IPv6 addresses, top bit set (IPv4 keys are the address itself)."""
    h = hi * np.uint64(0x9E3779B97F4A7C15) ^ (lo * np.uint64(0xC2B2AE3D27D4EB4F) >> np.uint64(29))
    return (h >> np.uint64(1)) | _V6


class _Addresses:
    """Address keys to small ids, with the text of each, for one epoch.

    An open-addressing table (linear probing, at most a quarter full) looked up for all rows at
    once: most rows find their key in the first slot they try, the rest probe on in rounds.
    """

    def __init__(self) -> None:
        self.bits = 10
        self.slot_keys = np.zeros(1 << self.bits, np.uint64)
        self.slot_ids = np.full(1 << self.bits, -1, np.int64)  # -1: empty
        self.hi = np.empty(0, np.uint64)  # by id: the IPv6 address, to tell hash collisions
        self.lo = np.empty(0, np.uint64)
        self.keys: list[int] = []
        self.text: list[str] = []

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        return ((keys * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - self.bits)).astype(np.intp)

    def _find(self, keys: np.ndarray) -> np.ndarray:
        """Ids of `keys`, -1 for keys not in the table."""
        slot = self._slots(keys)
        ids = self.slot_ids[slot]
        todo = np.flatnonzero((ids >= 0) & (self.slot_keys[slot] != keys))
        mask = (1 << self.bits) - 1
        while len(todo):  # another key sits in that slot: try the next ones
            slot[todo] = (slot[todo] + 1) & mask
            ids[todo] = self.slot_ids[slot[todo]]
            todo = todo[(ids[todo] >= 0) & (self.slot_keys[slot[todo]] != keys[todo])]
        return ids

    def _insert(self, key: int, i: int) -> None:
        mask = (1 << self.bits) - 1
        slot = int(self._slots(np.array([key], np.uint64))[0])
        while self.slot_ids[slot] >= 0:
            slot = (slot + 1) & mask
        self.slot_keys[slot], self.slot_ids[slot] = key, i

    def ids(self, keys: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Ids of `keys` (hi/lo hold the IPv6 addresses, 0 for IPv4), adding the new ones."""
        ids = self._find(keys)
        new = np.flatnonzero(ids < 0)
        if len(new):
            fresh, first = np.unique(keys[new], return_index=True)
            rows = new[first]
            base = len(self.text)
            for key, r in zip(fresh.tolist(), rows.tolist()):
                if key >= 1 << 63:
                    packed = int(hi[r]).to_bytes(8, "big") + int(lo[r]).to_bytes(8, "big")
                    self.text.append(socket.inet_ntop(socket.AF_INET6, packed))
                else:
                    self.text.append(socket.inet_ntop(socket.AF_INET, key.to_bytes(4, "big")))
            self.keys += fresh.tolist()
            self.hi = np.concatenate((self.hi, hi[rows]))
            self.lo = np.concatenate((self.lo, lo[rows]))
            if len(self.keys) * 4 > 1 << self.bits:
                while len(self.keys) * 4 > 1 << self.bits:
                    self.bits += 1
                self.slot_keys = np.zeros(1 << self.bits, np.uint64)
                self.slot_ids = np.full(1 << self.bits, -1, np.int64)
                for i, key in enumerate(self.keys):
                    self._insert(key, i)
            else:
                for i, key in enumerate(fresh.tolist(), base):
                    self._insert(key, i)
            ids[new] = self._find(keys[new])
        return ids


class _Counts:
    """(u64 key, count) pairs of one table, merged now and then to stay small."""

    def __init__(self) -> None:
        self.keys: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.rows = 0
        self.merged = 0

    def add(self, keys: np.ndarray, counts: np.ndarray | None = None) -> None:
        """Count `keys` (or add `counts` to keys already distinct)."""
        if counts is None:
            k, c = np.unique(keys, return_counts=True)
        else:
            k, c = keys, counts
        self.keys.append(k)
        self.counts.append(c)
        self.rows += len(k)
        if self.rows > max(_MERGE, 2 * self.merged):
            self.merge()

    def merge(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.keys) > 1:
            keys = np.concatenate(self.keys)
            k = np.unique(keys)  # a plain sort: quicker than asking np.unique for the inverse
            c = np.bincount(np.searchsorted(k, keys), weights=np.concatenate(self.counts),
                            minlength=len(k))
            self.keys, self.counts = [k], [c.astype(np.int64)]
            self.rows = self.merged = len(k)
        if not self.keys:
            return np.empty(0, np.uint64), np.empty(0, np.int64)
        return self.keys[0], self.counts[0]

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        k, c = self.merge()
        self.keys, self.counts, self.rows, self.merged = [], [], 0, 0
        return k, c


class _Fast:
    """The reader's batch sink: decodes buffers of records into the aggregate's tables."""

    def __init__(self, agg: ResetAggregate, ifnames: Mapping[int, str], start: float | None,
                 end: float | None, sample: int, max_groups: int) -> None:
        self.agg, self.ifnames, self.sample, self.max_groups = agg, ifnames, sample, max_groups
        self.lo, self.hi = _window(start, end)
        self.quiet: dict[_Iface, _Decoder] = {}
        self.new_epoch()

    def new_epoch(self) -> None:
        self.addrs = _Addresses()
        self.ifids: dict[str | None, int] = {}
        self.pairs, self.times = _Counts(), _Counts()
        self.tbase: int | None = None

    # -- the slow path: one packet at a time, as aggregate_packets

    def packet(self, p: RstPacket) -> None:
        """A reset decoded by the reader itself: counted as aggregate_packets counts it."""
        if self.lo <= p.ts <= self.hi:
            self.agg._add(p)
            if len(self.agg.sample) < self.sample:
                self.agg.sample.append(p)

    def finish(self) -> None:
        self.end_epoch()
        self.agg._bound(self.max_groups)

    def end_epoch(self) -> None:
        """Turn the epoch's packed counts into the aggregate's keys, then start ids again."""
        agg = self.agg
        text = np.empty(len(self.addrs.text), object)
        text[:] = self.addrs.text
        names = np.empty(max(len(self.ifids), 1), object)
        for name, i in self.ifids.items():
            names[i] = name
        mask = np.uint64((1 << _ADDR_BITS) - 1)
        keys, counts = self.pairs.take()
        if "pairs" not in agg.dropped and len(keys):
            kind = keys >> np.uint64(55)
            cols = (names[(keys >> np.uint64(50) & np.uint64(_IF_MAX - 1)).astype(np.intp)],
                    text[(keys >> np.uint64(33) & mask).astype(np.intp)],
                    keys & np.uint64(0xFFFF),
                    text[(keys >> np.uint64(16) & mask).astype(np.intp)],
                    kind >> np.uint64(1), (kind & np.uint64(1)).astype(bool))
            made = map(partial(tuple.__new__, Pair), zip(*(c.tolist() for c in cols)))
            agg.pairs.update(dict(zip(made, counts.tolist())))
        keys, counts = self.times.take()
        if "timeline" not in agg.dropped and len(keys) and self.tbase is not None:
            secs = (keys >> np.uint64(_ADDR_BITS)).astype(np.int64) + int(self.tbase)
            senders = text[(keys & mask).astype(np.intp)]
            agg.timeline.update(dict(zip(zip(secs.tolist(), senders.tolist()),
                                         counts.tolist())))
        self.agg._bound(self.max_groups)
        self.new_epoch()

    # -- the fast path

    def find(self, buf: bytes, pos: int, ng: bool, e: str) -> tuple[Sequence[int], int]:
        """The records that follow each other from `pos`, found all at once (see BatchSink).

        Candidates are the places that look like a record header: a packet block's type, aligned
        (pcapng), or the high bytes of the first record's seconds and a zero top byte of the
        captured length (pcap). Each candidate's own length says where the next record starts;
        keeping those that another points at removes the look-alikes inside packet data, and
        the run is taken only as far as each record ends exactly where the next one starts: from
        a true first record, by induction, every record of the run is true. Whatever the
        candidates miss is left to the reader's own walk.
        """
        blen = len(buf)
        if blen - pos < _FIND_MIN:
            return (), pos
        arr = np.frombuffer(buf, np.uint8)
        if ng:
            words = np.frombuffer(buf, e + "u4", count=(blen - pos) // 4, offset=pos)
            at = np.flatnonzero(words[:-1] == 6)
            size = words[at + 1].astype(np.int64)
            ok = (size >= 32) & (size <= _MAX_BLOCK) & ((size & 3) == 0)
            c = pos + 4 * at[ok]
            nxt = c + size[ok]
        else:
            m = blen - pos - 15  # places where a whole header fits
            hi, lo, top = (3, 2, 11) if e == "<" else (0, 1, 8)
            look = arr[pos + hi:pos + hi + m] == arr[pos + hi]
            look &= arr[pos + lo:pos + lo + m] == arr[pos + lo]
            look &= arr[pos + top:pos + top + m] == 0
            c = pos + np.flatnonzero(look)
            nxt = c + 16 + _view(arr, e + "u4")[c + 8]
        pointed = np.zeros(blen + 1, bool)
        pointed[nxt[nxt <= blen]] = True
        keep = pointed[c]
        keep[c == pos] = True
        c, nxt = c[keep], nxt[keep]
        if not len(c) or c[0] != pos:
            return (), pos
        brk = np.flatnonzero((nxt[:-1] != c[1:]) | (nxt[:-1] > blen))
        k = int(brk[0]) + 1 if len(brk) else len(c)
        if nxt[k - 1] > blen:
            k -= 1
        if k == 0:
            return (), pos
        return c[:k], int(nxt[k - 1])

    def __call__(self, buf: bytes, pieces: list[Sequence[int]], ng: bool, e: str,
                 ifaces: list[_Iface], cnt: list[int]) -> int:
        """Decode one buffer's records; returns how many were well-formed (all but a bad tail)."""
        if len(self.addrs.text) >= _ADDR_EPOCH or len(self.ifids) >= _IF_MAX // 2:
            self.end_epoch()
        blen = len(buf)
        arr = np.empty(blen + _PAD, np.uint8)
        arr[:blen] = np.frombuffer(buf, np.uint8)
        arr[blen:] = 0
        self.arr = arr
        self.be16, self.be32, self.be64 = _view(arr, ">u2"), _view(arr, ">u4"), _view(arr, ">u8")
        st = np.concatenate([np.asarray(x, np.int64) for x in pieces if len(x)])
        h32 = _view(arr, e + "u4")
        ifid = None
        if ng:
            bl = h32[st + 4].astype(np.int64)
            ifid = h32[st + 8]
            a, b = h32[st + 12], h32[st + 16]
            cap, orig = h32[st + 20].astype(np.int64), h32[st + 24]
            bad = ((h32[st + bl - 4] != bl) | (cap > bl - 32) | (cap > MAX_CAPLEN)
                   | (ifid >= len(ifaces)))
            off = st + 28
        else:
            a, b = h32[st], h32[st + 4]
            cap, orig = h32[st + 8].astype(np.int64), h32[st + 12]
            bad = cap > MAX_CAPLEN
            off = st + 16
        done = len(st)
        if bad.any():
            done = int(bad.argmax())
            off, cap, orig, a, b = off[:done], cap[:done], orig[:done], a[:done], b[:done]
            ifid = ifid[:done] if ifid is not None else None
        need = self.sample - len(self.agg.sample)
        picks: list[tuple[int, RstPacket]] = []
        if ifid is None or len(ifaces) == 1:
            picks += self._group(buf, arr, off, cap, orig, a, b, None, ifaces[0], cnt, need)
        else:
            for i in np.flatnonzero(np.bincount(ifid, minlength=len(ifaces))).tolist():
                rows = np.flatnonzero(ifid == i)
                picks += self._group(buf, arr, off[rows], cap[rows], orig[rows], a[rows],
                                     b[rows], rows, ifaces[i], cnt, need)
        if picks:
            picks.sort(key=lambda rp: rp[0])
            self.agg.sample += [p for _, p in picks[:need]]
        self.agg._bound(self.max_groups)
        return done

    def _group(self, buf: bytes, arr: np.ndarray, off: np.ndarray, cap: np.ndarray,
               orig: np.ndarray, a: np.ndarray, b: np.ndarray, rows: np.ndarray | None,
               iface: _Iface, cnt: list[int], need: int) -> list[tuple[int, RstPacket]]:
        """Records of one interface: the common layouts at once, the others one by one.

        Returns the resets that may go to the sample: (record number in the buffer, packet).
        """
        lt = iface.lt
        n = len(off)
        be16, be32, be64 = self.be16, self.be32, self.be64
        ifindex = None
        if lt == 1:
            etype, p = be16[off + 12], off + 14
        elif lt == 276:
            etype, ifindex, p = be16[off], be32[off + 4], off + 20
        elif lt == 113:
            etype, p = be16[off + 14], off + 16
        elif lt in _RAW:
            ver = arr[off] >> 4
            etype = np.where(ver == 4, 0x0800, np.where(ver == 6, 0x86DD, 0))
            p = off
        else:  # BSD loopback and the rest: rare on Linux, left to the exact decoder
            etype, p = np.zeros(n, np.uint16), off
        end = off + cap
        hd = be64[p]  # IPv4: version/IHL .. fragment; IPv6: version .. next header, hop limit
        ver = hd >> np.uint64(60)
        ihl = ((hd >> np.uint64(56)).astype(np.int64) & 15) << 2
        ok4 = ((etype == 0x0800) & (ver == 4) & (ihl >= 20) & (arr[p + 9] == 6)
               & ((hd & np.uint64(0x1FFF)) == 0) & (p + ihl + 20 <= end))
        ok6 = ((etype == 0x86DD) & (ver == 6) & ((hd >> np.uint64(8) & np.uint64(0xFF)) == 6)
               & (p + 60 <= end))
        t = p + np.where(ok4, ihl, 40)
        w3 = be32[t + 12]  # data offset, flags, window
        simple = (ok4 | ok6) & (w3 >= 0x50000000)
        rst = simple & ((w3 & 0x40000) != 0)
        n_simple = int(np.count_nonzero(simple))
        cnt[0] += n_simple
        picks: list[tuple[int, RstPacket]] = []
        ri = np.flatnonzero(rst)
        if len(ri):
            picks = self._resets(buf, ri, off, cap, orig, a, b, p, t, w3, ok6, ifindex, rows,
                                 iface, cnt, need)
        if n_simple < n:  # the other records, through the exact decoder
            decode, lo, hi = iface.decode, self.lo, self.hi
            others = np.flatnonzero(~simple)
            took = 0
            for r, o, c, og, x, y in zip(others.tolist(), off[others].tolist(),
                                         cap[others].tolist(), orig[others].tolist(),
                                         a[others].tolist(), b[others].tolist()):
                pkt = decode(buf, o, c, og, x, y)
                if pkt is not None and lo <= pkt.ts <= hi:
                    self.agg._add(pkt)
                    if took < need:
                        took += 1
                        picks.append((r if rows is None else int(rows[r]), pkt))
        return picks

    def _resets(self, buf: bytes, ri: np.ndarray, off: np.ndarray, cap: np.ndarray,
                orig: np.ndarray, a: np.ndarray, b: np.ndarray, p: np.ndarray, t: np.ndarray,
                w3: np.ndarray, ok6: np.ndarray, ifindex: np.ndarray | None,
                rows: np.ndarray | None, iface: _Iface, cnt: list[int],
                need: int) -> list[tuple[int, RstPacket]]:
        """Count the resets `ri` (simple records, RST set) that fall in the window."""
        cnt[1] += len(ri)
        ts = a[ri].astype(np.float64) * iface.k + b[ri].astype(np.float64) * iface.inv
        ts = ts + iface.tsoff
        inside = (ts >= self.lo) & (ts <= self.hi)
        if not inside.all():
            ri, ts = ri[inside], ts[inside]
            if not len(ri):
                return []
        agg = self.agg
        agg.resets += len(ri)
        lo, hi = float(ts.min()), float(ts.max())
        agg.first_ts = lo if agg.first_ts is None else min(agg.first_ts, lo)
        agg.last_ts = hi if agg.last_ts is None else max(agg.last_ts, hi)

        arr_p, arr_t, w3 = p[ri], t[ri], w3[ri]
        be32, be64 = self.be32, self.be64
        v6 = np.flatnonzero(ok6[ri])
        both = be64[arr_p + 12]  # IPv4 source and destination
        src = both >> np.uint64(32)
        dst = both & np.uint64(0xFFFFFFFF)
        shi = np.zeros(len(ri), np.uint64)
        slo, dhi, dlo = shi.copy(), shi.copy(), shi.copy()
        if len(v6):
            q = arr_p[v6]
            shi[v6], slo[v6], dhi[v6], dlo[v6] = be64[q + 8], be64[q + 16], be64[q + 24], \
                be64[q + 32]
            src[v6] = _v6key(shi[v6], slo[v6])
            dst[v6] = _v6key(dhi[v6], dlo[v6])
        sid = self.addrs.ids(src, shi, slo)
        did = self.addrs.ids(dst, dhi, dlo)
        ifid = self._ifids(ifindex[ri] if ifindex is not None else None, iface, len(ri))
        # rows whose key cannot pack are counted one by one, exactly: ids past their bits
        # (never with the epochs' limits, but cheap to make sure), IPv6 hash collisions
        exact = (sid >= 1 << _ADDR_BITS) | (did >= 1 << _ADDR_BITS) | (ifid >= _IF_MAX)
        if len(v6):
            A = self.addrs
            exact[v6] |= ((A.hi[sid[v6]] != shi[v6]) | (A.lo[sid[v6]] != slo[v6])
                          | (A.hi[did[v6]] != dhi[v6]) | (A.lo[did[v6]] != dlo[v6]))
        clash = np.flatnonzero(exact)
        ports = be32[arr_t]
        seq = be32[arr_t + 4]
        flags = (w3 >> 16) & 0xFF
        bare = (seq == 0) & ((w3 & 0xF000FFFF) == 0x50000000)
        kind = (flags << 1 | bare).astype(np.uint64)
        key = ((kind << np.uint64(55)) | (ifid << np.uint64(50))
               | (sid.astype(np.uint64) << np.uint64(33)) | (did.astype(np.uint64) << np.uint64(16))
               | (ports >> 16).astype(np.uint64))
        sec = np.floor(ts)
        if self.tbase is None:
            self.tbase = math.floor(lo) - (1 << 31)
        keep = None if not len(clash) else ~exact
        if "pairs" not in agg.dropped:
            self.pairs.add(key if keep is None else key[keep])
            if len(self.pairs.keys) == 1 and self.pairs.merged > self.max_groups:
                agg.dropped.append("pairs")
                agg.pairs.clear()
                self.pairs = _Counts()
        if "timeline" not in agg.dropped:
            self._timeline(sec, sid, keep, math.floor(lo), math.floor(hi))
            if len(self.times.keys) == 1 and self.times.merged > self.max_groups:
                agg.dropped.append("timeline")
                agg.timeline.clear()
                self.times = _Counts()
        picks: list[tuple[int, RstPacket]] = []
        if len(clash) or need > 0:
            # these records were counted above already: decode them without counting again
            decode = self.quiet.get(iface)
            if decode is None:
                decode = self.quiet[iface] = _decoder(iface.lt, iface.ifname, self.ifnames, True,
                                                      [0, 0, 0, 0], {}, iface.k, iface.inv,
                                                      iface.tsoff)
            agg.resets -= len(clash)
            for i in clash.tolist():
                r = int(ri[i])
                pkt = decode(buf, int(off[r]), int(cap[r]), int(orig[r]), int(a[r]), int(b[r]))
                if pkt is not None:
                    agg._add(pkt)
            for r in ri[:need].tolist():
                pkt = decode(buf, int(off[r]), int(cap[r]), int(orig[r]), int(a[r]), int(b[r]))
                if pkt is not None:
                    picks.append((r if rows is None else int(rows[r]), pkt))
        return picks

    def _timeline(self, sec: np.ndarray, sid: np.ndarray, keep: np.ndarray | None, first: int,
                  last: int) -> None:
        """Count resets per (second, sender) into the timeline table."""
        assert self.tbase is not None
        if keep is not None:
            sec, sid = sec[keep], sid[keep]
        na = len(self.addrs.text)
        base = first - self.tbase
        if (0 <= base and last - self.tbase < _SEC_SPAN
                and (last - first + 1) * na <= 4 * len(sec) + 65536):
            # a few seconds and senders: count by index, without sorting
            c = np.bincount((sec - first).astype(np.intp) * na + sid)
            nz = np.flatnonzero(c)
            rel = (nz // na + base).astype(np.uint64)
            self.times.add((rel << np.uint64(_ADDR_BITS)) | (nz % na).astype(np.uint64), c[nz])
            return
        rel = sec - self.tbase
        packs = (rel >= 0) & (rel < _SEC_SPAN)
        if not packs.all():  # seconds far from the rest: counted one by one
            odd = np.flatnonzero(~packs)
            text = self.addrs.text
            for s, i in zip(sec[odd].tolist(), sid[odd].tolist()):
                self.agg.timeline[(int(s), text[i])] += 1
            rel, sid = rel[packs], sid[packs]
        self.times.add((rel.astype(np.uint64) << np.uint64(_ADDR_BITS)) | sid.astype(np.uint64))

    def _ifids(self, ifindex: np.ndarray | None, iface: _Iface, n: int) -> np.ndarray:
        """The interface id of each reset: its pcapng interface, or its SLL2 interface index."""
        if ifindex is None:
            return np.full(n, self._ifid(iface.ifname), np.uint64)
        present = np.unique(ifindex) if ifindex.max() >= 4096 else \
            np.flatnonzero(np.bincount(ifindex))
        lut = {int(x): self._ifid(self.ifnames.get(int(x), iface.ifname)) for x in present}
        if len(lut) == 1:
            return np.full(n, next(iter(lut.values())), np.uint64)
        if ifindex.max() < 4096:
            table = np.zeros(int(ifindex.max()) + 1, np.uint64)
            for x, i in lut.items():
                table[x] = i
            return table[ifindex]
        keys = np.array(sorted(lut), np.uint32)
        vals = np.array([lut[k] for k in sorted(lut)], np.uint64)
        return vals[np.searchsorted(keys, ifindex)]

    def _ifid(self, name: str | None) -> int:
        i = self.ifids.get(name)
        if i is None:
            i = self.ifids[name] = len(self.ifids)  # past _IF_MAX: those rows go the exact way
        return i
