"""The capture reader against real tcpdump/dumpcap captures and tshark's reading of them."""

from __future__ import annotations

import dataclasses
import gc
import inspect
import io
import ipaddress
import json
import re
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetrst import errors
from fleetrst import pcap as pcap_module
from fleetrst.pcap import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    PcapError,
    PcapInfo,
    RstPacket,
    _NewRst,
    flag_string,
    format_tcpdump_line,
    ifnames_from_ip_link,
    iter_resets,
    read_resets,
)

DATA = Path(__file__).parent / "data" / "pcaps"
SHARED = Path("/work/shared/pcaps")
CAPTURES = sorted(p.name for p in DATA.iterdir() if p.suffix in (".pcap", ".pcapng"))
PCAPS = [n for n in CAPTURES if n.endswith(".pcap")]
IFNAMES = ifnames_from_ip_link((DATA / "any-iplink.txt").read_text())
FIELDS = [f.name for f in dataclasses.fields(RstPacket)]


def oracle(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return doc


def read(src: Any, **kw: Any) -> tuple[list[RstPacket], PcapInfo]:
    info = PcapInfo()
    return list(iter_resets(src, info=info, **kw)), info


def kw_for(name: str) -> dict[str, Any]:
    return {"ifnames": IFNAMES} if name.startswith("any-sll2") else {}


def assert_same(got: list[RstPacket], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for p, w in zip(got, want):
        assert abs(p.ts - float(w["ts"])) < 1e-6, (p, w)
        assert {k: getattr(p, k) for k in FIELDS if k != "ts"} == \
            {k: w[k] for k in FIELDS if k != "ts"}


def assert_same_packets(a: list[RstPacket], b: list[RstPacket], ts_tol: float = 1e-6) -> None:
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert abs(p.ts - q.ts) < ts_tol
        assert dataclasses.replace(p, ts=0.0) == dataclasses.replace(q, ts=0.0)


# ------------------------------------------------------------------ builders for made-up packets

def tcp(sport: int = 7211, dport: int = 41838, seq: int = 0, ack: int = 123, flags: int = RST | ACK,
        win: int = 0, opts: bytes = b"", payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (20 + len(opts)) // 4 << 4, flags,
                       win, 0, 0) + opts + payload


def ipv4(seg: bytes, src: str = "127.0.0.1", dst: str = "127.0.0.1", proto: int = 6,
         opts: bytes = b"", frag: int = 0, total: int | None = None) -> bytes:
    ihl = 5 + len(opts) // 4
    tot = 4 * ihl + len(seg) if total is None else total
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot, 1, frag, 64, proto, 0,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return head + opts + seg


def ipv6(payload: bytes, nh: int = 6, src: str = "::1", dst: str = "2001:db8::2",
         plen: int | None = None) -> bytes:
    head = struct.pack("!IHBB16s16s", 6 << 28, len(payload) if plen is None else plen, nh, 64,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)
    return head + payload


def eth(payload: bytes, etype: int = 0x0800, tags: tuple[tuple[int, int], ...] = ()) -> bytes:
    head = b"\x02" * 6 + b"\x04" * 6
    for tpid, tci in tags:
        head += struct.pack("!HH", tpid, tci)
    return head + struct.pack("!H", etype) + payload


def pcap_bytes(frames: list[bytes], linktype: int = 1, endian: str = "<", nano: bool = False,
               snaplen: int = 65535, origlens: list[int] | None = None) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for i, fr in enumerate(frames):
        orig = origlens[i] if origlens else len(fr)
        out.append(struct.pack(endian + "IIII", 1_700_000_000 + i, 500 * i, len(fr), orig) + fr)
    return b"".join(out)


def block(btype: int, body: bytes, e: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def opt(code: int, val: bytes, e: str = "<") -> bytes:
    return struct.pack(e + "HH", code, len(val)) + val + b"\0" * (-len(val) % 4)


def shb(e: str = "<") -> bytes:
    return block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)


def idb(lt: int = 1, e: str = "<", name: str | None = None, tsresol: int | None = None,
        snaplen: int = 0, tsoffset: int | None = None) -> bytes:
    opts = b""
    if name is not None:
        opts += opt(2, name.encode(), e)
    if tsresol is not None:
        opts += opt(9, bytes([tsresol]), e)
    if tsoffset is not None:
        opts += opt(14, struct.pack(e + "q", tsoffset), e)
    if opts:
        opts += opt(0, b"", e)
    return block(1, struct.pack(e + "HHI", lt, 0, snaplen) + opts, e)


def epb(data: bytes, ts: int, ifid: int = 0, e: str = "<", orig: int | None = None) -> bytes:
    return block(6, struct.pack(e + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, len(data),
                                len(data) if orig is None else orig) + data, e)


def pcap_records(raw: bytes) -> tuple[bytes, list[tuple[int, int, bytes, int]]]:
    """Split a little-endian pcap into its header and (sec, frac, data, origlen) records."""
    recs, pos = [], 24
    while pos < len(raw):
        sec, frac, cap, orig = struct.unpack_from("<IIII", raw, pos)
        recs.append((sec, frac, raw[pos + 16:pos + 16 + cap], orig))
        pos += 16 + cap
    return raw[:24], recs


def last_record_start(raw: bytes) -> int:
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        return len(raw) - int(struct.unpack("<I", raw[-4:])[0])
    pos = last = 24
    while pos < len(raw):
        last = pos
        pos += 16 + struct.unpack_from("<I", raw, pos + 8)[0]
    return last


class Dribble(io.RawIOBase):
    """A stream that returns at most `step` bytes per read, as a slow pipe does."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        chunk = self.data[self.pos:self.pos + min(self.step, n if n >= 0 else self.step)]
        self.pos += len(chunk)
        return chunk


# ------------------------------------------------------------------ real captures vs tshark

@pytest.mark.parametrize("name", CAPTURES)
def test_every_tcp_packet_matches_tshark(name: str) -> None:
    got, info = read(DATA / name, only_resets=False, **kw_for(name))
    assert_same(got, oracle(name)["records"])
    assert info.packets == len(got) and info.tcp == len(got)
    assert not info.truncated and info.error is None and info.non_tcp == 0


@pytest.mark.parametrize("name", CAPTURES)
def test_resets_match_tshark(name: str) -> None:
    got, info = read_resets(DATA / name, **kw_for(name))
    want = [r for r in oracle(name)["records"] if r["flags"] & RST]
    assert_same(got, want)
    assert info.resets == len(want) and all(p.is_rst for p in got)


@pytest.mark.parametrize("name", PCAPS)
def test_pcapng_conversion_gives_the_same_records(name: str) -> None:
    a, ia = read(DATA / name, **kw_for(name))
    b, ib = read(DATA / (name + "ng"), **kw_for(name))
    assert_same_packets(a, b)
    assert (ia.format, ib.format) == ("pcap", "pcapng")
    assert ia.linktypes == ib.linktypes and ia.ts_precision == ib.ts_precision


@pytest.mark.parametrize("name", PCAPS)
def test_lines_match_tcpdump(name: str) -> None:
    got, _ = read(DATA / name, **kw_for(name))
    want = [re.sub(r", options \[[^]]*\]", "", line) for line in oracle(name)["tcpdump_utc"]]
    lines = [format_tcpdump_line(p, utc=True) for p in got]
    if "nano" in name:
        # tcpdump cuts nanoseconds to microseconds; a float time can only be rounded
        assert [w[:8] for w in want] == [ln[:8] for ln in lines]
        assert all(abs(int(w[9:15]) - int(ln[9:15])) <= 1 for w, ln in zip(want, lines))
        want, lines = [w[15:] for w in want], [ln[15:] for ln in lines]
    assert lines == want


def test_reset_kinds_in_the_loopback_capture() -> None:
    got, info = read_resets(DATA / "lo.pcap")
    assert info.linktypes == [1] and info.ts_precision == "us"
    refused = [p for p in got if p.sport == 7211]
    assert len(refused) == 3
    assert all(p.flags == RST | ACK and p.seq == 0 and p.window == 0 and p.options_len == 0
               for p in refused)
    aborts = [p for p in got if p.sport in (7300, 7301)]
    assert len(aborts) == 2 and all(p.is_ack and p.window > 0 and p.options_len == 12
                                    for p in aborts)
    (stray,) = [p for p in got if not p.is_ack]
    assert stray.flags == RST and stray.seq == 123456789 and stray.window == 0
    assert all(p.family == 4 and p.src == "127.0.0.1" and p.ifname is None for p in got)


def test_ipv6_on_loopback() -> None:
    got, _ = read_resets(DATA / "lo6.pcap", default_ifname="lo")
    assert len(got) == 6
    assert all(p.family == 6 and p.src == "::1" == p.dst and p.ifname == "lo" for p in got)
    line = (f"IP6 ::1.7211 > ::1.{got[0].dport}: Flags [R.], seq 0, ack {got[0].ack}, win 0, "
            "length 0")
    assert format_tcpdump_line(got[0], utc=True).split(" ", 2)[1:] == ["lo", line]


def test_nanosecond_capture_of_the_same_packets() -> None:
    us, _ = read_resets(DATA / "lo.pcap")
    ns, info = read_resets(DATA / "lo-nano.pcap")
    assert info.ts_precision == "ns"
    # two tcpdumps stamp each packet separately: the same instants to a few microseconds
    assert_same_packets(us, ns, ts_tol=2e-5)
    assert any(round(p.ts * 1e6) != p.ts * 1e6 for p in ns)


def test_any_interface_sll2_names_directions_and_fallback() -> None:
    got, info = read_resets(DATA / "any-sll2.pcap", ifnames=IFNAMES)
    assert info.linktypes == [276]
    assert {(p.ifname, p.ifindex) for p in got} == {("lo", 1), ("fra0", 2)}
    out = [p for p in got if p.pkttype == 4]
    assert out and all(p.ifname == "fra0" and p.src == "198.18.0.1" for p in out)
    assert all(p.pkttype == 0 for p in got if p.ifname == "lo")  # lo resets recorded once, "In"
    bare, _ = read_resets(DATA / "any-sll2.pcap", default_ifname="any")
    assert {p.ifname for p in bare} == {"any"} and {p.ifindex for p in bare} == {1, 2}


def test_cooked_v1_has_direction_but_no_interface() -> None:
    got, info = read_resets(DATA / "any-sll.pcap")
    assert info.linktypes == [113]
    assert {p.pkttype for p in got} == {0, 4} and {p.ifindex for p in got} == {None}


def test_dumpcap_interface_names_and_mixed_snaplens() -> None:
    got, info = read(DATA / "dumpcap.pcapng", only_resets=False)
    assert info.ts_precision == "ns" and info.linktypes == [1]
    assert {p.ifname for p in got} == {"lo", "fra0"}
    syns = [p for p in got if p.flags == SYN]
    assert len(syns) == 3 and info.resets == len(got) - 3
    assert [p for p in read_resets(DATA / "dumpcap.pcapng")[0] if not p.is_rst] == []


def test_sections_concatenated() -> None:
    names = ["lo.pcapng", "lo6.pcapng", "veth.pcapng", "dumpcap.pcapng"]
    joined = b"".join((DATA / n).read_bytes() for n in names)
    got, info = read(io.BytesIO(joined), only_resets=False)
    want = [r for n in names for r in oracle(n)["records"]]
    assert_same(got, want)
    assert info.ts_precision == "mixed" and info.path == "<stream>"


@pytest.mark.parametrize("name", ["lo.pcap", "lo.pcapng", "any-sll2.pcap", "dumpcap.pcapng"])
@pytest.mark.parametrize("step", [1, 7, 64, 1000])
def test_small_reads_from_a_pipe(name: str, step: int) -> None:
    whole, _ = read(DATA / name, only_resets=False)
    got, info = read(Dribble((DATA / name).read_bytes(), step), only_resets=False)
    assert got == whole and not info.truncated


# ------------------------------------------------------------------ cut and broken files

@pytest.mark.parametrize("name", ["lo.pcap", "lo-nano.pcapng", "any-sll2.pcap", "dumpcap.pcapng"])
@pytest.mark.parametrize("cut", [1, 5, 30, 50, 66])
def test_cut_last_record_is_reported_not_raised(name: str, cut: int, tmp_path: Path) -> None:
    raw = (DATA / name).read_bytes()
    last = last_record_start(raw)
    before, info = read(io.BytesIO(raw[:last]), only_resets=False)
    assert not info.truncated
    path = tmp_path / name
    path.write_bytes(raw[:-cut])
    got, info = read(path, only_resets=False)
    assert got == before
    assert info.truncated and info.error is not None
    assert info.error == f"truncated {'block' if name.endswith('ng') else 'record'} at byte {last}"


def test_header_only_file_has_no_packets() -> None:
    got, info = read(io.BytesIO(pcap_bytes([])))
    assert got == [] and not info.truncated and info.packets == 0


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"hello world, this is not a capture file at all\n", "not a pcap"),
    (b"\x1f\x8b\x08\x00" + bytes(40), "gzip"),
    (b"\xd4\xc3\xb2\xa1\x02\x00", "cut short"),
    (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00", "cut short"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 65535, 1), "version"),
    (shb()[:8] + b"\x01\x02\x03\x04" + shb()[12:], "byte-order"),
    (shb() + epb(b"x" * 40, 0), "undeclared interface"),
    (pcap_bytes([b"x" * 60])[:24] + struct.pack("<IIII", 0, 0, 1_000_000, 60) + bytes(64),
     "over 256 KiB"),
    (shb() + idb() + struct.pack("<II", 6, 30) + bytes(40), "length 30"),
    (shb() + idb() + epb(b"y" * 40, 0)[:-4] + b"\xff\xff\xff\xff", "lengths differ"),
    (shb() + idb() + struct.pack("<II", 6, 0x7FFFFFF0) + bytes(40), "length"),
])
def test_unreadable_files_raise_pcap_error(data: bytes, words: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(data)
    info = PcapInfo()
    with pytest.raises(PcapError) as exc:
        list(iter_resets(path, info=info))
    msg = str(exc.value)
    assert str(path) in msg and words in msg and "\n" not in msg
    assert info.error == msg
    assert isinstance(exc.value, errors.PcapError) and isinstance(exc.value, errors.FleetrstError)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for path in (tmp_path / "nope.pcap", tmp_path):
        with pytest.raises(PcapError, match=re.escape(str(path))):
            read_resets(path)


# ------------------------------------------------------------------ byte orders and formats

def test_big_endian_pcap_reads_the_same() -> None:
    for name in ("lo.pcap", "lo-nano.pcap", "any-sll2.pcap"):
        raw = (DATA / name).read_bytes()
        head, recs = pcap_records(raw)
        fields = struct.unpack("<IHHiIII", head)
        swapped = struct.pack(">IHHiIII", *fields) + b"".join(
            struct.pack(">IIII", s, f, len(d), o) + d for s, f, d, o in recs)
        assert swapped[:4] != raw[:4]
        assert read(io.BytesIO(swapped))[0] == read(DATA / name)[0]


def test_big_endian_pcapng_with_options() -> None:
    raw = (DATA / "any-sll2.pcap").read_bytes()
    _, recs = pcap_records(raw)
    data = shb(">") + idb(276, ">", name="any", tsresol=6, snaplen=128) + b"".join(
        epb(d, s * 1_000_000 + f, e=">", orig=o) for s, f, d, o in recs)
    got, info = read(io.BytesIO(data), ifnames=IFNAMES)
    want, _ = read(DATA / "any-sll2.pcap", ifnames=IFNAMES)
    assert_same_packets(got, want)
    assert info.format == "pcapng" and info.linktypes == [276]
    # SLL2 interface indexes win over the IDB's "any"; unknown indexes fall back to it
    unnamed, _ = read(io.BytesIO(data))
    assert {p.ifname for p in unnamed} == {"any"}


def test_pcapng_resolutions_offsets_and_odd_blocks() -> None:
    frame = eth(ipv4(tcp()))
    data = (shb() + block(0xBAD, b"vendor stuff")
            + idb(1, name="eth0", tsresol=0x80 | 20)  # 2^-20 s units
            + idb(1, name="eth1", tsresol=3, tsoffset=1_000_000)  # milliseconds, offset
            + idb(1, name="eth2", snaplen=30)
            + block(5, b"\0" * 16)  # interface statistics: skipped
            + epb(frame, 1_700_000_000 << 20, ifid=0)
            + epb(frame, 700_000_000_123, ifid=1)
            + block(3, struct.pack("<I", len(frame)) + frame)  # simple packet block, eth0
            + block(2, struct.pack("<HHIIII", 2, 0, 0, 5, len(frame), len(frame)) + frame))
    got, info = read(io.BytesIO(data))
    assert [p.ifname for p in got] == ["eth0", "eth1", "eth0", "eth2"]
    assert got[0].ts == 1_700_000_000.0
    assert abs(got[1].ts - (1_000_000 + 700_000_000.123)) < 1e-6
    assert got[2].ts == 0.0  # simple packet blocks carry no time
    assert info.ts_precision == "mixed" and info.packets == 4


# ------------------------------------------------------------------ link layers and IP details

def test_vlan_tags_single_and_stacked() -> None:
    frames = [eth(ipv4(tcp()), tags=((0x8100, 100),)),
              eth(ipv4(tcp(seq=7, flags=RST)), tags=((0x88A8, 0x2000 | 200), (0x8100, 100))),
              eth(ipv6(tcp()), etype=0x86DD, tags=((0x9100, 5),)),
              eth(ipv4(tcp()))]
    got, _ = read(io.BytesIO(pcap_bytes(frames)))
    assert [p.vlan for p in got] == [100, 200, 5, None]
    assert got[1].seq == 7 and got[1].flags == RST and got[2].family == 6


def test_vlan_tag_cut_by_snaplen_is_counted() -> None:
    fr = eth(ipv4(tcp()), tags=((0x8100, 1), (0x8100, 2)))
    got, info = read(io.BytesIO(pcap_bytes([fr[:16]], origlens=[len(fr)])))
    assert got == [] and info.snapped == 1


def test_ipv6_extension_headers() -> None:
    seg = tcp(sport=443, dport=5555, seq=9, flags=RST)
    hop = bytes([60, 0]) + bytes(6)           # hop-by-hop -> destination options
    dst = bytes([43, 1]) + bytes(14)          # destination options (16 bytes) -> routing
    rt = bytes([44, 0, 0, 0]) + bytes(4)      # routing -> fragment
    frag0 = bytes([51, 0, 0, 1]) + bytes(4)   # first fragment (offset 0, more) -> AH
    ah = bytes([6, 4]) + bytes(22)            # AH, (4 + 2) * 4 = 24 bytes -> TCP
    chain = hop + dst + rt + frag0 + ah
    later = bytes([6, 0, 0x05, 0x01]) + bytes(4)  # fragment with offset 160
    frames = [eth(ipv6(chain + seg, nh=0), etype=0x86DD),
              eth(ipv6(later + b"\0" * 20, nh=44), etype=0x86DD),
              eth(ipv6(b"\0" * 40, nh=50), etype=0x86DD),  # ESP: nothing to read
              eth(ipv6(b"", nh=59), etype=0x86DD)]         # no next header
    got, info = read(io.BytesIO(pcap_bytes(frames)))
    assert len(got) == 1 and info.non_tcp == 3
    p = got[0]
    assert (p.family, p.src, p.dst, p.sport, p.dport, p.seq) == (6, "::1", "2001:db8::2", 443,
                                                                  5555, 9)
    assert p.payload_len == 0


def test_ipv4_options_fragments_and_other_protocols() -> None:
    seg = tcp(seq=5, flags=RST, payload=b"abc")
    frames = [eth(ipv4(seg, opts=b"\x01\x01\x01\x00")),       # IHL 6
              eth(ipv4(seg, frag=0x2000)),                    # first fragment: has the header
              eth(ipv4(b"\0" * 20, frag=0x2000 | 185)),       # later fragment: no header
              eth(ipv4(b"\0" * 8, proto=17)),                 # UDP
              eth(b"\0" * 28, etype=0x0806)]                  # ARP
    got, info = read(io.BytesIO(pcap_bytes(frames)))
    assert [p.seq for p in got] == [5, 5] and all(p.payload_len == 3 for p in got)
    assert info.non_tcp == 3 and info.packets == 5 and info.tcp == 2


def test_payload_length_comes_from_ip_not_snaplen() -> None:
    fr = eth(ipv4(tcp(payload=b"z" * 100, flags=RST | ACK | PSH)))
    got, _ = read(io.BytesIO(pcap_bytes([fr[:60]], origlens=[len(fr)])))
    assert got[0].payload_len == 100 and got[0].flags == RST | ACK | PSH
    # segmentation offload leaves the IPv4 length at 0: fall back to the frame length
    tso = eth(ipv4(tcp(payload=b"z" * 10), total=0))
    got, _ = read(io.BytesIO(pcap_bytes([tso])))
    assert got[0].payload_len == 10


def test_headers_cut_by_snaplen_are_counted_not_raised() -> None:
    fr = eth(ipv4(tcp()))
    got, info = read(io.BytesIO(pcap_bytes([fr[:n] for n in (10, 20, 40, 53)] + [fr])))
    assert len(got) == 1 and info.snapped == 4 and info.packets == 5


@pytest.mark.parametrize("linktype, frame", [
    (101, ipv4(tcp())),
    (12, ipv6(tcp())),
    (14, ipv4(tcp())),
    (228, ipv4(tcp())),
    (0, struct.pack("<I", 2) + ipv4(tcp())),      # NULL, written by a little-endian host
    (0, struct.pack(">I", 30) + ipv6(tcp())),     # NULL from a big-endian BSD (AF_INET6 = 30)
    (108, struct.pack(">I", 2) + ipv4(tcp())),    # LOOP
    (113, struct.pack("!HHH8sH", 4, 772, 0, b"", 0x0800) + ipv4(tcp())),
    (276, struct.pack("!HHIHBB8s", 0x86DD, 0, 9, 772, 1, 0, b"") + ipv6(tcp())),
])
def test_link_types(linktype: int, frame: bytes) -> None:
    got, info = read(io.BytesIO(pcap_bytes([frame], linktype=linktype)), ifnames={9: "eth9"})
    assert len(got) == 1 and info.linktypes == [linktype]
    assert got[0].sport == 7211 and got[0].flags == RST | ACK


def test_unknown_link_type_is_counted_as_non_tcp() -> None:
    got, info = read(io.BytesIO(pcap_bytes([eth(ipv4(tcp()))], linktype=147)))
    assert got == [] and info.non_tcp == 1 and info.linktypes == [147]


# ------------------------------------------------------------------ records and formatting

def test_records_are_frozen_real_dataclasses() -> None:
    params = list(inspect.signature(_NewRst.__init__).parameters)[1:]
    assert params == FIELDS  # the fast builder fills the fields in declaration order
    got, _ = read_resets(DATA / "lo.pcap")
    p = got[0]
    assert type(p) is RstPacket and dataclasses.is_dataclass(p)
    assert p == RstPacket(**{k: getattr(p, k) for k in FIELDS}) and hash(p)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.seq = 1  # type: ignore[misc]


@pytest.mark.parametrize("flags, text", [
    (RST, "R"), (RST | ACK, "R."), (SYN, "S"), (SYN | ACK, "S."), (PSH | ACK, "P."),
    (FIN | ACK, "F."), (FIN | PSH | ACK, "FP."), (0, "none"), (0xC2, "SEW"),
])
def test_flag_strings(flags: int, text: str) -> None:
    assert flag_string(flags) == text


def test_line_with_data_and_no_seq() -> None:
    p = RstPacket(ts=1_700_000_000.9999999, ifname=None, ifindex=None, pkttype=None, family=4,
                  src="10.0.0.1", sport=80, dst="10.0.0.2", dport=999, seq=4294967290, ack=7,
                  flags=PSH | ACK, window=501, options_len=0, payload_len=10, vlan=None)
    assert format_tcpdump_line(p, utc=True) == (
        "22:13:21.000000 IP 10.0.0.1.80 > 10.0.0.2.999: Flags [P.], seq 4294967290:4, ack 7, "
        "win 501, length 10")
    q = dataclasses.replace(p, flags=ACK, payload_len=0, ifname="eth0", ifindex=3, pkttype=3)
    assert format_tcpdump_line(q, utc=True).startswith("22:13:21.000000 eth0  P   IP 10.0.0.1.80")
    assert ", seq" not in format_tcpdump_line(q, utc=True)


def test_ifnames_from_ip_link() -> None:
    assert IFNAMES == {1: "lo", 2: "fra0"}
    text = ("1: lo: <LOOPBACK,UP> mtu 65536\n    link/loopback 00:00:00:00:00:00\n"
            "7: eth0.100@eth0: <BROADCAST> mtu 1500\n")
    assert ifnames_from_ip_link(text) == {1: "lo", 7: "eth0.100"}


# ------------------------------------------------------------------ streaming and wild files

def test_streaming_reads_in_chunks_and_keeps_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcap_module, "_CHUNK", 64 * 1024)
    monkeypatch.setattr(pcap_module, "_CACHE_MAX", 256)
    n = 40_000
    template = eth(ipv4(tcp(), dst="10.0.0.0"))
    # every packet to another address, so an unbounded address cache would show too
    frames = [template[:30] + i.to_bytes(4, "big") + template[34:] for i in range(n)]
    src = Dribble(pcap_bytes(frames), step=1 << 30)
    it = iter_resets(src)
    next(it)
    assert src.pos <= 64 * 1024  # the first packet comes after the first chunk only
    for _ in range(2_000):
        next(it)
    gc.collect()
    blocks = sys.getallocatedblocks()
    for _ in range(n - 2_002):
        next(it)
    gc.collect()
    grown = sys.getallocatedblocks() - blocks  # measured while the reader is still open
    assert len(list(it)) == 1
    assert grown < 2_000  # bounded by the cache's size, not by the packets read


HTTP = "02 12 10 18 10 18 10 18 10 11 11 10"  # the flags of one short HTTP exchange
THIRD_PARTY = {  # file: (TCP packets, payload bytes, flags), as tshark reads them
    "200722_tcp_anon.pcapng": (35, 9531, ("02 12 10 18 10 11 11 10 02 12 10 10 10 10 10 10 10 10 "
                                          "10 10 10 10 10 18 10 18 10 18 10 18 10 11 10 11 10")),
    "simple_http.pcap": (24, 1796, f"{HTTP} {HTTP}"),
    "simple_http_sll2.pcap": (24, 1833, f"{HTTP} {HTTP}"),
    "simple_http_tzsp.pcapng": (0, 0, ""),
    "teardrop.pcap": (0, 0, ""),
}


@pytest.mark.skipif(not SHARED.is_dir(), reason="third-party samples not present")
@pytest.mark.parametrize("name", sorted(THIRD_PARTY))
def test_third_party_captures(name: str) -> None:
    got, info = read(SHARED / name, only_resets=False)
    n, payload, flags = THIRD_PARTY[name]
    assert len(got) == n and sum(p.payload_len for p in got) == payload
    assert " ".join(f"{p.flags:02x}" for p in got) == flags
    assert info.resets == 0 and info.packets >= n and not info.truncated


# ------------------------------------------------------------------ fuzzing

def only_pcap_errors(data: bytes) -> None:
    try:
        for _ in iter_resets(io.BytesIO(data), only_resets=False):
            pass
    except PcapError:
        pass


HEADS = [b"", pcap_bytes([]), pcap_bytes([], endian=">", nano=True), shb(), shb() + idb(),
         shb(">") + idb(276, ">", tsresol=9)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(HEADS), st.binary(max_size=600))
def test_random_bytes_raise_only_pcap_error(head: bytes, tail: bytes) -> None:
    only_pcap_errors(head + tail)


SAMPLES = [(DATA / n).read_bytes() for n in ("lo.pcap", "lo6.pcapng", "any-sll2.pcap",
                                             "dumpcap.pcapng", "any-sll.pcap")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SAMPLES))),
       st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8),
       st.integers(0, 2000))
def test_corrupted_real_files_raise_only_pcap_error(i: int, flips: list[tuple[int, int]],
                                                    cut: int) -> None:
    data = bytearray(SAMPLES[i])
    for pos, val in flips:
        data[pos % len(data)] = val
    only_pcap_errors(bytes(data[:len(data) - cut % len(data)]))
