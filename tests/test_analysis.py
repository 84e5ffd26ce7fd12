"""Analysis of recorded real runs: the answer an engineer would reach by hand."""

import shutil
from pathlib import Path

from fleetrst.analysis import analyze_host, analyze_run, severity_rank

RUNS = Path(__file__).parent / "data" / "runs"


def test_closed_port_on_lo_is_a_local_dead_service_with_its_caller():
    host = analyze_host(RUNS / "closed-port-local" / "me", {"window": {"seconds": 5}})
    assert host["status"] == "ok"
    top = host["findings"][0]
    assert top["kind"] == "local_dead_service"
    assert top["interface"] == "lo"
    assert top["local"] == "127.0.0.1:7219"
    assert top["reason"] == "NO_SOCKET"
    assert top["process"]["name"] == "python3"
    assert 3 <= top["count"] <= 6
    assert "nothing listens on 7219" in top["summary"]
    assert host["resets"]["by_interface"]["lo"]["sent"] == top["count"]
    assert host["counters"]["OutRsts"]["delta"] >= top["count"]
    assert severity_rank(top["severity"]) >= severity_rank("warning")
    assert host["verdict"]["severity"] == top["severity"]


def test_a_damaged_capture_does_not_lose_the_host(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUNS / "closed-port-local", run)
    pcap = run / "me" / "rst-lo.pcap"
    pcap.write_bytes(b"this is not a pcap file at all")
    summary = analyze_run(run, jobs=1)
    host = summary["hosts"][0]
    assert host["status"] == "ok"
    assert host["counters"]["OutRsts"]["delta"] > 0
    assert any("lo:" in w for w in host["warnings"])


def test_a_host_folder_without_counters_is_failed_with_a_reason(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUNS / "closed-port-local", run)
    (run / "me" / "counters-start.txt").unlink()
    host = analyze_run(run, jobs=1)["hosts"][0]
    assert host["status"] == "failed"
    assert host["error"]
