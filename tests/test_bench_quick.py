"""The benchmark scripts still run and still print their tables (tiny sizes, no timing checks)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fleetrst.pcap import PcapInfo, ifnames_from_ip_link, read_resets

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("link", ["en10mb", "sll2"])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_gen_pcap_is_reproducible_and_all_resets(tmp_path: Path, link: str, fmt: str) -> None:
    a, b, links = tmp_path / "a", tmp_path / "b", tmp_path / "links.txt"
    for out in (a, b):
        subprocess.run([sys.executable, str(BENCH / "gen_pcap.py"), str(out), "-n", "2000",
                        "--link", link, "--format", fmt, "--ip-link", str(links)],
                       check=True, capture_output=True)
    assert a.read_bytes() == b.read_bytes()
    packets, info = read_resets(a, ifnames=ifnames_from_ip_link(links.read_text()))
    assert info == PcapInfo(path=str(a), format=fmt, linktypes=[1 if link == "en10mb" else 276],
                            packets=2000, tcp=2000, resets=2000, ts_precision="us")
    assert {p.family for p in packets} == {4, 6}
    assert all(p.src.startswith(("198.18.0.", "fd00:", "127.0.0.1", "::1")) for p in packets)
    if link == "sll2":
        assert {p.ifname for p in packets} == {"lo", "eth0"}


def test_bench_analysis_runs_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, str(BENCH / "bench_analysis.py"), "-n", "3000",
                        "--scapy-n", "300", "--big", "5000", "--dir", str(tmp_path / "caps"),
                        "--json", str(out)],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| link | tool | packets |" in r.stdout and "5,000 packets" in r.stdout
    rows = json.loads(out.read_text())["rows"]
    tools = {(row["link"], row["tool"]) for row in rows}
    assert {(link, tool) for link in ("en10mb", "sll2")
            for tool in ("fleetrst", "fleetrst-iter", "dpkt", "scapy", "tshark", "tcpdump")} \
        <= tools
    for row in rows:
        if not row.get("missing") and not row.get("big") and row["tool"] != "tcpdump":
            assert row["same"] is True, row  # every tool counts what fleetrst counts


def test_bench_fleet_reads_run_directories(tmp_path: Path) -> None:
    fleet = load("bench_fleet")
    run = tmp_path / "run"
    for i, (started, offset) in enumerate([(100.25, 0.25), (100.5, None), (None, 0.0)]):
        (run / f"h{i}").mkdir(parents=True)
        (run / f"h{i}" / "host.json").write_text(json.dumps({
            "status": "ok" if started else "failed",
            "window_host": {"started": started} if started else {},
            "facts": {"clock_offset_s": offset}}))
    (run / "run.json").write_text(json.dumps({
        "window": {"start": "2026-01-01T00:00:00.000Z", "end": "2026-01-01T00:00:10.000Z"},
        "hosts": [{"directory": f"h{i}"} for i in range(3)]}))
    facts = fleet.window_facts(run)
    assert facts["spread_s"] == pytest.approx(0.5) and facts["started_hosts"] == 2
    assert facts["status"] == {"ok": 2, "partial": 0, "failed": 1}
    assert facts["window_end"] - facts["window_start"] == 10
    lines = [(10.5, "h0: connected (root@x)"), (11.0, "h1: connected (root@y)"),
             (12.0, "12:00:00 connected: 2/2 host(s) ready"), (13.0, "armed: 2/2 host(s)"),
             (25.0, "collected: 2/2 host(s)")]
    assert fleet.scan_stages(lines, 10.0) == {
        "first_connected": 0.5, "last_connected": 1.0, "preflight_done": 2.0, "armed": 3.0,
        "collected": 15.0}


@pytest.mark.lab
def test_bench_fleet_runs_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, str(BENCH / "bench_fleet.py"), "--hosts", "3",
                        "--window", "2", "--no-ansible", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| hosts | tool | total s |" in r.stdout
    (row,) = json.loads(out.read_text())["rows"]
    assert row["tool"] == "fleetrst scan" and row["hosts"] == 3
    assert row["status"]["ok"] == 3 and row["started_hosts"] == 3
    assert row["ssh_seen_max"] >= 1 and row["rss_mb"] > 0
