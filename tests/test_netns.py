"""Network namespaces (containers, pods): the pure parts, and analysis and reports of a recorded run.

tests/data/runs/netns-closed-port/ is the real host script's output on a host with containers
(record_netns.py): a dead-service client in the host's own namespace and another, on the same
port, in a container's namespace; a third namespace only counted (beyond --max-namespaces=1).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fleetrst import report
from fleetrst.analysis import analyze_host, analyze_run
from fleetrst.analysis.namespaces import place_trace
from fleetrst.baseline import finding_key, netns_key
from fleetrst.cli import _namespaces_spec_ok
from fleetrst.collect import local_name
from fleetrst.netns import (
    Netns,
    container_of,
    label,
    parse_cost,
    parse_netns,
    preflight_netns,
    select,
    why_not,
)
from fleetrst.pcap import RstPacket
from fleetrst.trace import ConnectEvent, ResetEvent, Trace

DATA = Path(__file__).parent / "data"
RUN = DATA / "runs" / "netns-closed-port"
HOST = RUN / "host0"
EXPECTED = json.loads((RUN / "expected-netns.json").read_text())
SCHEMA = Path(report.__file__).with_name("summary.schema.json")
ROLE = Path(__file__).parents[1] / "playbooks" / "roles" / "fleetrst"
HEX = "0efe4a411954f6e2a20b9f43cf3d32e1c976633845f779692f80608eb23d7ea8"
UID = "8c2d3a1e-5b4f-4c1d-9e2a-1b2c3d4e5f60"
KUBE_CONTAINERD = ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
                   f"{UID.replace('-', '_')}.slice/cri-containerd-{HEX}.scope")


# --- discovery ----------------------------------------------------------------------------------


def test_the_discovery_parser_reads_a_real_preflight() -> None:
    listed = parse_netns((HOST / "netns-preflight.txt").read_text())
    inodes = EXPECTED["inodes"]
    by_inode = {ns.inode: ns for ns in listed}
    assert set(inodes.values()) < set(by_inode)
    app = by_inode[inodes["app"]]
    assert app.comm == "appcli" and app.pid and app.cmdline and "python" in app.cmdline
    assert app.container is not None and app.container.id == EXPECTED["container"]
    assert app.container.runtime == "docker" and app.state is None
    idle = by_inode[inodes["idle"]]
    assert idle.name == "idle" and idle.pid is None and idle.comm is None and idle.outrsts is None
    assert by_inode[inodes["blue"]].name == "blue" and by_inode[inodes["blue"]].comm == "bluecli"


def test_netns_txt_says_what_was_captured_and_why_not() -> None:
    table = {ns.inode: ns for ns in parse_netns((HOST / "netns.txt").read_text())}
    inodes = EXPECTED["inodes"]
    assert table[inodes["app"]].state == "captured"
    assert table[inodes["blue"]].state == table[inodes["idle"]].state == "beyond_max"
    assert [ns.state for ns in table.values()].count("self") == 1
    assert table[inodes["app"]].total is not None and table[inodes["app"]].total >= 1


def test_preflight_output_gives_the_hosts_own_namespace_and_the_list() -> None:
    section = (HOST / "netns-preflight.txt").read_text()
    stdout = ("fleetrst_remote=1\nnetns_self=4026531840\n--- ip -o link\n1: lo: <UP>\n"
              f"--- netns\n{section}")
    self_inode, listed = preflight_netns(stdout)
    assert self_inode == 4026531840
    assert [ns.inode for ns in listed] == [ns.inode for ns in parse_netns(section)]
    assert preflight_netns("fleetrst_remote=1\n") == (None, [])


def test_hostile_and_broken_discovery_lines() -> None:
    text = ("4026532001\t42\t-\t7\t-\tevil\x1b[2J\x0b<b>\tcmd\x85 with\u2028odd\n"
            "not-a-number\t1\t-\t0\t-\tx\ty\n"
            "4026532002\t\n"
            "4026532001\t43\t-\t0\t-\tdup\t-\n"
            "4026532003\tx\tname\t-\t-\t-\t-\n")
    listed = parse_netns(text)
    assert [ns.inode for ns in listed] == [4026532001, 4026532003]
    assert listed[0].comm == "evil\x1b[2J\x0b<b>" and listed[0].cmdline == "cmd\x85 with\u2028odd"
    assert listed[1].pid is None and listed[1].name == "name"


# --- containers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("cgroup", "runtime", "cid", "pod"), [
    (f"/system.slice/docker-{HEX}.scope", "docker", HEX, None),
    (f"/docker/{HEX}", "docker", HEX, None),
    (f"/docker/{HEX}/init.scope", "docker", HEX, None),
    (KUBE_CONTAINERD, "containerd", HEX, UID),
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{HEX}.scope", "cri-o", HEX, UID),
    (f"/kubepods/besteffort/pod{UID}/{HEX}", None, HEX, UID),
    (f"/kubepods/pod{UID}", None, None, UID),
    (f"/machine.slice/libpod-{HEX}.scope", "podman", HEX, None),
    (f"/system.slice/DOCKER-{HEX.upper()}.scope", "docker", HEX, None),
])
def test_container_ids_from_cgroup_paths(cgroup: str, runtime: str | None, cid: str | None,
                                         pod: str | None) -> None:
    c = container_of(cgroup)
    assert c is not None
    assert (c.runtime, c.id, c.pod) == (runtime, cid, pod)
    assert c.short == (cid[:12] if cid else None)


@pytest.mark.parametrize("cgroup", [
    None, "", "/", "/system.slice/sshd.service", "/user.slice/user-0.slice/session-3.scope",
    "/process_api/b79bf0b95775656bf646b5a639ade894", f"/system.slice/docker-{HEX[:-1]}.scope",
    f"/system.slice/notdocker-{HEX}.scope", f"/system.slice/docker-{HEX}.scope.evil",
    "/kubepods/podnot-a-uid", "<script>alert(1)</script>",
])
def test_other_cgroups_name_no_container(cgroup: str | None) -> None:
    assert container_of(cgroup) is None


# --- the choice ---------------------------------------------------------------------------------


def _ns(inode: int, name: str | None = None, cgroup: str | None = None) -> Netns:
    return Netns(inode, 100 + inode % 100, name, 0, cgroup, "x", None)


LISTED = [_ns(4026531840), _ns(4026532001, "blue"),
          _ns(4026532002, cgroup=f"/system.slice/docker-{HEX}.scope"),
          _ns(4026532003, cgroup=f"/kubepods/pod{UID}/{'ab' * 32}")]


@pytest.mark.parametrize(("spec", "arg", "notes"), [
    ("all", "all", 0), ("host", "host", 0), (" all ", "all", 0),
    ("4026532001", "4026532001", 0),
    ("blue", "4026532001", 0),
    (HEX[:12], "4026532002", 0),
    (HEX[:12].upper(), "4026532002", 0),
    (UID[:8], "4026532003", 0),
    ("blue,4026532002,blue", "4026532001,4026532002", 0),
    ("4026531840", "0", 1),  # the host's own is never a namespace to capture inside
    ("nosuch", "0", 1),
    ("abc", "0", 1),  # too short a prefix to mean a container
    ("blue,nosuch", "4026532001", 1),
])
def test_namespaces_option_becomes_the_host_scripts_argument(spec: str, arg: str, notes: int) -> None:
    got, said = select(spec, LISTED, 4026531840)
    assert got == arg
    assert len(said) == notes


def test_the_ansible_filters_choose_as_fleetrst_does() -> None:
    spec = importlib.util.spec_from_file_location("fleetrst_filters",
                                                  ROLE / "filter_plugins" / "fleetrst_filters.py")
    assert spec is not None and spec.loader is not None
    filters = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(filters)
    lines = "\n".join(f"{ns.inode}\t{ns.pid}\t{ns.name or '-'}\t0\t{ns.cgroup or '-'}\tx\t-"
                      for ns in LISTED)
    stdout = ("fleetrst_remote=1\nuid=0\ntool.tcpdump=/t\nnetns_self=4026531840\n--- ip -o link\n"
              f"1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536\n--- netns\n{lines}\n")
    for spec_text in ("all", "host", "blue", HEX[:12], UID[:8], "blue,nosuch", "nosuch"):
        got = filters.fleetrst_preflight(stdout, "all", None, spec_text)
        assert got["ns"] == select(spec_text, LISTED, 4026531840)[0], spec_text
        assert got["facts"]["network_namespaces"] == 3
    partial = filters.fleetrst_preflight(stdout.replace("uid=0", "uid=1000"), "all", None, "all")
    assert partial["ns"] == "none"


@pytest.mark.parametrize(("spec", "ok"), [
    ("all", True), ("host", True), ("4026532001,blue", True), (HEX, True), ("a.b-c_d", True),
    ("", False), ("a,,b", False), ("-x", False), ("a b", False), ("x;id", False), ("$(id)", False),
])
def test_the_cli_checks_the_namespaces_option(spec: str, ok: bool) -> None:
    assert _namespaces_spec_ok(spec) is ok


# --- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("remote", "local"), [
    ("rst-lo.pcap", "rst-lo.pcap"),
    ("counters-start.txt", "counters-start.txt"),
    ("ns4026532981.counters-start.txt", "netns/4026532981/counters-start.txt"),
    ("ns4026532981.rst-eth0.pcap", "netns/4026532981/rst-eth0.pcap"),
    ("ns4026532981.rst-if7.pcap", "netns/4026532981/rst-if7.pcap"),
    ("nsx.txt", "nsx.txt"),
    ("ns.txt", "ns.txt"),
])
def test_local_name_puts_a_namespaces_files_in_its_folder(remote: str, local: str) -> None:
    assert local_name(remote) == Path(local)
    assert not local_name(remote).is_absolute()


@pytest.mark.parametrize("remote", [
    "", ".", "..", ".hidden", "a/b", "../x", "/etc/passwd", "ns1/../x", "ns123.ns456.x", "netns",
    "ns1.", "x\x00y", "a" * 300, "with space", "ns12.../x",
])
def test_local_name_refuses_what_could_leave_the_folder(remote: str) -> None:
    if remote == "ns1.":
        assert local_name(remote) == Path("ns1.")  # a plain (odd) name, not a namespace's
        return
    with pytest.raises(ValueError):
        local_name(remote)


def test_the_ansible_recorder_stores_files_as_fleetrst_does() -> None:
    pytest.importorskip("ansible")
    spec = importlib.util.spec_from_file_location("fleetrst_record",
                                                  ROLE / "library" / "fleetrst_record.py")
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("rst-lo.pcap", "ns4026532981.counters-start.txt", "ns4026532981.rst-lo.pcap",
                 "nsx.txt", "..", ".x", "a/b", "ns1.ns2.x", "netns"):
        try:
            expected: str | None = str(local_name(name))
        except ValueError:
            expected = None
        assert module.local_name(name) == expected, name


def test_cost_is_read_from_a_real_run() -> None:
    cost = parse_cost((HOST / "cost.txt").read_text())
    assert cost["namespaces_counted"] == 3 and cost["namespaces_captured"] == 1
    assert cost["tcpdumps"] == 2
    assert cost["cpu_s"] == pytest.approx(cost["script_user_s"] + cost["script_sys_s"]
                                          + cost["children_user_s"] + cost["children_sys_s"], abs=0.01)
    for key in ("start_counters_s", "end_counters_s", "start_sockets_s", "choose_s"):
        assert 0 <= cost[key] < 5
    assert parse_cost("garbage\n--- times\nnot times\n") == {}


# --- the kernel's reasons across namespaces -----------------------------------------------------


def _rst(ts: float, sport: int, dport: int, src: str = "127.0.0.1") -> RstPacket:
    return RstPacket(ts, "lo", None, None, 4, src, sport, "127.0.0.1", dport, 0, 1, 0x14, 0, 0, 0, None)


def _ev(ts: float, sport: int, dport: int) -> ResetEvent:
    return ResetEvent(ts, "x", 1, "127.0.0.1", sport, "127.0.0.1", dport, "TCP_CLOSE", "NO_SOCKET")


def test_trace_events_go_to_the_namespace_whose_packets_they_match() -> None:
    host = [_rst(10.0, 7211, 40001)]
    app = [_rst(10.05, 7211, 40002), _rst(11.0, 7211, 40001)]
    trace = Trace([_ev(10.001, 7211, 40001), _ev(10.051, 7211, 40002), _ev(11.0, 7211, 40001),
                   _ev(10.5, 7211, 40001), _ev(12.0, 9999, 1)],
                  [ConnectEvent(9.9995, "hostcli", 5, "127.0.0.1", "127.0.0.1", 7211),
                   ConnectEvent(10.0495, "appcli", 6, "127.0.0.1", "127.0.0.1", 7211),
                   ConnectEvent(10.025, "between", 7, "127.0.0.1", "127.0.0.1", 7211)],
                  0, True)
    placed, ambiguous, unplaced = place_trace(trace, {None: host, 7: app})
    assert [e.ts for e in placed[None].resets] == [10.001]
    assert [e.ts for e in placed[7].resets] == [10.051, 11.0]
    # 10.5: the same flow in both namespaces, as near in time; 12.0: no packet anywhere.
    assert ambiguous == 1 and unplaced == 1
    assert [c.comm for c in placed[None].connects] == ["hostcli"]
    assert [c.comm for c in placed[7].connects] == ["appcli"]  # "between": both as soon
    _, _, unplaced_in_window = place_trace(trace, {None: host, 7: app}, (9.0, 11.5))
    assert unplaced_in_window == 0
    # Without wall-clock sync only the flow can tell: one seen in two namespaces is ambiguous.
    unsynced = Trace(trace.resets, [], 0, False)
    placed, ambiguous, _ = place_trace(unsynced, {None: host, 7: app})
    assert [e.ts for e in placed[7].resets] == [10.051] and ambiguous == 3


# --- a recorded run -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzed() -> dict[str, Any]:
    return analyze_host(HOST, {})


def _rate_ok(f: dict[str, Any], rate: float) -> bool:
    return 0.6 * rate <= f["per_s"] <= 1.4 * rate


def test_each_namespace_is_analyzed_like_a_host(analyzed: dict[str, Any]) -> None:
    inodes = EXPECTED["inodes"]
    own = [f for f in analyzed["findings"] if f["netns"] is None]
    theirs = [f for f in analyzed["findings"] if f["netns"] is not None]
    # The host's own: its client, its own 127.0.0.1:7211, named from the trace placed here.
    (exp,) = EXPECTED["host"]
    (f,) = own
    assert (f["kind"], f["interface"], f["local"], f["reason"]) == (
        exp["kind"], exp["interface"], exp["local"], exp["reason"])
    assert f["process"]["name"] == exp["process"] and _rate_ok(f, exp["rate"])
    assert "container" not in f["summary"]
    # The container: the same port on its own lo, its own client, its own counters.
    app = [f for f in theirs if f["netns"]["inode"] == inodes["app"]]
    (exp,) = EXPECTED["namespaces"]["app"]["findings"]
    (g,) = app
    assert (g["kind"], g["interface"], g["local"], g["reason"]) == (
        exp["kind"], exp["interface"], exp["local"], exp["reason"])
    assert g["process"]["name"] == exp["process"] and _rate_ok(g, exp["rate"])
    assert g["netns"]["container"] == EXPECTED["container"]
    assert g["netns"]["comm"] == "appcli" and isinstance(g["netns"]["pid"], int)
    assert g["summary"].startswith(f"container {EXPECTED['container'][:12]}, pid ")
    assert "(appcli), on its own lo: 127.0.0.1:7211" in g["summary"]
    # Neither leaks into the other: the host's counters and packets are its own.
    assert f["count"] < g["count"]
    assert analyzed["counters"]["OutRsts"]["delta"] == f["count"]
    rows = {r["inode"]: r for r in analyzed["namespaces"]["items"]}
    assert rows[inodes["app"]]["sent"] == g["count"]
    assert rows[inodes["app"]]["resets"]["sent"] == g["count"]
    assert analyzed["resets"]["sent"] == f["count"]


def test_a_namespace_only_counted_says_why(analyzed: dict[str, Any]) -> None:
    inodes = EXPECTED["inodes"]
    rows = {r["inode"]: r for r in analyzed["namespaces"]["items"]}
    blue = rows[inodes["blue"]]
    assert blue["captured"] is False and blue["not_captured"] == "beyond --max-namespaces=1"
    assert blue["sent"] and blue["sent"] > 0 and blue["name"] == "blue"
    (f,) = [f for f in analyzed["findings"] if f["netns"] and f["netns"]["inode"] == inodes["blue"]]
    assert f["kind"] == "counters_only" and f["count"] == blue["sent"]
    assert "netns blue" in f["summary"] and "not captured: beyond --max-namespaces=1" in f["summary"]
    assert "--namespaces" in f["next_step"]
    idle = rows[inodes["idle"]]
    assert idle["sent"] == 0 and idle["findings"] == 0 and idle["pid"] is None
    assert analyzed["namespaces"]["counted"] == 3 and analyzed["namespaces"]["captured"] == 1
    # The reasons of blue's resets were traced, but its packets were not captured.
    assert any("match no captured packet" in w and "netns blue" in w for w in analyzed["warnings"])
    assert analyzed["cost"]["namespaces_captured"] == 1


def test_the_summary_of_a_run_with_namespaces_is_valid(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    summary = analyze_run(run)
    jsonschema.validate(summary, json.loads(SCHEMA.read_text()))
    host = summary["hosts"][0]
    assert all("netns" in f for f in host["findings"])
    # A namespace's `netns` must be an object: a broken one is caught.
    broken = json.loads(json.dumps(summary))
    broken["hosts"][0]["findings"][0]["netns"] = "4026532317"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads(SCHEMA.read_text()))


def test_the_host_page_lists_the_namespaces_and_the_cost(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    summary = analyze_run(run)
    report.write_reports(run, summary)
    page = (run / "host0" / "report.html").read_text()
    section = page[page.index('id="namespaces"'):]
    assert f"container {EXPECTED['container'][:12]}" in section
    assert "netns blue" in section and "beyond --max-namespaces=1" in section
    assert f'href="netns/{EXPECTED["inodes"]["app"]}/rst-lo.pcap"' in section
    assert "1 quiet, uncaptured one is not listed" in section
    assert 'id="cost"' in page and "Host-side cost" in page
    # The finding cards name their namespace; the host's own carry none.
    assert page.count('class="chip netns"') == 2
    junit = (run / "junit.xml").read_text()
    assert f"container {EXPECTED['container'][:12]}" in junit


def test_hostile_namespace_text_is_shown_as_text(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    netns = run / "host0" / "netns.txt"
    evil = "<script>alert(1)</script>\x1b[2J"
    lines = []
    for line in netns.read_text().split("\n"):
        f = line.split("\t")
        if len(f) >= 9 and f[2] == "blue":
            f[2] = "blue<b>"  # not a name capture.sh would print, but hostile all the same
            f[7] = evil
            f[8] = "python3 -c '<img src=x onerror=alert(2)>'"
        lines.append("\t".join(f))
    netns.write_text("\n".join(lines))
    summary = analyze_run(run)
    report.write_reports(run, summary)
    page = (run / "host0" / "report.html").read_text()
    assert "<script>alert(1)" not in page and "<img src=x" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[2J" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    text = json.loads((run / "summary.json").read_text())
    assert any(f["netns"] and f["netns"]["comm"] == evil for f in text["hosts"][0]["findings"])


def test_baseline_matches_a_namespace_across_restarts() -> None:
    a = {"kind": "local_dead_service", "interface": "lo", "local": "127.0.0.1:7211",
         "netns": {"inode": 4026532317, "pid": 6, "container": HEX, "name": None, "comm": "x"}}
    b = {**a, "netns": {**a["netns"], "inode": 4026532999, "pid": 77}}
    assert finding_key(a) == finding_key(b)
    assert finding_key(a) != finding_key({**a, "netns": None})
    assert finding_key(a) != finding_key({**a, "netns": {**a["netns"], "container": "ab" * 32}})
    assert netns_key(None) is None and netns_key({"name": "blue"}) == "netns blue"
    assert netns_key({"inode": 5, "comm": "nginx"}) == "process nginx"


def test_labels_and_reasons() -> None:
    assert label(None) == "the host's own namespace"
    assert label({"inode": 7, "pid": 5, "comm": "a"}) == "netns 7, pid 5 (a)"
    assert label({"inode": 7, "name": "blue", "pid": None}) == "netns blue"
    assert label({"inode": 7, "container": HEX, "pod": UID, "pid": 5, "comm": "pause"}) == (
        f"pod {UID[:8]}, container {HEX[:12]}, pid 5 (pause)")
    assert why_not("beyond_max", "all", 16) == "beyond --max-namespaces=16"
    assert why_not("host_only") == "--namespaces host"
    assert why_not("not_selected", "blue") == "not in --namespaces blue"
    assert why_not("captured") is None
