"""10,000 corrupted captures: the reader never crashes; at worst it says clearly what is wrong."""

import io
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetrst.errors import PcapError
from fleetrst.pcap import PcapInfo, iter_resets

REAL = [p.read_bytes() for p in sorted((Path(__file__).parent / "data" / "pcaps").glob("*.pcap*"))
        if p.suffix in (".pcap", ".pcapng")]


SEEN = {"cases": 0, "errors": 0}


def read_all(data: bytes) -> tuple[int, PcapInfo]:
    info = PcapInfo()
    n = 0
    SEEN["cases"] += 1
    try:
        for _ in iter_resets(io.BytesIO(data), info=info, default_ifname="x"):
            n += 1
    except PcapError as e:
        SEEN["errors"] += 1
        assert str(e) and "\n" not in str(e)
    return n, info


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "huge_len"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "huge_len" and len(data) >= pos + 4:
            # Lengths that claim gigabytes: a reader must not try to allocate them.
            data[pos:pos + 4] = struct.pack("<I", draw(st.sampled_from([2**31 - 1, 2**32 - 1, 2**28])))
    return bytes(data)


@settings(max_examples=10_000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(corrupted())
def test_corrupted_real_captures_never_crash_the_reader(data: bytes) -> None:
    n, info = read_all(data)
    assert n >= 0 and info.packets >= 0


def test_the_fuzzing_ran_its_10000_cases(fault_table) -> None:
    # Runs after the fuzz test in this module: records what it saw for the fault table.
    assert SEEN["cases"] >= 10_000, SEEN
    fault_table.append(("corrupt, truncated, huge pcaps", "no crash in 10,000 cases, one-line errors",
                        f"{SEEN['cases']} cases, {SEEN['errors']} clear PcapErrors, no crash", "ok"))
