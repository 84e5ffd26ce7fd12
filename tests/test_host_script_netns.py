"""The host script on a host with containers: real nested network namespaces, real resets.

Each test builds a throwaway host (tests/nsharness.py: a PID, mount and network namespace of its
own, network namespaces nested in it) and runs the real capture.sh in it: preflight, then `run`
for a short window. Traffic stays on the nested loopbacks, bounded in count and time; everything
ends with the host's PID namespace, killed by PID even when a test fails.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from nsharness import SCRIPT, Nested, NestedHost, client, unavailable

from fleetrst.facts import parse_counters_file
from fleetrst.netns import parse_cost, parse_netns, preflight_netns
from fleetrst.pcap import read_resets

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


def outrsts(files: dict[str, bytes], prefix: str = "") -> int:
    start = parse_counters_file(files[f"{prefix}counters-start.txt"].decode()).get("OutRsts")
    end = parse_counters_file(files[f"{prefix}counters-end.txt"].decode()).get("OutRsts")
    assert start is not None and end is not None
    return end - start


def by_comm(text: str) -> dict[str | None, int]:
    return {ns.comm: ns.inode for ns in parse_netns(text)}


def test_every_namespace_is_counted_the_busiest_captured_and_nothing_left(tmp_path: Path) -> None:
    nested = [Nested(client("nsclient", 7211, 100, 0.1)), Nested("sleep 40")]
    with NestedHost(nested, named_empty=("idle",)) as host:
        r = host.run("3 2048 10 0 ns=all nsmax=1 -- lo lo")
    # Preflight lists every namespace, named ones without a process too.
    self_inode, listed = preflight_netns(r.preflight)
    assert self_inode is not None
    comms = {ns.comm for ns in listed}
    assert {"nsclient", "sleep"} <= comms
    idle = [ns for ns in listed if ns.name == "idle"]
    assert idle and idle[0].pid is None
    assert "netns-preflight.txt" in r.files
    # The one that sent resets since preflight is captured; the cap leaves the others counted.
    table = parse_netns(r.files["netns.txt"].decode())
    states = {ns.comm or ns.name: ns.state for ns in table}
    assert states["nsclient"] == "captured"
    assert states["sleep"] == states["idle"] == "beyond_max"
    inode = by_comm(r.files["netns.txt"].decode())
    busy, quiet, named = inode["nsclient"], inode["sleep"], idle[0].inode
    for name in ("rst-lo.pcap", "counters-start.txt", "counters-end.txt", "sockets-start.txt",
                 "sockets.txt", "ip-link.txt", "ip-addr.txt", "captures.txt", "exit-codes.txt"):
        assert f"ns{busy}.{name}" in r.files, name
    for other in (quiet, named):
        assert f"ns{other}.counters-start.txt" in r.files
        assert f"ns{other}.rst-lo.pcap" not in r.files
    # Counter deltas come from the right namespace: the client's, not the host's own.
    assert outrsts(r.files, f"ns{busy}.") >= 15
    assert outrsts(r.files) == 0
    assert outrsts(r.files, f"ns{quiet}.") == 0
    (tmp_path / "ns.pcap").write_bytes(r.files[f"ns{busy}.rst-lo.pcap"])
    (tmp_path / "host.pcap").write_bytes(r.files["rst-lo.pcap"])
    packets, _ = read_resets(tmp_path / "ns.pcap")
    assert packets and all(p.src == "127.0.0.1" and p.sport == 7211 for p in packets)
    assert read_resets(tmp_path / "host.pcap")[0] == []
    cost = parse_cost(r.files["cost.txt"].decode())
    assert cost["namespaces_counted"] == 3 and cost["namespaces_captured"] == 1
    assert cost["tcpdumps"] == 2 and cost["cpu_s"] >= 0
    # Nothing left: the directory, and no process of the host script (only ours still run).
    assert r.dir_gone
    left = r.leftovers.split()
    assert not {"tcpdump", "timeout", "nsenter", "capture.sh"} & set(left), r.leftovers


def test_losing_the_lease_mid_window_stops_the_captures_inside_namespaces_too() -> None:
    nested = [Nested(client("nsclient", 7211, 100, 0.1)), Nested(client("other", 7212, 100, 0.1))]
    with NestedHost(nested) as host:
        r = host.run("20 2048 10 0 ns=all nsmax=16 -- lo lo", drop_lease_after="started")
    assert "=== run exit 3" in r.lines, r.lines
    assert r.dir_gone
    assert not {"tcpdump", "timeout", "nsenter", "ss", "ip"} & set(r.leftovers.split()), r.leftovers


def test_a_namespace_list_captures_only_those_named() -> None:
    nested = [Nested(client("first", 7211, 100, 0.1)), Nested(client("second", 7212, 100, 0.1))]

    def only_second(preflight: str) -> str:
        second = next(ns.inode for ns in preflight_netns(preflight)[1] if ns.comm == "second")
        return f"2 2048 10 0 ns={second} nsmax=16 -- lo lo"

    with NestedHost(nested) as host:
        r = host.run(only_second)
    states = {ns.comm: ns.state for ns in parse_netns(r.files["netns.txt"].decode())}
    assert states["second"] == "captured" and states["first"] == "not_selected"
    inode = by_comm(r.files["netns.txt"].decode())
    assert f"ns{inode['second']}.rst-lo.pcap" in r.files
    assert f"ns{inode['first']}.rst-lo.pcap" not in r.files
    assert outrsts(r.files, f"ns{inode['first']}.") > 0  # counted all the same
    assert r.dir_gone


def test_a_namespace_whose_process_exited_is_entered_through_another_and_a_gone_one_skipped() -> None:
    # "moving": its lowest PID exits after 2 s, a later one stays; "short": gone after 2 s.
    nested = [Nested("sh -c 'sleep 40 & exec sleep 2'"), Nested("sleep 2")]
    with NestedHost(nested) as host:
        r = host.run("2 2048 10 0 ns=all nsmax=16 -- lo lo",
                     before_start=lambda: time.sleep(3))
    before = {ns.inode: ns for ns in preflight_netns(r.preflight)[1]}
    after = {ns.inode: ns for ns in parse_netns(r.files["netns.txt"].decode())}
    captured = [i for i, ns in after.items() if ns.state == "captured"]
    gone = [i for i, ns in after.items() if ns.state == "gone"]
    assert len(captured) == 1 and len(gone) == 1, after
    moved = captured[0]
    assert after[moved].pid != before[moved].pid  # entered through the process that stayed
    assert f"ns{moved}.rst-lo.pcap" in r.files
    assert f"ns{gone[0]}.rst-lo.pcap" not in r.files
    assert r.dir_gone


def test_a_hundred_namespaces_keep_the_window_and_the_caps() -> None:
    nested = [Nested("sleep 40") for _ in range(99)] + [Nested(client("busy", 7211, 100, 0.1))]
    with NestedHost(nested) as host:
        r = host.run("3 2048 10 0 ns=all nsmax=16 -- lo lo")
    # The window is the counters' own: read at its start and end, the namespaces' with the host's.
    def when(name: str) -> float:
        t = parse_counters_file(r.files[name].decode()).time
        assert t is not None
        return t

    assert abs(when("counters-end.txt") - when("counters-start.txt") - 3) < 0.3
    for name in r.files:
        if name.endswith((".counters-start.txt", ".counters-end.txt")):
            assert abs(when(name) - when(name.split(".", 1)[1])) < 0.5, name
    table = parse_netns(r.files["netns.txt"].decode())
    states = [ns.state for ns in table]
    assert states.count("captured") == 16 and states.count("beyond_max") == 84
    assert next(ns.state for ns in table if ns.comm == "busy") == "captured"
    assert sum(name.endswith(".counters-end.txt") for name in r.files) == 100
    assert "counters-end.txt" in r.files
    cost = parse_cost(r.files["cost.txt"].decode())
    assert cost["namespaces_counted"] == 100 and cost["namespaces_captured"] == 16
    assert cost["tcpdumps"] == 17
    # Cheap: one stat and one awk for all of them, well inside the lead of the captures.
    assert cost["start_counters_s"] < 1.0 and cost["end_counters_s"] < 1.0
    assert r.dir_gone and not {"tcpdump", "timeout", "nsenter"} & set(r.leftovers.split())


@pytest.mark.parametrize(("arg", "error"), [
    ("ns=1;id", "bad namespace list"), ("ns=,1", "bad namespace list"), ("ns=1,,2", "bad namespace list"),
    ("ns=all nsmax=x", "not a number"), ("nsmax=123456", "not a number"),
])
def test_namespace_arguments_are_checked(arg: str, error: str) -> None:
    d = f"/tmp/fleetrst-argtest{secrets.token_hex(4)}"
    os.mkdir(d, 0o700)
    try:
        r = subprocess.run(["sh", SCRIPT, "run", d, "wait", "1", "8", "5", "0", *arg.split(), "--",
                            "lo", "lo"], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL, check=False)
        assert r.returncode == 2 and error in r.stdout, r.stdout
    finally:
        subprocess.run(["rm", "-rf", "--", d], check=False)


def test_run_and_preflight_refuse_a_directory_that_is_not_their_own() -> None:
    target = Path(tempfile.mkdtemp(prefix="fleetrst-target", dir="/tmp"))
    link = Path(f"/tmp/fleetrst-link{os.getpid()}")
    foreign = Path(f"/tmp/fleetrst-foreign{os.getpid()}")
    try:
        link.symlink_to(target)
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        for d in (link, foreign):
            r = subprocess.run(["sh", SCRIPT, "run", str(d), "wait", "1", "8", "5", "0", "--"],
                               capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL, check=False)
            assert r.returncode == 2 and "not a private directory" in r.stdout, r.stdout
            # Preflight still answers, but leaves nothing in a directory that is not its own.
            subprocess.run(["sh", SCRIPT, "preflight", str(d)], capture_output=True, timeout=60,
                           check=True)
        assert list(target.iterdir()) == [] and list(foreign.iterdir()) == []
    finally:
        link.unlink(missing_ok=True)
        subprocess.run(["rm", "-rf", "--", str(target), str(foreign)], check=False)
