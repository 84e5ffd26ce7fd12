"""aggregate_resets against aggregate_packets(iter_resets(...)): the same counts, to the bit."""

from __future__ import annotations

import gc
import importlib.util
import io
import struct
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetrst import fastpcap
from fleetrst.fastpcap import (
    Endpoint,
    Pair,
    ResetAggregate,
    aggregate_packets,
    aggregate_resets,
    reset_class,
)
from fleetrst.pcap import PcapError, PcapInfo, ifnames_from_ip_link, iter_resets

DATA = Path(__file__).parent / "data" / "pcaps"
SHARED = Path("/work/shared/pcaps")
CAPTURES = sorted(p.name for p in DATA.iterdir() if p.suffix in (".pcap", ".pcapng"))
IFNAMES = ifnames_from_ip_link((DATA / "any-iplink.txt").read_text())

_spec = importlib.util.spec_from_file_location(
    "gen_pcap", Path(__file__).parent.parent / "bench" / "gen_pcap.py")
assert _spec and _spec.loader
gen_pcap = importlib.util.module_from_spec(_spec)
sys.modules["gen_pcap"] = gen_pcap
_spec.loader.exec_module(gen_pcap)
GEN_IFNAMES = ifnames_from_ip_link(gen_pcap.IP_LINK)


def both(src: Any, **kw: Any) -> tuple[ResetAggregate, ResetAggregate]:
    """(reference, fast) aggregates of one capture; `src` is a path or a bytes factory."""
    window = {k: kw.pop(k) for k in ("start", "end", "sample", "max_groups") if k in kw}
    ri, fi = PcapInfo(), PcapInfo()
    a = src() if callable(src) else src
    ref = aggregate_packets(iter_resets(a, info=ri, **kw), info=ri, **window)
    b = src() if callable(src) else src
    fast = aggregate_resets(b, info=fi, **kw, **window)
    return ref, fast


def assert_equal(ref: ResetAggregate, fast: ResetAggregate) -> None:
    for name in ("info", "resets", "first_ts", "last_ts", "pairs", "timeline", "sample",
                 "dropped"):
        assert getattr(fast, name) == getattr(ref, name), name
    assert fast == ref


def kw_for(name: str) -> dict[str, Any]:
    return {"ifnames": IFNAMES} if name.startswith("any-sll2") else {}


# ------------------------------------------------------------------ real captures

@pytest.mark.parametrize("name", CAPTURES)
def test_real_captures(name: str) -> None:
    ref, fast = both(DATA / name, **kw_for(name))
    assert_equal(ref, fast)
    assert fast.resets == ref.info.resets > 0


@pytest.mark.parametrize("name", CAPTURES)
def test_real_captures_with_a_window_and_a_short_sample(name: str) -> None:
    times = sorted(p.ts for p in iter_resets(DATA / name, **kw_for(name)))
    mid = times[len(times) // 2]
    ref, fast = both(DATA / name, start=times[1], end=mid, sample=2, **kw_for(name))
    assert_equal(ref, fast)
    assert 0 < fast.resets < len(times) and len(fast.sample) == 2


@pytest.mark.skipif(not SHARED.is_dir(), reason="third-party samples not present")
@pytest.mark.parametrize("name", sorted(p.name for p in SHARED.glob("*.pcap*"))
                         if SHARED.is_dir() else [])
def test_third_party_captures(name: str) -> None:
    assert_equal(*both(SHARED / name))


def test_concatenated_sections_from_a_stream() -> None:
    joined = b"".join((DATA / n).read_bytes() for n in
                      ["lo.pcapng", "lo6.pcapng", "veth.pcapng", "dumpcap.pcapng"])
    ref, fast = both(lambda: io.BytesIO(joined))
    assert_equal(ref, fast)
    assert fast.info.ts_precision == "mixed"


# ------------------------------------------------------------------ generated captures

@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    d = tmp_path_factory.mktemp("gen")
    out = {}
    for link in ("en10mb", "sll2"):
        for fmt in ("pcap", "pcapng"):
            path = d / f"{link}.{fmt}"
            gen_pcap.generate(path, 60_000, link=link, fmt=fmt, seed=7, odd=0.01)
            out[(link, fmt)] = path
    return out


@pytest.mark.parametrize("link", ["en10mb", "sll2"])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_generated_captures(generated: dict[tuple[str, str], Path], link: str, fmt: str) -> None:
    ref, fast = both(generated[(link, fmt)], ifnames=GEN_IFNAMES)
    assert_equal(ref, fast)
    info = fast.info
    assert info.packets == 60_000 and 0 < info.non_tcp + info.snapped < 1_000
    fam = {":" in p.src for p in fast.pairs}
    assert fam == {True, False}  # IPv4 and IPv6
    assert {p.cls for p in fast.pairs} == {"refusal", "abort", "stray"}
    if link == "sll2":
        assert {p.ifname for p in fast.pairs} == {"lo", "eth0"}


@pytest.mark.parametrize("link", ["en10mb", "sll2"])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("cut", [1, 17, 40])
def test_cut_short_tail(generated: dict[tuple[str, str], Path], tmp_path: Path, link: str,
                        fmt: str, cut: int) -> None:
    raw = generated[(link, fmt)].read_bytes()
    path = tmp_path / "cut"
    path.write_bytes(raw[:-cut])
    ref, fast = both(path, ifnames=GEN_IFNAMES)
    assert_equal(ref, fast)
    assert fast.info.truncated and fast.info.error


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_small_buffers_and_slow_pipes(generated: dict[tuple[str, str], Path], fmt: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    raw = generated[("sll2", fmt)].read_bytes()[:400_000]
    monkeypatch.setattr(fastpcap, "_CHUNK", 5_000)  # many buffers, records across their edges
    ref, fast = both(lambda: io.BytesIO(raw), ifnames=GEN_IFNAMES)
    assert_equal(ref, fast)

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.pos = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            step = 3_000 if self.pos % 2 else 9_000
            chunk = raw[self.pos:self.pos + min(step, n if n >= 0 else step)]
            self.pos += len(chunk)
            return chunk

    info = PcapInfo()
    fast = aggregate_resets(Pipe(), ifnames=GEN_IFNAMES, info=info)
    fast.info.path = ref.info.path
    assert_equal(ref, fast)


def test_big_endian_pcap(generated: dict[tuple[str, str], Path]) -> None:
    raw = generated[("en10mb", "pcap")].read_bytes()
    fields = struct.unpack_from("<IHHiIII", raw)
    out = [struct.pack(">IHHiIII", *fields)]
    pos = 24
    while pos + 16 <= len(raw):
        sec, frac, cap, orig = struct.unpack_from("<IIII", raw, pos)
        out.append(struct.pack(">IIII", sec, frac, cap, orig) + raw[pos + 16:pos + 16 + cap])
        pos += 16 + cap
    data = b"".join(out)
    ref, fast = both(lambda: io.BytesIO(data))
    assert_equal(ref, fast)
    assert fast.resets > 50_000


def test_epochs_collisions_and_dropped_tables(generated: dict[tuple[str, str], Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = generated[("sll2", "pcapng")]
    ref, _ = both(path, ifnames=GEN_IFNAMES)
    # ids start again every few addresses: counts move to Python keys many times
    monkeypatch.setattr(fastpcap, "_ADDR_EPOCH", 8)
    monkeypatch.setattr(fastpcap, "_CHUNK", 64_000)
    assert_equal(ref, both(path, ifnames=GEN_IFNAMES)[1])
    # every IPv6 address on one key: each IPv6 reset is counted the exact way
    monkeypatch.setattr(fastpcap, "_v6key", lambda hi, lo: np.full(len(hi), 1 << 63, np.uint64))
    assert_equal(ref, both(path, ifnames=GEN_IFNAMES)[1])
    # a table past max_groups is given up, the same way on both paths
    limit = len(ref.timeline) + 1
    r2, f2 = both(path, ifnames=GEN_IFNAMES, max_groups=limit)
    assert_equal(r2, f2)
    assert f2.dropped == ["pairs"] and not f2.pairs and f2.timeline == ref.timeline


def test_seconds_far_apart_and_interfaces_of_pcapng() -> None:
    frame = bytes(14) + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0,
                                    bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]))
    frame = frame[:12] + b"\x08\x00" + frame[14:]
    seg = struct.pack("!HHIIBBHHH", 7211, 40000, 0, 5, 0x50, 0x14, 0, 0, 0)

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    def idb(name: bytes, offset: int) -> bytes:
        opts = struct.pack("<HH", 2, len(name)) + name + b"\0" * (-len(name) % 4)
        opts += struct.pack("<HHq", 14, 8, offset) + struct.pack("<HH", 0, 0)
        return block(1, struct.pack("<HHI", 1, 0, 128) + opts)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    pkt = frame + seg
    epbs = []
    for i in range(3000):
        ts = (1_700_000_000 + i) * 1_000_000
        epbs.append(block(6, struct.pack("<IIIII", i % 2, ts >> 32, ts & 0xFFFFFFFF, len(pkt),
                                         len(pkt)) + pkt))
    data = shb + idb(b"eth0", 0) + idb(b"eth1", 90_000_000_000) + b"".join(epbs)
    ref, fast = both(lambda: io.BytesIO(data))
    assert_equal(ref, fast)
    assert {p.ifname for p in fast.pairs} == {"eth0", "eth1"}
    assert min(s for s, _ in fast.timeline) < 2**32 < max(s for s, _ in fast.timeline)


# ------------------------------------------------------------------ errors and broken files

def run(data: bytes, fast: bool) -> tuple[Any, PcapInfo]:
    info = PcapInfo()
    try:
        if fast:
            out: Any = aggregate_resets(io.BytesIO(data), info=info)
        else:
            out = aggregate_packets(iter_resets(io.BytesIO(data), info=info), info=info)
    except PcapError as e:
        out = ("error", str(e))
    return out, info


SAMPLES = [(DATA / n).read_bytes() for n in ("lo.pcap", "lo6.pcapng", "any-sll2.pcap",
                                             "dumpcap.pcapng", "any-sll.pcap")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SAMPLES))),
       st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255)), max_size=8),
       st.integers(0, 3000), st.integers(1, 40))
def test_corrupted_files_fail_or_count_the_same(i: int, flips: list[tuple[int, int]], cut: int,
                                                copies: int) -> None:
    raw = SAMPLES[i]
    head = 24 if raw[:4] != b"\x0a\x0d\x0d\x0a" else 0
    data = bytearray(raw + raw[head:] * copies)  # long enough for the run finder
    for pos, val in flips:
        data[pos % len(data)] = val
    data = data[:len(data) - cut % len(data)]
    ref, fast = run(bytes(data), False), run(bytes(data), True)
    assert fast == ref


@pytest.mark.parametrize("name", ["lo.pcap", "dumpcap.pcapng"])
def test_record_claiming_too_much(name: str) -> None:
    raw = (DATA / name).read_bytes()
    body = raw if name.endswith("ng") else raw[24:]
    data = bytearray(raw + body * 300)
    if name.endswith("ng"):
        at = len(data) - len(body) * 100
        while struct.unpack_from("<I", data, at)[0] != 6:
            at += 4
        struct.pack_into("<I", data, at + 20, 300_000)
    else:
        at = 24
        for _ in range(1000):
            at += 16 + struct.unpack_from("<I", data, at + 8)[0]
        struct.pack_into("<I", data, at + 8, 300_000)
    ref, fast = run(bytes(data), False), run(bytes(data), True)
    assert fast == ref and ref[0][0] == "error"


# ------------------------------------------------------------------ the API

def test_endpoints_classes_and_sample_order() -> None:
    agg = aggregate_resets(DATA / "lo.pcap")
    eps = agg.endpoints()
    assert sum(eps.values()) == agg.resets == 6
    by_cls: dict[str, int] = {}
    for e, n in eps.items():
        by_cls[e.cls] = by_cls.get(e.cls, 0) + n
    assert by_cls == {"refusal": 3, "abort": 2, "stray": 1}
    assert Endpoint("x", "a", 1, 0x14, True).cls == "refusal"
    assert Pair(None, "a", 1, "b", 0x04, False).cls == "stray"
    assert reset_class(0x14, False) == "abort"
    assert agg.sample == list(iter_resets(DATA / "lo.pcap"))
    assert agg.first_ts == agg.sample[0].ts and agg.last_ts == agg.sample[-1].ts
    assert sum(agg.timeline.values()) == 6


def test_memory_does_not_grow_with_packets(tmp_path: Path) -> None:
    small, big = tmp_path / "s.pcap", tmp_path / "b.pcap"
    gen_pcap.generate(small, 60_000, link="sll2", seed=3)
    gen_pcap.generate(big, 240_000, link="sll2", seed=3)
    peaks = []
    for path in (small, big):
        gc.collect()
        tracemalloc.start()
        agg = aggregate_resets(path, ifnames=GEN_IFNAMES)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        del agg
    # four times the packets: the same buffers, and tables that grow with keys, not packets
    assert peaks[1] < peaks[0] * 1.5
