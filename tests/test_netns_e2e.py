"""End to end with containers: lab hosts whose scenario runs in a network namespace nested in the
host (as a container's does), scanned with the real CLI over real SSH.

- A closed-port client inside a nested namespace: the finding is on that namespace's own lo and
  names its process; the host's own namespace has no such finding; the counter deltas come from
  the nested namespace.
- A host with a hundred nested namespaces: every one counted, captures capped at
  --max-namespaces, the window held, and the host-side cost reported.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetrst.lab import LabState, lab_down, lab_up

pytestmark = pytest.mark.lab


def _seed() -> int:
    return int(os.environ.get("FLEETRST_LAB_SEED") or random.SystemRandom().randrange(1, 2**31))


def fleetrst(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleetrst", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _lab(tmp_path_factory: pytest.TempPathFactory, hosts: int, **kw: Any) -> Iterator[LabState]:
    seed = _seed()
    directory = tmp_path_factory.mktemp("lab")
    print(f"\nlab seed: {seed} (FLEETRST_LAB_SEED={seed} reproduces), {kw}")
    state = lab_up(directory, hosts, seed=seed, **kw)
    try:
        yield state
    finally:
        lab_down(directory)


@pytest.fixture(scope="module")
def nested_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    yield from _lab(tmp_path_factory, 2, scenarios=["closed_port@netns", "closed_port@named"],
                    idle_named={"host0": 1})


@pytest.fixture(scope="module")
def crowded_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    yield from _lab(tmp_path_factory, 1, scenarios=["closed_port@netns"], idle_netns={"host0": 100})


def _scan(fleet: LabState, out: Path, *extra: str, duration: int = 6) -> dict[str, Any]:
    r = fleetrst("scan", str(fleet.inventory), "--known-hosts", str(fleet.known_hosts),
                 "--duration", str(duration), "-o", str(out), "--fail-on", "critical", *extra)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    assert _left(fleet, out) == [], "the scan left something on the hosts"
    return json.loads((out / "summary.json").read_text())


def _left(fleet: LabState, out: Path) -> list[str]:
    """The run's directories, and captures still running in the hosts' nested namespaces."""
    run_id = json.loads((out / "run.json").read_text())["id"]
    left = [str(p) for p in Path("/tmp").glob(f"fleetrst-{run_id}-*")]
    inodes = {n.inode for h in fleet.hosts for n in h.netns}
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "tcpdump" in cmd and "tcp-rst" in cmd and os.stat(proc / "ns" / "net").st_ino in inodes:
                left.append(f"{proc.name}: {cmd}")
        except OSError:
            continue
    return left


def test_a_client_in_a_nested_namespace_is_found_on_that_namespaces_lo(
        nested_fleet: LabState, tmp_path: Path) -> None:
    summary = _scan(nested_fleet, tmp_path / "run")
    hosts = {h["name"]: h for h in summary["hosts"]}
    for lab_host in nested_fleet.hosts:
        exp = lab_host.expected
        h = hosts[lab_host.name]
        assert h["status"] == "ok", h.get("error")
        inode = exp["netns"]["inode"]
        mine = [f for f in h["findings"] if f["netns"] and f["netns"]["inode"] == inode]
        assert mine, h["findings"]
        f = mine[0]
        assert f["kind"] == exp["kind"] and f["interface"] == "lo"
        assert f["local"] == f"127.0.0.1:{exp['local_port']}"
        assert f["process"] and f["process"]["name"] == exp["process"]
        assert exp["process"] in f["summary"] and "on its own lo" in f["summary"]
        if exp["netns"].get("name"):
            assert f["netns"]["name"] == exp["netns"]["name"]
        assert 0.6 * exp["rate"] <= f["per_s"] <= 1.4 * exp["rate"]
        # The host's own namespace has no such finding, and its counters did not move for it.
        own = [g for g in h["findings"] if g["netns"] is None]
        assert not [g for g in own if g["kind"] == "local_dead_service"], own
        row = next(r for r in h["namespaces"]["items"] if r["inode"] == inode)
        assert row["captured"] and row["sent"] >= f["count"] > 0
        assert h["counters"]["OutRsts"]["delta"] < row["sent"]
        assert (tmp_path / "run" / lab_host.name / "netns" / str(inode) / "rst-lo.pcap").exists()
    page = (tmp_path / "run" / nested_fleet.hosts[0].name / "report.html").read_text()
    assert 'id="namespaces"' in page and "Host-side cost" in page


def test_a_host_with_a_hundred_namespaces_keeps_the_window_and_the_caps(
        crowded_fleet: LabState, tmp_path: Path) -> None:
    (lab_host,) = crowded_fleet.hosts
    started = time.monotonic()
    summary = _scan(crowded_fleet, tmp_path / "run", "--max-namespaces", "16", duration=5)
    took = time.monotonic() - started
    (h,) = summary["hosts"]
    assert h["status"] == "ok", h.get("error")
    ns = h["namespaces"]
    assert ns["counted"] >= 101 and ns["captured"] == 16
    # The busy one had just sent resets: it is among those captured.
    inode = lab_host.expected["netns"]["inode"]
    row = next(r for r in ns["items"] if r["inode"] == inode)
    assert row["captured"], row
    assert sum(1 for r in ns["items"] if r["not_captured"] == "beyond --max-namespaces=16") >= 85
    assert abs(h["window"]["seconds"] - 5) < 0.5
    cost = h["cost"]
    assert cost["namespaces_counted"] >= 101 and cost["namespaces_captured"] == 16
    assert cost["tcpdumps"] <= 2 + 16 * 8
    # Reported, and small next to the window (how small is bench/'s business, not a test's).
    assert 0 < cost["start_counters_s"] < 2.5 and 0 < cost["end_counters_s"] < 2.5
    print(f"\nhost-side cost with {cost['namespaces_counted']} namespaces: {cost}; scan took {took:.1f} s")
    page = (tmp_path / "run" / lab_host.name / "report.html").read_text()
    assert "Host-side cost" in page and "16 captured" in page
