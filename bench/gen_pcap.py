"""Write a reproducible capture of TCP resets, as `tcpdump -s 128` would on a busy Linux host.

    python3 bench/gen_pcap.py OUT.pcap -n 1000000 [--link en10mb|sll2] [--format pcap|pcapng]
                              [--seed 1] [--odd 0.0] [--truncate BYTES]

Every packet is a reset seen on one host: refusals from closed service ports ([R.] seq 0, win 0),
a port scan answered with refusals, aborts ([R.] with a window and timestamp options), strays
([R] without ACK) and resets the host received. About 30% are IPv6. Addresses are 198.18.0.0/24
and fd00::/8 (127.0.0.1 and ::1 on `lo`); ports are service ports against Linux ephemeral ports.
`--odd` mixes in that share of records the fast reader must hand to the exact one (802.1Q tags,
IPv4 options, IPv6 extension headers, UDP, later fragments, headers cut by the snaplen).
The same seed always gives the same bytes. Needs numpy.
"""

from __future__ import annotations

import argparse
import ipaddress
import struct
import sys
from pathlib import Path

import numpy as np

BATCH = 500_000
T0 = 1_700_000_000
RATE = 100_000.0  # resets per second, on average
LOCAL4, LOCAL6 = "198.18.0.10", "fd00::10"
SERVICE_PORTS = np.array([7211, 8080, 5432, 6379, 9200, 443, 3306, 11211], dtype=np.uint16)
LINKS = {"en10mb": 1, "sll2": 276}
IFINDEX_LO, IFINDEX_ETH = 1, 2
IP_LINK = ("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT\n"
           "2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\n")

# kinds of reset, with their share of the capture
REFUSED, SCAN, ABORT, STRAY, RECEIVED = range(5)
SHARES = np.array([0.45, 0.10, 0.20, 0.10, 0.15])


def _addrs4(values: np.ndarray) -> np.ndarray:
    return values.astype(">u4").view(np.uint8).reshape(-1, 4)


def _peers(rng: np.random.Generator, n: int, v6: np.ndarray, lo: np.ndarray, scan: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """(local, peer) addresses as 16-byte rows (IPv4 in the first 4 bytes)."""
    local = np.zeros((n, 16), np.uint8)
    peer = np.zeros((n, 16), np.uint8)
    host = rng.integers(11, 250, n)  # peers: .11 to .249, a few dozen busy ones
    host = np.where(rng.random(n) < 0.7, 11 + host % 24, host)
    host = np.where(scan, 250 + (host & 1), host)  # two scanners
    base4 = int(ipaddress.IPv4Address("198.18.0.0"))
    local[:, :4] = _addrs4(np.full(n, int(ipaddress.IPv4Address(LOCAL4)), np.uint32))
    peer[:, :4] = _addrs4((base4 + host).astype(np.uint32))
    loop4 = _addrs4(np.full(n, 0x7F000001, np.uint32))
    local[lo, :4] = loop4[lo]
    peer[lo, :4] = loop4[lo]
    l6 = np.frombuffer(ipaddress.IPv6Address(LOCAL6).packed, np.uint8)
    p6 = np.tile(np.frombuffer(ipaddress.IPv6Address("fd00::").packed, np.uint8), (n, 1))
    p6[:, 14] = host >> 8
    p6[:, 15] = host & 0xFF
    p6[:, 7] = rng.integers(0, 4, n)  # a few /64s
    one6 = np.frombuffer(ipaddress.IPv6Address("::1").packed, np.uint8)
    local[v6] = l6
    peer[v6] = p6[v6]
    local[v6 & lo] = one6
    peer[v6 & lo] = one6
    return local, peer


def _headers(rng: np.random.Generator, n: int, kind: np.ndarray, v6: np.ndarray,
             lo: np.ndarray) -> dict[str, np.ndarray]:
    """Per-packet field values."""
    local, peer = _peers(rng, n, v6, lo, kind == SCAN)
    service = SERVICE_PORTS[rng.integers(0, len(SERVICE_PORTS), n)]
    eph = rng.integers(32768, 61000, n).astype(np.uint16)
    sent = kind != RECEIVED
    src = np.where(sent[:, None], local, peer)
    dst = np.where(sent[:, None], peer, local)
    sport = np.where(kind == SCAN, rng.integers(1, 1025, n), service).astype(np.uint16)
    dport = np.where(kind == SCAN, 50123, eph).astype(np.uint16)
    flags = np.full(n, 0x14, np.uint8)  # RST|ACK
    flags[kind == STRAY] = 0x04
    seq = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    ack = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    win = rng.integers(64, 65535, n).astype(np.uint16)
    refusal = (kind == REFUSED) | (kind == SCAN)
    seq[refusal] = 0
    win[refusal | (kind == STRAY)] = 0
    ack[kind == STRAY] = 0
    # aborts (and half of the received resets) carry NOP NOP TS: 12 bytes of options
    opts = (kind == ABORT) | ((kind == RECEIVED) & (rng.random(n) < 0.5))
    recv_refused = (kind == RECEIVED) & ~opts
    seq[recv_refused] = 0
    win[recv_refused] = 0
    return {"src": src, "dst": dst, "sport": sport, "dport": dport, "seq": seq, "ack": ack,
            "flags": flags, "win": win, "opts": opts, "sent": sent,
            "tsval": rng.integers(0, 1 << 32, (n, 2), dtype=np.uint64).astype(np.uint32)}


def _put(rows: np.ndarray, at: int, values: np.ndarray, dtype: str) -> None:
    b = np.ascontiguousarray(values.astype(dtype)).view(np.uint8).reshape(len(values), -1)
    rows[:, at:at + b.shape[1]] = b


def _frames(h: dict[str, np.ndarray], idx: np.ndarray, v6: bool, opts: bool, link: int,
            lo: np.ndarray) -> np.ndarray:
    """The frames of packets `idx`, all of one layout, as rows of bytes."""
    n = len(idx)
    olen = 12 if opts else 0
    iplen = (40 if v6 else 20) + 20 + olen
    l2 = 14 if link == 1 else 20
    rows = np.zeros((n, l2 + iplen), np.uint8)
    etype = 0x86DD if v6 else 0x0800
    if link == 1:
        rows[:, 0:6] = (0x02, 0, 0, 0, 0, 0x01)
        rows[:, 6:12] = (0x02, 0, 0, 0, 0, 0x02)
        rows[:, 12:14] = (etype >> 8, etype & 0xFF)
        rows[lo[idx], :12] = 0
    else:
        rows[:, 0:2] = (etype >> 8, etype & 0xFF)
        ifindex = np.where(lo[idx], IFINDEX_LO, IFINDEX_ETH)
        _put(rows, 4, ifindex, ">u4")
        rows[:, 8:10] = (0x00, 0x01)  # ARPHRD_ETHER
        rows[lo[idx], 8:10] = (0x03, 0x04)  # ARPHRD_LOOPBACK (772)
        rows[:, 10] = np.where(h["sent"][idx] & ~lo[idx], 4, 0)  # outgoing / to us
        rows[:, 11] = 6
    p = l2
    if v6:
        rows[:, p] = 0x60
        _put(rows, p + 4, np.full(n, 20 + olen), ">u2")
        rows[:, p + 6] = 6
        rows[:, p + 7] = 64
        rows[:, p + 8:p + 24] = h["src"][idx]
        rows[:, p + 24:p + 40] = h["dst"][idx]
        t = p + 40
    else:
        rows[:, p] = 0x45
        _put(rows, p + 2, np.full(n, iplen), ">u2")
        rows[:, p + 6] = 0x40  # DF
        rows[:, p + 8] = 64
        rows[:, p + 9] = 6
        rows[:, p + 12:p + 16] = h["src"][idx, :4]
        rows[:, p + 16:p + 20] = h["dst"][idx, :4]
        t = p + 20
    _put(rows, t, h["sport"][idx], ">u2")
    _put(rows, t + 2, h["dport"][idx], ">u2")
    _put(rows, t + 4, h["seq"][idx], ">u4")
    _put(rows, t + 8, h["ack"][idx], ">u4")
    rows[:, t + 12] = (5 + olen // 4) << 4
    rows[:, t + 13] = h["flags"][idx]
    _put(rows, t + 14, h["win"][idx], ">u2")
    if opts:
        rows[:, t + 20:t + 24] = (1, 1, 8, 10)
        _put(rows, t + 24, h["tsval"][idx], ">u4")
    return rows


def _odd_frames(rng: np.random.Generator, n: int, link: int) -> list[bytes]:
    """Records off the common layouts: each is handed to the exact decoder."""
    out = []
    for i in range(n):
        sel = int(rng.integers(0, 6))
        src4, dst4 = bytes([198, 18, 0, 10]), bytes([198, 18, 0, 11 + i % 50])
        tcp = struct.pack("!HHIIBBHHH", 7211, 32768 + i % 20000, 0, i, 0x50, 0x14, 0, 0, 0)
        etype = 0x0800
        if sel == 0:  # IPv4 with 4 bytes of options
            ip = struct.pack("!BBHHHBBH4s4s", 0x46, 0, 44, 0, 0x4000, 64, 6, 0, src4, dst4)
            pkt = ip + b"\x01\x01\x01\x00" + tcp
        elif sel == 1:  # IPv6 with a hop-by-hop header
            hop = bytes([6, 0]) + bytes(6)
            pkt = struct.pack("!IHBB16s16s", 6 << 28, 28, 0, 64, bytes(15) + b"\x01",
                              bytes(15) + b"\x01") + hop + tcp
            etype = 0x86DD
        elif sel == 2:  # UDP
            pkt = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, src4, dst4) + bytes(8)
        elif sel == 3:  # a later fragment
            pkt = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 185, 64, 6, 0, src4, dst4) + tcp
        elif sel == 4:  # an ACK, not a reset
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src4, dst4)
            pkt = ip + tcp[:13] + b"\x10" + tcp[14:]
        else:  # cut by the snaplen
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src4, dst4)
            pkt = (ip + tcp)[:30]
        if link == 1:
            tag = struct.pack("!HH", 0x8100, 100 + i % 7) if i % 3 == 0 else b""
            out.append(b"\x02" * 6 + b"\x04" * 6 + tag + struct.pack("!H", etype) + pkt)
        else:
            out.append(struct.pack("!HHIHBB8s", etype, 0, IFINDEX_ETH, 1, 4, 6, b"") + pkt)
    return out


def _batch(rng: np.random.Generator, n: int, link: int, t_start: float,
           odd: float) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, float]:
    """One batch: per-layout frame rows, which layout each packet has, its timestamps (us)."""
    kind = rng.choice(len(SHARES), n, p=SHARES)
    v6 = rng.random(n) < 0.3
    lo = rng.random(n) < 0.2
    lo &= kind != SCAN
    h = _headers(rng, n, kind, v6, lo)
    layout = v6.astype(np.int64) * 2 + h["opts"]
    if odd > 0:
        layout[rng.random(n) < odd] = 4
    parts: list[np.ndarray] = []
    for code in range(4):
        idx = np.flatnonzero(layout == code)
        parts.append(_frames(h, idx, bool(code & 2), bool(code & 1), link, lo))
    gaps = rng.exponential(1e6 / RATE, n)
    us = (t_start * 1e6 + np.cumsum(gaps)).astype(np.int64)
    return parts, layout, us, float(us[-1]) / 1e6 if n else t_start


def _records(frames: list[np.ndarray], layout: np.ndarray, odd: list[bytes], us: np.ndarray,
             fmt: str) -> bytes:
    """The batch's records, in packet order, as pcap records or pcapng EPBs."""
    n = len(layout)
    caplen = np.zeros(n, np.int64)
    for code, rows in enumerate(frames):
        caplen[layout == code] = rows.shape[1]
    odd_idx = np.flatnonzero(layout == 4)
    for j, i in enumerate(odd_idx):
        caplen[i] = len(odd[j])
    if fmt == "pcap":
        head, pad = 16, np.zeros(n, np.int64)
    else:
        head, pad = 28, (-caplen) % 4
    size = head + caplen + pad + (4 if fmt == "pcapng" else 0)
    start = np.concatenate(([0], np.cumsum(size)[:-1]))
    out = np.zeros(int(size.sum()), np.uint8)
    sec, usec = us // 1_000_000, us % 1_000_000
    hdr = np.zeros((n, head), np.uint8)
    if fmt == "pcap":
        _put(hdr, 0, sec, "<u4")
        _put(hdr, 4, usec, "<u4")
        _put(hdr, 8, caplen, "<u4")
        _put(hdr, 12, caplen, "<u4")
    else:
        _put(hdr, 0, np.full(n, 6), "<u4")
        _put(hdr, 4, size, "<u4")
        _put(hdr, 12, us >> 32, "<u4")
        _put(hdr, 16, us & 0xFFFFFFFF, "<u4")
        _put(hdr, 20, caplen, "<u4")
        _put(hdr, 24, caplen, "<u4")
        tail = np.ascontiguousarray(size.astype("<u4")).view(np.uint8).reshape(n, 4)
        out[(start + size - 4)[:, None] + np.arange(4)] = tail
    out[start[:, None] + np.arange(head)] = hdr
    for code, rows in enumerate(frames):
        idx = np.flatnonzero(layout == code)
        out[(start[idx] + head)[:, None] + np.arange(rows.shape[1])] = rows
    for j, i in enumerate(odd_idx):
        p = int(start[i]) + head
        out[p:p + len(odd[j])] = np.frombuffer(odd[j], np.uint8)
    return out.tobytes()


def _file_header(link: int, fmt: str) -> bytes:
    if fmt == "pcap":
        return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 128, link)
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    name = b"any" if link == 276 else b"eth0"
    opts = struct.pack("<HH", 2, len(name)) + name + b"\0" * (-len(name) % 4)
    opts += struct.pack("<HH", 0, 0)
    body = struct.pack("<HHI", link, 0, 128) + opts
    idb = struct.pack("<II", 1, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    return shb + idb


def generate(path: str | Path, n: int, *, link: str = "en10mb", fmt: str = "pcap", seed: int = 1,
             odd: float = 0.0, truncate: int = 0) -> int:
    """Write `n` records to `path`; returns the file's size in bytes."""
    lt = LINKS[link]
    rng = np.random.default_rng(seed)
    t = float(T0)
    size = 0
    with open(path, "wb") as f:
        size += f.write(_file_header(lt, fmt))
        left = n
        while left > 0:
            m = min(BATCH, left)
            frames, layout, us, t = _batch(rng, m, lt, t, odd)
            odd_frames = _odd_frames(rng, int((layout == 4).sum()), lt)
            size += f.write(_records(frames, layout, odd_frames, us, fmt))
            left -= m
    if truncate:
        with open(path, "r+b") as f:
            f.truncate(max(0, size - truncate))
        size = max(0, size - truncate)
    return size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("-n", type=int, default=1_000_000, help="records (default 1,000,000)")
    ap.add_argument("--link", choices=sorted(LINKS), default="en10mb")
    ap.add_argument("--format", choices=("pcap", "pcapng"), default="pcap")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--odd", type=float, default=0.0, help="share of off-layout records")
    ap.add_argument("--truncate", type=int, default=0, help="cut this many bytes off the end")
    ap.add_argument("--ip-link", help="also write the `ip -o link` of the SLL2 interfaces here")
    a = ap.parse_args(argv)
    size = generate(a.out, a.n, link=a.link, fmt=a.format, seed=a.seed, odd=a.odd,
                    truncate=a.truncate)
    if a.ip_link:
        Path(a.ip_link).write_text(IP_LINK)
    print(f"{a.out}: {a.n} records, {size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
