"""The host script on a host with containers: real nested network namespaces, real resets.

Each test builds a throwaway host (tests/nsharness.py: a PID, mount and network namespace of its
own, network namespaces nested in it) and runs the real capture.sh in it: preflight, then `run`
for a short window. Traffic stays on the nested loopbacks, bounded in count and time; everything
ends with the host's PID namespace, killed by PID even when a test fails.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from nsharness import SCRIPT, Nested, NestedHost, client, unavailable

from fleetrst.analysis import analyze_host
from fleetrst.collect import local_name
from fleetrst.facts import parse_counters_file
from fleetrst.netns import (
    container_of,
    parse_cost,
    parse_netns,
    parse_runtimes,
    preflight_netns,
    runtime_sections,
    runtime_text,
    select,
)
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

    # Bounds of correctness (the window is the one asked for, not one stretched by a hundred
    # namespaces), loose enough for a loaded machine: speed is bench/'s business.
    assert abs(when("counters-end.txt") - when("counters-start.txt") - 3) < 1.0
    for name in r.files:
        if name.endswith((".counters-start.txt", ".counters-end.txt")):
            assert abs(when(name) - when(name.split(".", 1)[1])) < 1.0, name
    table = parse_netns(r.files["netns.txt"].decode())
    states = [ns.state for ns in table]
    assert states.count("captured") == 16 and states.count("beyond_max") == 84
    assert next(ns.state for ns in table if ns.comm == "busy") == "captured"
    assert sum(name.endswith(".counters-end.txt") for name in r.files) == 100
    assert "counters-end.txt" in r.files
    cost = parse_cost(r.files["cost.txt"].decode())
    assert cost["namespaces_counted"] == 100 and cost["namespaces_captured"] == 16
    assert cost["tcpdumps"] == 17
    # Reported, and small next to the window: one stat and one awk for all of them.
    assert 0 < cost["start_counters_s"] < 1.5 and 0 < cost["end_counters_s"] < 1.5
    # The window began on time: the captures and namespaces armed ahead of it did not delay it.
    assert 0 <= cost["start_late_s"] < 1.0
    assert r.dir_gone and not {"tcpdump", "timeout", "nsenter"} & set(r.leftovers.split())


def test_every_reset_between_the_counters_times_is_in_their_delta(tmp_path: Path) -> None:
    # A client at hundreds of resets a second in the host's own namespace, in a nested one and
    # in a named one: the resets captured between a counters file's start and end times are
    # all counted by its OutRsts delta, and the times leave out hardly any that were counted.
    rnd = _seeded()
    ports = rnd.sample(range(20000, 60000), 3)
    nested = [Nested(client("fastns", ports[0], 9000, 0.0005)),
              Nested(client("fastnamed", ports[1], 9000, 0.0005), named="fastnamed")]
    with NestedHost(nested, on_host=(client("fasthost", ports[2], 9000, 0.0005),)) as host:
        r = host.run("3 8192 10 0 ns=all nsmax=16 -- lo lo")
    inode = by_comm(r.files["netns.txt"].decode())
    for prefix, port in ((f"ns{inode['fastns']}.", ports[0]), (f"ns{inode['fastnamed']}.", ports[1]),
                         ("", ports[2])):
        start = parse_counters_file(r.files[f"{prefix}counters-start.txt"].decode()).time
        end = parse_counters_file(r.files[f"{prefix}counters-end.txt"].decode()).time
        assert start is not None and end is not None
        (tmp_path / "lo.pcap").write_bytes(r.files[f"{prefix}rst-lo.pcap"])
        packets, info = read_resets(tmp_path / "lo.pcap")
        assert not info.truncated, prefix
        sent = [x for x in packets if x.sport == port and start <= x.ts <= end]
        delta = outrsts(r.files, prefix)
        assert delta >= 300, (prefix, delta)
        assert len(sent) <= delta, (prefix, len(sent), delta)
        assert len(sent) >= 0.9 * delta, (prefix, len(sent), delta)


def _trace_instances() -> dict[str, str]:
    """fleetrst's tracefs instances on this kernel (they are global), each with its tracing_on,
    and "has-reset-event" when the kernel can trace tcp_send_reset at all."""
    listing = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         "mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null; "
         "[ -r /sys/kernel/tracing/events/tcp/tcp_send_reset/format ] && echo 'has-reset-event 1'; "
         "for d in /sys/kernel/tracing/instances/fleetrst-*/; do [ -d \"$d\" ] && "
         "printf '%s %s\\n' \"$(basename \"$d\")\" \"$(cat \"$d/tracing_on\")\"; done; true"],
        capture_output=True, text=True, timeout=30, check=True).stdout
    return dict(line.split(" ", 1) for line in listing.splitlines())


class _Left(Exception):
    pass


def test_tracing_is_armed_before_the_window_and_goes_with_an_orchestrator_lost_while_waiting() -> None:
    """The slow part of tracing (the instance, its events) is done while arming, recording off,
    so that it does not delay the window's start; an orchestrator that goes away before the
    start takes the instance and the directory with it."""
    seen: dict[str, str] = {}
    with NestedHost([Nested(client("nsclient", 7211, 100, 0.1))]) as host:
        mine = f"fleetrst-{Path(host.dir).name}"

        def look_then_leave() -> None:
            seen.update(_trace_instances())
            assert host.proc is not None and host.proc.stdin is not None
            host.proc.stdin.close()  # the lease ends before any start= was sent
            raise _Left

        with pytest.raises(_Left):
            host.run("3 2048 10 1 ns=host -- lo lo", before_start=look_then_leave)
        tail = list(host._lines(30))
    if "has-reset-event" not in seen:
        pytest.skip("this kernel has no tracefs with tcp:tcp_send_reset")
    assert seen.get(mine) == "0", seen  # armed, not yet recording
    assert "=== run exit 3" in tail and "=== dir gone" in tail, tail
    assert mine not in _trace_instances()  # removed, not just stopped
    assert not {"tcpdump", "timeout", "nsenter"} & {ln.split()[-1] for ln in tail if ln.startswith("=== left ")}


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


# --- names from the container runtimes' CLIs -----------------------------------------------------


def _seeded() -> random.Random:
    seed = int(os.environ.get("FLEETRST_TEST_SEED") or random.SystemRandom().randrange(1, 2**31))
    print(f"\nseed: {seed} (FLEETRST_TEST_SEED={seed} reproduces)")
    return random.Random(seed)


def _stand_in(bin_dir: Path, name: str, body: str) -> Path:
    """A runtime CLI stand-in for the throwaway host (its /usr/local/sbin): logs how it was
    called (arguments, then its environment) beside itself, then runs `body`."""
    bin_dir.mkdir(exist_ok=True)
    log = bin_dir.parent / f"{name}.log"
    path = bin_dir / name
    path.write_text(f"""#!/bin/sh
{{ printf '%s\\n' "$@"; echo '--- env'; env; }} >>{shlex.quote(str(log))}
{body}
""")
    path.chmod(0o755)
    return log


def _nested_host(nested: list[Nested], bin_dir: Path) -> NestedHost:
    try:
        return NestedHost(nested, bin_dir=bin_dir)
    except RuntimeError as e:
        pytest.skip(str(e))


def test_a_container_is_named_by_its_runtimes_cli(tmp_path: Path) -> None:
    rng = _seeded()
    cid = f"{rng.getrandbits(256):064x}"
    name = f"{rng.choice(['api', 'web', 'cache', 'worker'])}-{rng.getrandbits(16):04x}"
    port = rng.randrange(7000, 7999)
    log = _stand_in(tmp_path / "bin", "docker", f"""[ "$1" = ps ] || exit 1
printf '%s\\t%s\\n' {cid} {name}""")
    # A Docker container's process, as the cgroupfs driver places it: .../docker/ID.
    nested = [Nested(client("apicli", port, 100, 0.1), cgroup=f"docker/{cid}"), Nested("sleep 40")]
    with _nested_host(nested, tmp_path / "bin") as host:
        r = host.run("3 2048 10 0 ns=all nsmax=16 -- lo lo")
    assert r.dir_gone, r.lines
    # The preflight asked docker (only docker: nothing else is there) as the README says, in a
    # clean environment (run as root), and printed its listing raw after the namespaces.
    args, _, env = log.read_text().partition("--- env\n")
    assert args.split("\n")[:4] == ["ps", "--no-trunc", "--format", "{{.ID}}\\t{{.Names}}"]
    env_names = {line.split("=", 1)[0] for line in env.splitlines() if "=" in line}
    assert "PYTEST_CURRENT_TEST" not in env_names and env_names <= {"PATH", "LC_ALL", "HOME", "PWD"}
    assert [n for n, _ in runtime_sections(r.preflight)] == ["docker"]
    assert f"--- runtime docker\n{cid}\t{name}\n" in r.preflight
    # (By its cgroup: on a loaded machine its client may not have started yet at preflight.)
    _, listed = preflight_netns(r.preflight)
    (inner,) = [ns for ns in listed if ns.container is not None]
    assert inner.container is not None and inner.container.id == cid
    # The host keeps the listing for the fetch, raw.
    assert r.files["containers.txt"].decode() == f"--- runtime docker\n{cid}\t{name}\n"
    assert parse_runtimes(r.files["containers.txt"].decode()).containers == {cid: name}
    # Analyzed as fleetrst analyze would: the finding inside names the container by its name.
    hdir = tmp_path / "run" / "host0"
    for remote, data in r.files.items():
        path = hdir / local_name(remote)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (hdir / "host.json").write_text(json.dumps({
        "name": "host0", "address": "198.18.0.250", "status": "ok", "error": None, "notes": [],
        "facts": {"clock_offset_s": 0.0},
        "captures": [{"interface": "lo", "index": 1, "tag": "lo", "cap_bytes": 2048 * 512}],
        "namespaces": {"select": "all", "max": 16}}))
    host_summary = analyze_host(hdir, {})
    findings = host_summary["findings"]
    (f,) = [f for f in findings if f["netns"] and f["netns"]["inode"] == inner.inode]
    assert f["kind"] == "local_dead_service" and f["local"] == f"127.0.0.1:{port}"
    assert f["netns"]["container_name"] == name and f["netns"]["container"] == cid
    assert f["summary"].startswith(f"container {name} ({cid[:12]}), pid ")
    rows = {row["inode"]: row for row in host_summary["namespaces"]["items"]}
    assert rows.pop(inner.inode)["container_name"] == name
    (other,) = rows.values()  # the namespace of `sleep`, in no container
    assert other["container_name"] is None and other["container"] is None


def test_namespaces_option_chooses_a_container_by_the_name_its_runtime_gives_it(
        tmp_path: Path) -> None:
    rng = _seeded()
    cids = [f"{rng.getrandbits(256):064x}" for _ in range(2)]
    words = rng.sample(["api", "web", "cache", "worker"], 2)
    names = [f"{w}-{rng.getrandbits(16):04x}" for w in words]
    ports = rng.sample(range(7000, 8000), 2)
    _stand_in(tmp_path / "bin", "docker", "[ \"$1\" = ps ] || exit 1\n" + "".join(
        f"printf '%s\\t%s\\n' {c} {n}\n" for c, n in zip(cids, names)))
    nested = [Nested(client(f"cli{i}", ports[i], 100, 0.1), cgroup=f"docker/{cids[i]}")
              for i in range(2)]
    chosen: dict[str, object] = {}

    def by_name(preflight: str) -> str:
        # As the orchestrator chooses (collect.py): the preflight's namespaces and runtime names.
        self_inode, listed = preflight_netns(preflight)
        chosen["arg"], chosen["notes"] = select(f"{names[1]},nosuch", listed, self_inode,
                                                parse_runtimes(runtime_text(preflight)))
        chosen["inodes"] = {ns.container.id: ns.inode for ns in listed if ns.container}
        return f"2 2048 10 0 ns={chosen['arg']} nsmax=16 -- lo lo"

    with _nested_host(nested, tmp_path / "bin") as host:
        r = host.run(by_name)
    assert r.dir_gone, r.lines
    inodes = chosen["inodes"]
    assert isinstance(inodes, dict) and chosen["arg"] == str(inodes[cids[1]])
    assert chosen["notes"] == ["--namespaces: nosuch matches no network namespace on this host"]
    states = {ns.inode: ns.state for ns in parse_netns(r.files["netns.txt"].decode())}
    assert states[inodes[cids[1]]] == "captured" and states[inodes[cids[0]]] == "not_selected"
    assert f"ns{inodes[cids[1]]}.rst-lo.pcap" in r.files
    assert f"ns{inodes[cids[0]]}.rst-lo.pcap" not in r.files


def test_runtimes_are_asked_only_about_containers_and_never_hold_up_the_preflight(
        tmp_path: Path) -> None:
    rng = _seeded()
    bin_dir = tmp_path / "bin"
    # No namespace's cgroup names a container: no runtime is asked.
    docker_log = _stand_in(bin_dir, "docker", "exec sleep 60")
    with _nested_host([Nested("sleep 40")], bin_dir) as host:
        preflight = host.start()
    assert "--- netns" in preflight and "--- runtime" not in preflight
    assert not docker_log.exists()

    # A pod's container (cgroupfs driver): docker hangs, `crictl ps` prints far more than the
    # host keeps, `crictl pods` fails. The preflight still ends in time, with what could be had.
    uid = "-".join(f"{rng.getrandbits(4 * n):0{n}x}" for n in (8, 4, 4, 4, 12))
    ids = [f"{rng.getrandbits(256):064x}" for _ in range(800)]
    mine = ids[rng.randrange(0, 20)]
    listing = json.dumps({"containers": [
        {"id": i, "podSandboxId": ids[0], "metadata": {"name": f"c-{i[:6]}", "attempt": 0},
         "state": "CONTAINER_RUNNING",
         "labels": {"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop",
                    "io.kubernetes.pod.uid": uid},
         "annotations": {"io.kubernetes.container.hash": "f" * 400}} for i in ids]}, indent=2)
    assert len(listing) > 2 * 262144
    (tmp_path / "crictl-ps.json").write_text(listing)
    crictl_log = _stand_in(bin_dir, "crictl", f"""case $1 in
    ps) cat {shlex.quote(str(tmp_path / "crictl-ps.json"))} ;;
    *) echo 'failed to connect: context deadline exceeded' >&2; exit 1 ;;
esac""")
    nested = [Nested("sleep 40", cgroup=f"kubepods/besteffort/pod{uid}/{mine}")]
    with _nested_host(nested, bin_dir) as host:
        started = time.monotonic()
        preflight = host.start()
        took = time.monotonic() - started
    assert docker_log.exists() and crictl_log.read_text().count("--- env") == 2
    # docker was stopped at its 3 s (and gave no section), not left to hang for its 60.
    assert 3 <= took < 20, took
    sections = dict(runtime_sections(preflight))
    assert list(sections) == ["crictl ps"]
    assert len(sections["crictl ps"].encode()) <= 262144 + 1
    _, listed = preflight_netns(preflight)
    (ns,) = [ns for ns in listed if ns.container is not None]
    assert ns.container == container_of(f"/kubepods/besteffort/pod{uid}/{mine}")
    names = parse_runtimes(preflight)
    assert 20 <= len(names.containers) < len(ids)  # cut short: the entries complete before the cut
    assert names.names(ns.container) == (f"c-{mine[:6]}", "shop/web-0")
