"""End to end, every class at once: one lab of all scenarios, one real scan over SSH, and each
host's top finding checked against the lab's ground truth — kind, interface, local port, peer,
kernel reason, process — plus the cross-host links of the port sweep. (The scan's mechanics,
cleanup and host keys are covered by test_scan_e2e.py.)"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from fleetrst.analysis import severity_rank
from fleetrst.lab import SCENARIOS, LabHost, LabState, lab_down, lab_up

pytestmark = pytest.mark.lab

DURATION = 6


def _seed() -> int:
    return int(os.environ.get("FLEETRST_LAB_SEED") or random.SystemRandom().randrange(1, 2**31))


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabState, dict[str, Any]]]:
    """The lab (placement, ports and names drawn from the seed) and the summary of one scan."""
    seed = _seed()
    scenarios = list(SCENARIOS)
    random.Random(seed).shuffle(scenarios)
    print(f"\nlab seed: {seed} (FLEETRST_LAB_SEED={seed} reproduces), scenarios: {scenarios}")
    directory = tmp_path_factory.mktemp("lab")
    out = tmp_path_factory.mktemp("scan") / "run"
    try:
        state = lab_up(directory, hosts=len(scenarios), seed=seed, scenarios=scenarios, ttl=300)
        r = subprocess.run(
            [sys.executable, "-m", "fleetrst", "scan", str(state.inventory), "--known-hosts",
             str(state.known_hosts), "--duration", str(DURATION), "-o", str(out)],
            capture_output=True, text=True, timeout=180, check=False)
        print(r.stdout, r.stderr[-3000:])
        assert r.returncode == 3, "the dead host makes the exit status say some hosts failed"
        yield state, json.loads((out / "summary.json").read_text())
    finally:
        lab_down(directory)


def _host(summary: dict[str, Any], lab_host: LabHost) -> dict[str, Any]:
    return next(h for h in summary["hosts"] if h["name"] == lab_host.name)


def _addr(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s not in ("quiet", "dead")])
def test_the_top_finding_explains_the_scenario(scanned: tuple[LabState, dict[str, Any]],
                                               scenario: str) -> None:
    state, summary = scanned
    lh = next(h for h in state.hosts if h.scenario == scenario)
    exp = lh.expected
    h = _host(summary, lh)
    assert h["status"] == "ok", h.get("error")
    assert h["facts"]["classification"] == "kernel reasons + packet rules"
    top = h["findings"][0]
    assert top["kind"] == exp["kind"], (scenario, h["findings"])
    assert top["interface"] == exp["interface"], top
    assert _addr(top["local"]) == exp["local_addr"], top
    if "local_port" in exp:
        assert top["local"] == f"{exp['local_addr']}:{exp['local_port']}", top
    assert exp["peer"] in {_addr(p) for p in top["peers"]}, top
    assert top["reason"] == exp["reason"], top
    if exp.get("process"):
        assert top["process"] and top["process"]["name"] == exp["process"], top
    else:
        assert top["process"] is None, top
    if exp.get("counter"):
        assert top["counter"] == exp["counter"], top
        assert top["evidence"]["counters"][exp["counter"]] >= top["count"] // 2, top
    if scenario == "port_sweep":
        assert set(top["ports"]) <= set(exp["ports"]) and len(top["ports"]) >= 8, top
    assert 0.5 * exp["rate"] <= top["per_s"] <= 1.5 * exp["rate"], top
    assert severity_rank(top["severity"]) >= severity_rank("warning"), top
    assert h["verdict"]["severity"] == top["severity"]


def test_the_listen_overflow_listener_is_named_not_the_client_on_the_cpu(
        scanned: tuple[LabState, dict[str, Any]]) -> None:
    state, summary = scanned
    lh = next(h for h in state.hosts if h.scenario == "listen_overflow")
    top = _host(summary, lh)["findings"][0]
    assert top["process"]["name"] == lh.expected["process"] != lh.expected["client_process"]
    assert "ListenOverflows +" in top["summary"]


def test_the_port_sweep_links_scanned_host_and_scanner(scanned: tuple[LabState, dict[str, Any]]) -> None:
    state, summary = scanned
    lh = next(h for h in state.hosts if h.scenario == "port_sweep")
    exp = lh.expected
    scanner = next(h for h in state.hosts if h.name == exp["scanner_host"])
    scan = _host(summary, lh)["findings"][0]
    assert scan["peer_host"] == scanner.name
    assert f"{scanner.address} is {scanner.name} of this run." in scan["summary"]
    got = next(f for f in _host(summary, scanner)["findings"] if f["kind"] == "received_refused")
    assert got["peer_host"] == lh.name and got["interface"] == "eth0"
    assert {_addr(p) for p in got["peers"]} == {lh.address}
    assert got["process"] and got["process"]["name"] == exp["scanner_process"]
    assert scan["peer_process"]["name"] == exp["scanner_process"]
    assert set(got["ports"]) == set(scan["ports"])
    # The scanner's own scenario still comes first on its page.
    assert _host(summary, scanner)["findings"][0]["kind"] == scanner.expected["kind"]
    links = [(lk["from"], lk["to"], lk["kind"]) for lk in summary["links"]]
    assert links == [(lh.name, scanner.name, "scan")], summary["links"]


def test_the_quiet_host_has_no_warning_and_the_dead_host_is_failed(
        scanned: tuple[LabState, dict[str, Any]]) -> None:
    state, summary = scanned
    quiet = _host(summary, next(h for h in state.hosts if h.scenario == "quiet"))
    assert quiet["status"] == "ok"
    assert all(severity_rank(f["severity"]) < severity_rank("warning") for f in quiet["findings"])
    assert not any(a["firing"] for a in quiet["alarms"])
    dead = _host(summary, next(h for h in state.hosts if h.scenario == "dead"))
    assert dead["status"] == "failed" and "refused" in dead["error"]
