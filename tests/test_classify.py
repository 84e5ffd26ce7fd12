"""The classifier on real runs recorded in the lab, one per class (tests/data/runs/README.md).

Each run's expected.json holds the lab's ground truth; analysis must reach it from the raw files,
with the kernel's reasons and, where the trace is gone, from the packets and counters alone.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from fleetrst.analysis import analyze_host, analyze_run, severity_rank
from fleetrst.analysis.classify import MAX_GROUPS, SCAN_MIN_PORTS
from fleetrst.facts import parse_counters_file
from fleetrst.pcap import read_resets
from fleetrst.trace import parse_trace

RUNS = Path(__file__).parent / "data" / "runs"
RECORDED = sorted(p.parent.name for p in RUNS.glob("*/expected.json"))
HOSTS = [(run, host) for run in RECORDED
         for host in json.loads((RUNS / run / "expected.json").read_text())["hosts"]]


def expected(run: str, host: str) -> dict[str, Any]:
    return json.loads((RUNS / run / "expected.json").read_text())["hosts"][host]


def addr(endpoint: str) -> str:
    """'198.18.0.7:*' / '127.0.0.1:80' / '198.18.0.7' -> the address."""
    return endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint


def match(findings: list[dict[str, Any]], exp: dict[str, Any]) -> dict[str, Any]:
    """The finding that answers an expected one (same kind and local address), or fail."""
    for f in findings:
        if f["kind"] == exp["kind"] and addr(f["local"]) == addr(exp["local"]) and (
                f["kind"].startswith("received_") or exp["local"].endswith(":*")
                or f["local"] == exp["local"]):
            return f
    raise AssertionError(f"no {exp['kind']} finding for {exp['local']} in {findings}")


def check(f: dict[str, Any], exp: dict[str, Any]) -> None:
    """A finding says what the lab did: where, to whom, why, which process, how often."""
    assert f["interface"] == exp["interface"], f
    if not f["kind"].startswith("received_"):
        assert f["local"] == exp["local"], f
    assert exp["peer"] in {addr(p) for p in f["peers"]}, f
    assert f["reason"] == exp["reason"], f
    if exp.get("process"):
        assert f["process"] and f["process"]["name"] == exp["process"], f
    elif "process" in exp:
        assert f["process"] is None, f
    if exp.get("counter"):
        assert f.get("counter") == exp["counter"], f
        assert f["evidence"]["counters"].get(exp["counter"], 0) > 0, f
        assert exp["counter"] in f["summary"]
    if exp.get("ports"):
        got = set(f["ports"])
        assert got <= set(exp["ports"]) and len(got) >= SCAN_MIN_PORTS, f
    # The generators run at a fixed rate.
    assert 0.6 * exp["rate"] <= f["per_s"] <= 1.4 * exp["rate"], (f, exp["rate"])


@pytest.mark.parametrize(("run", "host"), HOSTS, ids=[f"{r}/{h}" for r, h in HOSTS])
def test_recorded_run_gives_the_labs_ground_truth(run: str, host: str) -> None:
    exp = expected(run, host)
    h = analyze_host(RUNS / run / host, {})
    assert h["status"] == "ok"
    assert h["facts"]["classification"] == "kernel reasons + packet rules"
    if not exp["findings"]:
        assert h["findings"] == []
        assert h["verdict"]["severity"] == "ok"
        assert h["resets"]["sent"] == h["resets"]["received"] == 0
        return
    top = h["findings"][0]
    assert top["kind"] == exp["findings"][0]["kind"], h["findings"]
    check(top, exp["findings"][0])
    for e in exp["findings"][1:]:
        check(match(h["findings"], e), e)
    assert (severity_rank(top["severity"]) >= severity_rank("warning")) == exp["warning"], top
    assert h["verdict"]["severity"] == top["severity"]
    assert h["verdict"]["text"].startswith(top["summary"])


@pytest.mark.parametrize(("run", "host"), HOSTS, ids=[f"{r}/{h}" for r, h in HOSTS])
def test_without_the_trace_the_packet_rules_and_counters_give_the_same_kinds(
        run: str, host: str, tmp_path: Path) -> None:
    copy = tmp_path / host
    shutil.copytree(RUNS / run / host, copy)
    (copy / "tcp_send_reset.trace").unlink()
    exp = expected(run, host)
    h = analyze_host(copy, {})
    assert h["facts"]["classification"] == "packet rules"
    assert any("packet rules" in m for m in h["facts"]["missing"])
    assert [f["kind"] for f in h["findings"]] == [e["kind"] for e in exp["findings"]]
    for f, e in zip(h["findings"], exp["findings"]):
        assert f["reason"] is None and f["evidence"]["basis"] == "packet rules"
        assert f["interface"] == e["interface"]
        assert addr(f["local"]) == addr(e["local"])
        if e["kind"] in ("abort", "listen_overflow", "stray") and e.get("process"):
            # The socket tables still name listeners and owners; only callers need the trace.
            assert f["process"] and f["process"]["name"] == e["process"]
        if e.get("counter"):
            assert f.get("counter") == e["counter"]


def test_listen_overflow_is_named_by_its_listener_never_by_the_traced_comm() -> None:
    exp = expected("listen-overflow", "host0")["findings"][0]
    run = RUNS / "listen-overflow" / "host0"
    trace = parse_trace((run / "tcp_send_reset.trace").read_text(),
                        (run / "tcp_send_reset.format").read_text())
    port = int(exp["local"].rsplit(":", 1)[1])
    traced = [e for e in trace.resets if e.sport == port]
    # The trap is real: the kernel traced these on the listener, without the peer, under the
    # name of the client that happened to be on the CPU.
    assert traced and {(e.dst, e.dport, e.state) for e in traced} == {("0.0.0.0", 0, "TCP_LISTEN")}
    assert {e.comm for e in traced} == {exp["client_process"]}
    top = analyze_host(run, {})["findings"][0]
    assert top["process"]["name"] == exp["process"] != exp["client_process"]
    assert top["count"] <= top["evidence"]["counters"]["ListenOverflows"]
    # On the wire it looks like a stray: [R] without ACK, to the client's real port.
    packets, _ = read_resets(run / "rst-lo.pcap")
    ours = [p for p in packets if p.sport == port]
    assert ours and not any(p.is_ack for p in ours) and all(p.dport != 0 for p in ours)


def _counter_cell(text: str, name: str) -> tuple[list[str], int, int]:
    """The lines of a counters file, and the row and column of counter `name`'s value."""
    lines = text.split("\n")
    for i in range(len(lines) - 1):
        head, vals = lines[i].split(), lines[i + 1].split()
        if head and vals and head[0] == vals[0] and name in head and vals[1].lstrip("-").isdigit():
            return lines, i + 1, head.index(name)
    raise AssertionError(f"no counter {name}")


def _set_counter(path: Path, name: str, value: int) -> None:
    lines, row, col = _counter_cell(path.read_text(), name)
    vals = lines[row].split()
    vals[col] = str(value)
    lines[row] = " ".join(vals)
    path.write_text("\n".join(lines))


def _get_counter(path: Path, name: str) -> int:
    lines, row, col = _counter_cell(path.read_text(), name)
    return int(lines[row].split()[col])


def test_listen_overflow_needs_the_overflow_counter_to_move(tmp_path: Path) -> None:
    copy = tmp_path / "host0"
    shutil.copytree(RUNS / "listen-overflow" / "host0", copy)
    _set_counter(copy / "counters-end.txt", "ListenOverflows",
                 _get_counter(copy / "counters-start.txt", "ListenOverflows"))
    h = analyze_host(copy, {})
    assert "ListenOverflows" not in h["counters"] or h["counters"]["ListenOverflows"]["delta"] == 0
    assert all(f["kind"] != "listen_overflow" for f in h["findings"]), h["findings"]


def test_a_scan_names_the_peer_and_ports_and_both_hosts_are_linked() -> None:
    summary = analyze_run(RUNS / "port-sweep", jobs=1)
    hosts = {h["name"]: h for h in summary["hosts"]}
    exp = json.loads((RUNS / "port-sweep" / "expected.json").read_text())["hosts"]
    scanned = next(n for n, e in exp.items() if e["scenario"] == "port_sweep")
    scanner = exp[scanned]["findings"][0]["peer_host"]
    scan = match(hosts[scanned]["findings"], exp[scanned]["findings"][0])
    got = match(hosts[scanner]["findings"],
                next(e for e in exp[scanner]["findings"] if e["kind"] == "received_refused"))
    assert scan["peer_host"] == scanner and got["peer_host"] == scanned
    assert f"{exp[scanner]['address']} is {scanner} of this run." in scan["summary"]
    assert f"{exp[scanned]['address']} is {scanned} of this run." in got["summary"]
    scanner_process = got["process"]["name"]
    assert scan["peer_process"] == {"host": scanner, **got["process"]}
    assert scanner_process in scan["summary"]
    assert scanned in got["next_step"]
    assert set(got["ports"]) == set(scan["ports"])
    links = summary["links"]
    assert [(lk["from"], lk["to"], lk["kind"], lk["count"]) for lk in links] == [
        (scanned, scanner, "scan", scan["count"])]
    assert set(links[0]["ports"]) == set(scan["ports"])
    # The verdicts carry the link too: it is in the top finding's summary.
    assert scanner in hosts[scanned]["verdict"]["text"]


def test_a_run_captured_with_tcpdump_any_reads_to_the_same_findings(tmp_path: Path) -> None:
    meta = json.loads((RUNS / "port-sweep" / "expected.json").read_text())
    host = meta["any_capture"]
    before = analyze_host(RUNS / "port-sweep" / host, {})
    copy = tmp_path / host
    shutil.copytree(RUNS / "port-sweep" / host, copy)
    info = json.loads((copy / "host.json").read_text())
    index = {c["interface"]: c["index"] for c in info["captures"]}
    # Interface indexes in the SLL2 records are the host's own (ip-link.txt), not fleetrst's.
    packets, pinfo = read_resets(copy / "rst-any.pcap")
    assert pinfo.linktypes == [276]
    assert {p.ifindex for p in packets} == {index["lo"], index["eth0"]} and {p.ifname for p in packets} == {None}
    for cap in info["captures"]:
        (copy / f"rst-{cap['tag']}.pcap").unlink()
    info["captures"] = [{"interface": "any", "index": 0, "tag": "any"}]
    (copy / "host.json").write_text(json.dumps(info))
    after = analyze_host(copy, {})

    def essence(h: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(f["kind"], f["interface"], f["local"], f["count"], f["reason"],
                 (f["process"] or {}).get("name")) for f in h["findings"]]

    assert essence(after) == essence(before)
    assert {f["interface"] for f in after["findings"]} == {"lo", "eth0"}
    assert after["resets"]["by_interface"] == before["resets"]["by_interface"]
    assert [i["name"] for i in after["facts"]["interfaces"] if i["captured"]] == ["lo", "eth0"]

    # Both kinds of capture at once: each reset counts once.
    info["captures"] = [{"interface": "lo", "index": index["lo"], "tag": "lo"},
                        {"interface": "eth0", "index": index["eth0"], "tag": "eth0"},
                        {"interface": "any", "index": 0, "tag": "any"}]
    for tag in ("lo", "eth0"):
        shutil.copy(RUNS / "port-sweep" / host / f"rst-{tag}.pcap", copy)
    (copy / "host.json").write_text(json.dumps(info))
    assert essence(analyze_host(copy, {})) == essence(before)

    # Without ip-link.txt the indexes cannot be named, and the host says so.
    (copy / "ip-link.txt").unlink()
    for tag in ("lo", "eth0"):
        (copy / f"rst-{tag}.pcap").unlink()
    info["captures"] = [{"interface": "any", "index": 0, "tag": "any"}]
    (copy / "host.json").write_text(json.dumps(info))
    blind = analyze_host(copy, {})
    assert {f["interface"] for f in blind["findings"]} == {"any"}
    assert any("ip-link.txt" in w for w in blind["warnings"])


def test_time_wait_and_no_socket_strays_are_told_apart_by_the_reason() -> None:
    exp = expected("stray", "host0")["findings"]
    h = analyze_host(RUNS / "stray" / "host0", {})
    for e in exp:
        f = match(h["findings"], e)
        assert f["detail"] == e["detail"]
        assert all(" > " in s and "Flags [R]," in s for s in f["evidence"]["samples"])
    tw = match(h["findings"], exp[0])
    assert "TIME-WAIT" in tw["summary"]
    assert "TIME-WAIT" not in match(h["findings"], exp[1])["summary"]


def test_an_alarm_that_would_fire_makes_the_top_finding_a_warning(tmp_path: Path) -> None:
    """The stray run is below every threshold; counted resets above the alarm's 5/s, even if the
    captures missed them, must not leave the host at info."""
    copy = tmp_path / "host0"
    shutil.copytree(RUNS / "stray" / "host0", copy)
    quiet = analyze_host(copy, {})
    assert max(severity_rank(f["severity"]) for f in quiet["findings"]) == severity_rank("info")
    assert not quiet["alarms"][0]["firing"]
    seconds = quiet["window"]["seconds"]
    end = copy / "counters-end.txt"
    _set_counter(end, "OutRsts", _get_counter(end, "OutRsts") + round(6 * seconds))
    loud = analyze_host(copy, {})
    assert loud["alarms"][0]["firing"]
    assert loud["findings"][0]["severity"] == "warning"
    assert loud["verdict"]["severity"] == "warning"
    assert [f["kind"] for f in loud["findings"]] == [f["kind"] for f in quiet["findings"]]


def _pcap(records: list[tuple[float, int, int, int]]) -> bytes:
    """A classic pcap (Ethernet, µs) of IPv4 resets on 127.0.0.1: (time, sport, dport, flags)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ts, sport, dport, flags in records:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, bytes([127, 0, 0, 1]),
                         bytes([127, 0, 0, 1]))
        tcp = struct.pack("!HHIIBBHHH", sport, dport, 12345, 0, 5 << 4, flags, 0, 0, 0)
        frame = b"\0" * 12 + b"\x08\x00" + ip + tcp
        sec = int(ts)
        out.append(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame)
    return b"".join(out)


def test_many_small_groups_are_told_as_one_finding_and_no_reset_is_lost(tmp_path: Path) -> None:
    copy = tmp_path / "host0"
    shutil.copytree(RUNS / "quiet" / "host0", copy)
    start = parse_counters_file((copy / "counters-start.txt").read_text()).time
    assert start is not None
    # 3 resets without ACK from each of 100 local ports (a host restart seen by many clients).
    records = [(start + 0.5 + i * 0.01, 2000 + i % 100, 40000 + i, 0x04) for i in range(300)]
    (copy / "rst-lo.pcap").write_bytes(_pcap(records))
    h = analyze_host(copy, {})
    strays = [f for f in h["findings"] if f["kind"] == "stray"]
    assert len(strays) == MAX_GROUPS + 1
    assert sum(f["count"] for f in strays) == 300 == h["resets"]["sent"]
    rest = next(f for f in strays if f["local"] == "*")
    assert rest["groups"] == 100 - MAX_GROUPS and rest["count"] == 3 * (100 - MAX_GROUPS)
