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


def _with_host_json(run: Path, host: str, change) -> None:
    import json

    path = run / host / "host.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_a_capture_that_reached_its_cap_is_said_so_even_when_tcpdump_ran_on(tmp_path):
    # tcpdump with SIGXFSZ ignored (inherited) gets EFBIG and exits by `timeout` (124), not
    # 153: the file's size against the recorded cap is what tells.
    run = tmp_path / "run"
    shutil.copytree(RUNS / "closed-port-local", run)
    size = (run / "me" / "rst-lo.pcap").stat().st_size

    def cap_lo(meta):
        for c in meta["captures"]:
            c["cap_bytes"] = size + 60 if c["interface"] == "lo" else 64 << 20

    _with_host_json(run, "me", cap_lo)
    host = analyze_run(run, jobs=1)["hosts"][0]
    lo = next(p for p in host["pcaps"] if p["interface"] == "lo")
    assert lo["capped"] and lo["truncated"]
    assert not next(p for p in host["pcaps"] if p["interface"] != "lo")["capped"]
    assert "lo: capture hit the size cap; later resets were not recorded" in host["warnings"]
    assert not any("cut short" in w for w in host["warnings"])


def test_a_capture_well_below_its_cap_is_not_capped(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUNS / "closed-port-local", run)
    size = (run / "me" / "rst-lo.pcap").stat().st_size
    _with_host_json(run, "me", lambda meta: [c.update(cap_bytes=size + 4096) for c in meta["captures"]])
    host = analyze_run(run, jobs=1)["hosts"][0]
    assert not any(p["capped"] for p in host["pcaps"])
    assert not any("size cap" in w for w in host["warnings"])


def test_a_host_clock_an_hour_off_reports_the_window_on_the_orchestrators_clock(tmp_path):
    import datetime as dt

    run = tmp_path / "run"
    shutil.copytree(RUNS / "closed-port-local", run)
    before = analyze_run(run, jobs=1)["hosts"][0]
    _with_host_json(run, "me", lambda meta: meta["facts"].update(clock_offset_s=3600.25))
    after = analyze_run(run, jobs=1)["hosts"][0]

    def t(text):
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    assert abs(t(before["window"]["start"]) - t(after["window"]["start"]) - 3600.25) < 0.01
    # The recorded captures follow the same clock as its counters: nothing to re-align...
    assert after["findings"][0]["count"] == before["findings"][0]["count"]
    assert not any("capture timestamps" in w for w in after["warnings"])
    assert any("clock is +3600.2 s off" in w for w in after["warnings"])


def test_captures_on_real_time_from_a_host_whose_library_clock_is_off_are_aligned(tmp_path):
    # As under libfaketime: `date` (counters, window) an hour ahead, the kernel's packet
    # timestamps not. Shift the host's text clocks, not the packets.
    import re

    run = tmp_path / "run"
    shutil.copytree(RUNS / "closed-port-local", run)
    before = analyze_run(run, jobs=1)["hosts"][0]
    for name in ("counters-start.txt", "counters-end.txt", "sockets-start.txt", "sockets.txt"):
        path = run / "me" / name
        path.write_text(re.sub(r"^time=([0-9.]+)$", lambda m: f"time={float(m.group(1)) + 3600:.6f}",
                               path.read_text(), flags=re.M))
    trace = run / "me" / "tcp_send_reset.trace"
    if trace.exists():
        trace.write_text(re.sub(r"fleetrst-sync ([0-9.]+)", lambda m: f"fleetrst-sync {float(m.group(1)) + 3600:.6f}",
                                trace.read_text()))
    _with_host_json(run, "me", lambda meta: meta["facts"].update(clock_offset_s=3600.0))
    after = analyze_run(run, jobs=1)["hosts"][0]
    assert after["findings"][0]["kind"] == before["findings"][0]["kind"]
    assert after["findings"][0]["count"] == before["findings"][0]["count"]
    assert after["findings"][0]["reason"] == before["findings"][0]["reason"]
    assert any("capture timestamps are +3600 s off" in w for w in after["warnings"])
