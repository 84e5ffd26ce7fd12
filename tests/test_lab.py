"""The namespace test fleet: its planning (pure, always run) and a real lab end to end (`lab`)."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import itertools
import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetrst import lab
from fleetrst.errors import LabError
from fleetrst.lab import (
    MAX_IDLE_NETNS,
    SCENARIOS,
    LabHost,
    LabState,
    assign_scenarios,
    idle_counts,
    lab_down,
    lab_up,
    load_lab,
    parse_scenario,
    parse_used_networks,
    pick_subnet,
    pick_subnets,
    plan_lab,
    register_cli,
)
from fleetrst.labtraffic import comm_of, start_time

ALL_SCENARIOS = list(SCENARIOS)
WINDOW = 5.0  # seconds between the two counter readings


# --- planning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("count", range(1, 10))
def test_default_scenarios_start_with_closed_port_and_keep_a_quiet_host(count: int) -> None:
    for seed in range(100):
        kinds = assign_scenarios(random.Random(seed), count)
        assert kinds[0] == "closed_port"
        assert set(kinds) <= set(SCENARIOS)
        if count >= 3:
            assert "quiet" in kinds


def test_given_scenarios_are_assigned_in_order_cycling() -> None:
    kinds = assign_scenarios(random.Random(1), 5, ["quiet", "dead"])
    assert kinds == ["quiet", "dead", "quiet", "dead", "quiet"]
    with pytest.raises(LabError, match="unknown scenario"):
        assign_scenarios(random.Random(1), 2, ["closed_port", "bogus"])


def _plan(seed: int, scenarios: list[str] | None, count: int) -> list[lab.HostPlan]:
    names = [f"host{i}" for i in range(count)]
    addresses = [f"198.18.0.{i + 2}" for i in range(count)]
    return plan_lab(seed, scenarios, names, addresses, "198.18.0.1")


def test_plan_is_reproducible_with_distinct_ports_and_names() -> None:
    for seed in range(50):
        plans = _plan(seed, None, 9)
        assert [(p.scenario, p.expected) for p in plans] == [
            (p.scenario, p.expected) for p in _plan(seed, None, 9)]
        ports = [p.expected["local_port"] for p in plans if "local_port" in p.expected]
        ports += [port for p in plans for port in p.expected.get("ports", [])]
        assert len(ports) == len(set(ports))
        assert all(1025 <= port <= 32000 for port in ports)
        names = [proc.name for p in plans for proc in p.procs]
        assert len(names) == len(set(names))
        assert all(0 < len(name.encode()) <= 15 for name in names)


def test_plan_ground_truth_per_scenario() -> None:
    plans = _plan(3, ALL_SCENARIOS, len(ALL_SCENARIOS))
    by = {p.scenario: p for p in plans}
    closed = by["closed_port"].expected
    assert closed["kind"] == "local_dead_service" and closed["interface"] == "lo"
    assert closed["local_addr"] == closed["peer"] == "127.0.0.1" and closed["rate"] == 2.0
    assert closed["process"] == by["closed_port"].procs[0].name
    assert by["linger_abort"].expected["counter"] == "TCPAbortOnData"
    assert by["linger_abort"].expected["reason"] == "TCP_STATE"
    assert by["unread_close"].expected["counter"] == "TCPAbortOnClose"
    assert by["listen_overflow"].expected["counter"] == "ListenOverflows"
    for kind in ("linger_abort", "unread_close", "listen_overflow"):
        server = [p for p in by[kind].procs if p.role == "server"]
        assert by[kind].expected["process"] == server[0].name
    scan = by["port_sweep"].expected
    assert scan["kind"] == "scan" and scan["interface"] == "eth0" and len(scan["ports"]) == 20
    scanner = scan["scanner_host"]
    assert scanner is not None and plans[int(scanner[4:])].scenario not in ("quiet", "dead")
    assert scan["peer"] == f"198.18.0.{int(scanner[4:]) + 2}"
    assert by["quiet"].expected == {"kind": None} and not by["quiet"].procs
    assert by["dead"].expected == {"kind": None, "status": "failed"} and not by["dead"].procs


def test_a_sweep_without_any_other_busy_host_scans_from_the_root_namespace() -> None:
    plans = _plan(5, ["port_sweep", "quiet"], 2)
    assert plans[0].expected["peer"] == "198.18.0.1"
    assert plans[0].procs[0].host is None


def test_subnet_is_the_first_free_aligned_block() -> None:
    net = ipaddress.IPv4Network
    assert pick_subnet(4, []) == net("198.18.0.0/29")
    assert pick_subnet(5, [net("198.18.0.0/29")]) == net("198.18.0.8/29")
    assert pick_subnet(6, [net("198.18.0.1/32")]) == net("198.18.0.16/28")
    assert pick_subnet(253, []) == net("198.18.0.0/24")
    with pytest.raises(LabError, match="no free"):
        pick_subnet(4, [net("198.18.0.0/25"), net("198.18.0.128/25")])
    with pytest.raises(LabError):
        pick_subnet(0, [])


def test_a_bastion_lab_takes_a_small_bridge_block_and_a_disjoint_inner_block() -> None:
    net = ipaddress.IPv4Network
    assert pick_subnets(4, False, []) == (net("198.18.0.0/29"), None)
    # The bridge holds only the bastion; the inner block the bastion's address and the hosts.
    assert pick_subnets(60, True, []) == (net("198.18.0.0/30"), net("198.18.0.64/26"))
    assert pick_subnets(61, True, [net("198.18.0.0/26")]) == (net("198.18.0.64/30"),
                                                              net("198.18.0.128/26"))
    assert pick_subnets(125, True, []) == (net("198.18.0.0/30"), net("198.18.0.128/25"))
    with pytest.raises(LabError, match="no free"):
        pick_subnets(126, True, [])


def test_used_networks_come_from_addresses_and_routes_but_not_the_default() -> None:
    addrs = ("1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
             "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\ valid_lft forever\n")
    routes = ("default via 192.0.2.1 dev eth0\n"
              "198.18.0.0/28 dev frstabcdefbr proto kernel scope link src 198.18.0.1\n"
              "unreachable 198.18.0.64/26\n"
              "local 198.18.0.1 dev frstabcdefbr table local proto kernel scope host\n")
    used = {str(n) for n in parse_used_networks(addrs, routes)}
    assert used == {"127.0.0.0/8", "192.0.2.0/24", "198.18.0.0/28", "198.18.0.64/26",
                    "198.18.0.1/32"}
    assert pick_subnet(4, parse_used_networks(addrs, routes)) == ipaddress.IPv4Network(
        "198.18.0.16/29")


def test_cli_parses_up_and_down(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["lab", "up", "--hosts", "3", "--seed", "9", "--scenarios",
                              "closed_port,quiet", "--ttl", "60"])
    assert (args.hosts, args.seed, args.scenarios, args.ttl) == (3, 9, ["closed_port", "quiet"],
                                                                 60.0)
    assert args.dir == Path("fleetrst-lab") and callable(args.func) and not args.bastion
    assert parser.parse_args(["lab", "up", "--bastion"]).bastion
    assert callable(parser.parse_args(["lab", "down", "--dir", "/tmp/x"]).func)
    with pytest.raises(SystemExit):
        parser.parse_args(["lab", "up", "--scenarios", "closed_port,nope"])
    assert "comma-separated list" in capsys.readouterr().err


def test_scenarios_may_be_placed_in_nested_namespaces() -> None:
    assert parse_scenario("closed_port") == ("closed_port", None, None)
    assert parse_scenario("closed_port@netns") == ("closed_port", "netns", None)
    assert parse_scenario("linger_abort@named") == ("linger_abort", "named", None)
    assert parse_scenario("unread_close@named=app.1") == ("unread_close", "named", "app.1")
    for bad in ("port_sweep@netns", "quiet@named", "dead@netns", "closed_port@box",
                "closed_port@netns=x", "closed_port@named=", "closed_port@named=-x",
                "closed_port@named=a/b", "closed_port@named=" + "x" * 64, "bogus@netns"):
        with pytest.raises(LabError):
            parse_scenario(bad)
    with pytest.raises(LabError):
        assign_scenarios(random.Random(1), 2, ["closed_port", "port_sweep@netns"])


def test_nesting_keeps_the_seeds_ports_and_names() -> None:
    plain = ["closed_port", "linger_abort", "listen_overflow", "linger_abort", "quiet"]
    placed = ["closed_port@netns", "linger_abort@named", "listen_overflow@netns",
              "linger_abort@named=blue", "quiet"]
    for seed in range(20):
        before, after = _plan(seed, plain, 5), _plan(seed, placed, 5)
        assert [[(p.name, p.options[p.options.index("--port") + 1]) for p in plan.procs]
                for plan in before] == [
            [(p.name, p.options[p.options.index("--port") + 1]) for p in plan.procs]
            for plan in after]
        for plan, entry in zip(after, placed):
            nested = "@" in entry
            assert all(p.nested == nested for p in plan.procs)
            if not nested:
                assert plan.netns is None and "netns" not in plan.expected
                continue
            # On the nested namespace's own lo: no other address there.
            assert all(p.options[p.options.index("--address") + 1] == "127.0.0.1"
                       for p in plan.procs)
            assert plan.expected["local_addr"] == plan.expected["peer"] == "127.0.0.1"
            assert plan.expected["netns"] == plan.netns
        assert after[0].netns == {"name": None} and after[2].netns == {"name": None}
        assert after[3].netns == {"name": "blue"}
        name = after[1].netns["name"]
        assert name.startswith("cni-") and len(name) == 40
        assert name == _plan(seed, placed, 5)[1].netns["name"]  # drawn from the seed
    assert _plan(1, placed, 5)[1].netns != _plan(2, placed, 5)[1].netns


def test_idle_namespace_counts_per_host() -> None:
    kinds = ["closed_port", "dead", "quiet"]
    assert idle_counts(3, kinds, None, None) == {}
    assert idle_counts(3, kinds, 5, None) == {"host0": (5, 0), "host2": (5, 0)}
    assert idle_counts(3, kinds, {"host2": 100}, {"host0": 2, "host2": 1}) == {
        "host2": (100, 1), "host0": (0, 2)}
    for netns, named in (({"host1": 1}, None), ({"host3": 1}, None), (MAX_IDLE_NETNS + 1, None),
                         (None, -1), ({"web": 1}, None)):
        with pytest.raises(LabError):
            idle_counts(3, kinds, netns, named)


def test_cli_takes_nested_placements_and_idle_namespaces(
        capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["lab", "up", "--scenarios", "closed_port@netns,linger_abort@named",
                              "--idle-netns", "100", "--idle-named", "3"])
    assert (args.scenarios, args.idle_netns, args.idle_named) == (
        ["closed_port@netns", "linger_abort@named"], 100, 3)
    for bad in (["--scenarios", "port_sweep@netns"], ["--idle-netns", "101"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["lab", "up", *bad])
    assert "cannot run in a nested namespace" in capsys.readouterr().err


# --- a real lab -------------------------------------------------------------------------------


def _ssh(state: LabState, address: str, command: str) -> subprocess.CompletedProcess[str]:
    """The real OpenSSH client with the lab's key and known_hosts, strict host key checking."""
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(state.key_file),
         "-o", f"UserKnownHostsFile={state.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", f"root@{address}", command],
        capture_output=True, text=True, timeout=60, check=False)


def parse_counters(text: str) -> dict[str, int]:
    """`/proc/net/snmp` + `/proc/net/netstat` (header line, value line) as {"Tcp:OutRsts": n}."""
    lines = text.splitlines()
    counters = {}
    for names, values in itertools.pairwise(lines):
        head, tail = names.split(), values.split()
        if head and tail and head[0] == tail[0] and not head[1].lstrip("-").isdigit():
            counters.update({head[0] + k: int(v) for k, v in zip(head[1:], tail[1:])})
    return counters


def _sample(state: LabState, address: str) -> tuple[float, dict[str, int]]:
    done = _ssh(state, address, "cat /proc/uptime /proc/net/snmp /proc/net/netstat")
    assert done.returncode == 0, f"{address}: {done.stderr}"
    uptime, _, rest = done.stdout.partition("\n")
    return float(uptime.split()[0]), parse_counters(rest)


def _rates(state: LabState, addresses: list[str]) -> dict[str, dict[str, float]]:
    """Counter rates per host over WINDOW seconds, timed by each host's own clock."""
    with ThreadPoolExecutor(len(addresses)) as pool:
        first = list(pool.map(lambda a: _sample(state, a), addresses))
        time.sleep(WINDOW)
        second = list(pool.map(lambda a: _sample(state, a), addresses))
    rates = {}
    for address, (t0, c0), (t1, c1) in zip(addresses, first, second):
        rates[address] = {k: (c1[k] - c0[k]) / (t1 - t0) for k in c1 if k in c0}
    return rates


def _routes() -> set[str]:
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                         text=True, check=True).stdout
    out += subprocess.run(["ip", "-6", "route", "show", "table", "all"], capture_output=True,
                          text=True, check=True).stdout
    return {" ".join(line.split()) for line in out.splitlines() if line.strip()}


def _assert_gone(record: dict[str, Any]) -> None:
    """Nothing the lab recorded exists any more: namespaces, links, processes."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True).stdout.split()
    for ns in record["namespaces"]:
        assert ns not in netns and not Path(f"/run/netns/{ns}").exists(), ns
    for link in [*record["veths"], record["bridge"]]:
        assert not Path(f"/sys/class/net/{link}").exists(), link
    for proc in record["processes"]:
        assert start_time(proc["pid"]) != proc["start_time"], f"still running: {proc}"


@pytest.mark.lab
def test_lab_hosts_answer_over_ssh_and_reset_as_planned(lab_factory: Any) -> None:
    routes_before = _routes()
    state = lab_factory(len(ALL_SCENARIOS), scenarios=ALL_SCENARIOS, ttl=300.0)
    record = json.loads((state.directory / "lab.json").read_text())
    by = {h.scenario: h for h in state.hosts}
    subnet = ipaddress.IPv4Network(state.subnet)
    assert subnet.subnet_of(ipaddress.IPv4Network("198.18.0.0/24"))
    assert all(ipaddress.IPv4Address(h.address) in subnet for h in state.hosts)
    assert all(len(link) <= 15 for link in [*record["veths"], record["bridge"]])

    # What a user (or Ansible) gets: inventory, known_hosts, a private key only root reads.
    inventory = yaml.safe_load(state.inventory.read_text())
    assert inventory["all"]["vars"]["ansible_user"] == "root"
    assert inventory["all"]["vars"]["ansible_ssh_private_key_file"] == str(state.key_file)
    assert inventory["all"]["children"]["lab"]["hosts"] == {
        h.name: {"ansible_host": h.address} for h in state.hosts}
    assert os.stat(state.key_file).st_mode & 0o777 == 0o600
    known = state.known_hosts.read_text().splitlines()
    assert sorted(line.split()[0] for line in known) == sorted(h.address for h in state.hosts)

    # No default route inside a host: only the lab's own subnet and loopback.
    host_routes = subprocess.run(["ip", "-n", by["quiet"].namespace, "-4", "route"],
                                 capture_output=True, text=True, check=True).stdout
    assert "default" not in host_routes and str(subnet) in host_routes

    dead = _ssh(state, by["dead"].address, "true")
    assert dead.returncode == 255 and "refused" in dead.stderr

    alive = [h for h in state.hosts if h.scenario != "dead"]
    rates = _rates(state, [h.address for h in alive])
    print("\n" + "\n".join(
        f"{h.name} {h.scenario:<16} OutRsts/s {rates[h.address]['Tcp:OutRsts']:.2f}"
        f" ListenOverflows/s {rates[h.address]['TcpExt:ListenOverflows']:.2f}" for h in alive))
    for host in alive:
        got = rates[host.address]
        expected = host.expected.get("rate", 0.0)
        if host.scenario == "quiet":
            assert got["Tcp:OutRsts"] == 0, host
            continue
        assert 0.6 * expected <= got["Tcp:OutRsts"] <= 1.5 * expected, (host, got["Tcp:OutRsts"])
        counter = host.expected.get("counter")
        if counter:
            assert 0.6 * expected <= got[f"TcpExt:{counter}"] <= 1.5 * expected, (host, counter)
        if host.scenario in ("linger_abort", "unread_close"):
            # Both ends of a loopback connection see the abort.
            assert got["Tcp:EstabResets"] == pytest.approx(2 * got["Tcp:OutRsts"], abs=0.5)

    # The generators run under their scenario names, as a scanner will see them.
    comms = {Path(f"/proc/{p['pid']}/comm").read_text().strip() for p in record["processes"]}
    assert by["closed_port"].expected["process"] in comms
    assert by["linger_abort"].expected["process"] in comms

    lab_down(state.directory)
    _assert_gone(record)
    assert not (state.directory / "lab.json").exists()
    others = {r for r in routes_before if "frst" not in r}
    assert {r for r in _routes() if "frst" not in r} == others
    assert not [r for r in _routes() if record["bridge"] in r or str(subnet) in r]
    lab_down(state.directory)  # idempotent
    with pytest.raises(LabError):
        load_lab(state.directory)


@pytest.mark.lab
def test_a_lab_up_that_fails_halfway_removes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot: dict[str, Any] = {}

    def fail(*args: Any) -> None:
        snapshot.update(json.loads((tmp_path / "lab.json").read_text()))
        raise RuntimeError("injected failure")

    # Fails once every namespace, sshd and generator is up: the most there is to undo.
    monkeypatch.setattr(lab, "_write_inventory", fail)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            lab_up(tmp_path, 4, seed=11, scenarios=["closed_port", "listen_overflow", "dead"],
                   ttl=60.0)
        assert len(snapshot["namespaces"]) == 4
        assert {p["role"] for p in snapshot["processes"]} >= {"supervisor", "init", "sshd",
                                                               "server"}
        _assert_gone(snapshot)
        assert not (tmp_path / "lab.json").exists()
    finally:
        lab_down(tmp_path)


@pytest.mark.lab
def test_cli_brings_a_lab_up_and_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    up = parser.parse_args(["lab", "up", "--hosts", "2", "--dir", str(tmp_path), "--seed", "5",
                            "--ttl", "60"])
    try:
        assert up.func(up) == 0
        out = capsys.readouterr().out
        state = load_lab(tmp_path)
        assert "lab seed: 5" in out and f"inventory: {state.inventory}" in out
        for host in state.hosts:
            assert f"{host.name}  {host.address}" in out and host.scenario in out
        record = json.loads((tmp_path / "lab.json").read_text())
        down = parser.parse_args(["lab", "down", "--dir", str(tmp_path)])
        assert down.func(down) == 0
        _assert_gone(record)
    finally:
        lab_down(tmp_path)


def _unreachable_routes() -> set[str]:
    out = subprocess.run(["ip", "-4", "route", "show", "type", "unreachable"], capture_output=True,
                         text=True, check=True).stdout
    return {line.split()[1] for line in out.splitlines() if line.startswith("unreachable ")}


@pytest.mark.lab
def test_a_bastion_lab_hides_its_hosts_and_comes_down_completely(tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(1, 2**31)
    print(f"\nlab seed: {seed}")
    try:
        # A sweep with no other busy host: its scanner runs on the bastion, the hosts' neighbour.
        state = lab_up(tmp_path, 2, seed=seed, scenarios=["port_sweep", "quiet"], ttl=120.0,
                       bastion=True)
        record = json.loads((tmp_path / "lab.json").read_text())
        jump = state.bastion
        assert jump is not None and load_lab(tmp_path).bastion == jump
        assert record["routes"] == [jump.inner_subnet]
        assert jump.inner_subnet in _unreachable_routes()
        sweep = state.hosts[0]
        assert sweep.expected["peer"] == jump.inner_address
        scanner = next(p for p in record["processes"] if p["scenario"] == "port_sweep")
        assert scanner["namespace"] == jump.namespace
        assert os.stat(f"/proc/{scanner['pid']}/ns/net").st_ino == os.stat(
            f"/run/netns/{jump.namespace}").st_ino
        # OpenSSH itself gets in through the bastion with the lab's ssh_config (a ProxyJump's
        # own ssh reads -F, not -o), and only through it.
        ssh = subprocess.run(
            ["ssh", "-F", str(tmp_path / "ssh_config"), "-o", "ConnectTimeout=10",
             "-J", f"root@{jump.address}", f"root@{sweep.address}", "ip -4 -o addr show eth0"],
            capture_output=True, text=True, timeout=60, check=False)
        assert ssh.returncode == 0 and f"{sweep.address}/" in ssh.stdout, ssh.stderr
        direct = _ssh(state, sweep.address, "true")
        assert direct.returncode == 255, direct
    finally:
        lab_down(tmp_path)
    _assert_gone(record)
    assert jump.inner_subnet not in _unreachable_routes()
    assert not (tmp_path / "lab.json").exists()


# --- lab hosts from the inside, and the namespaces nested in them -----------------------------


def _snmp(pid: int, counter: str = "Tcp:OutRsts") -> int:
    """A counter of the network namespace of process `pid`, read from the root namespace."""
    text = Path(f"/proc/{pid}/net/snmp").read_text() + Path(f"/proc/{pid}/net/netstat").read_text()
    return parse_counters(text)[counter]


def _ns_inode(pid: int, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def _holders(kind: str, inodes: set[int]) -> list[int]:
    """PIDs of the processes in any of these namespaces of `kind` (net, pid, mnt)."""
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and _ns_inode(int(p.name), kind) in inodes]


@contextlib.contextmanager
def _held(state: LabState) -> Iterator[dict[str, set[int]]]:
    """The inodes of the lab's host PID and mount namespaces and nested network namespaces,
    held open meanwhile: other labs on this machine cannot get the same numbers for their own
    namespaces while the test looks for what is left in these."""
    paths = {"pid": [f"/proc/{h.init.pid}/ns/pid" for h in state.hosts if h.init],
             "mnt": [f"/proc/{h.init.pid}/ns/mnt" for h in state.hosts if h.init],
             "net": [f"/proc/{n.main.pid}/ns/net" if n.main else
                     f"/proc/{h.init.pid}/root/run/netns/{n.name}"
                     for h in state.hosts for n in h.netns]}
    fds = {kind: [os.open(path, os.O_RDONLY | os.O_CLOEXEC) for path in found]
           for kind, found in paths.items()}
    try:
        yield {kind: {os.fstat(fd).st_ino for fd in held} for kind, held in fds.items()}
    finally:
        for fd in (fd for held in fds.values() for fd in held):
            os.close(fd)


def _rst_capture(netns: str, seconds: float, port: int, count: int = 100) -> list[str]:
    """Resets to or from `port` that tcpdump sees on every interface of the network namespace
    at path `netns`, within `seconds` (or until `count` of them)."""
    done = subprocess.run(
        ["timeout", str(seconds), "nsenter", f"--net={netns}", "tcpdump", "-i", "any", "-nn",
         "-l", "-c", str(count), f"tcp port {port} and tcp[tcpflags] & tcp-rst != 0"],
        capture_output=True, text=True, check=False)
    assert done.returncode in (0, 124), done.stderr
    return [line for line in done.stdout.splitlines() if " Flags [R" in line]



def _inside(state: LabState, host: LabHost) -> tuple[set[int], dict[int, str], list[str]]:
    """What a login on the host sees: the PIDs in its /proc, `ps` (PID -> comm), and the named
    namespaces `ip netns list` shows."""
    done = _ssh(state, host.address,
                "ls /proc; echo ---; ps -eo pid=,comm=; echo ---; ip netns list")
    assert done.returncode == 0, done.stderr
    ls, ps, netns = done.stdout.split("---\n")
    procs = {int(pid): comm for pid, _, comm in
             (line.strip().partition(" ") for line in ps.splitlines() if line.strip())}
    return ({int(w) for w in ls.split() if w.isdigit()}, procs,
            [line.split()[0] for line in netns.splitlines() if line.strip()])


@pytest.mark.lab
def test_a_lab_host_sees_only_itself_and_its_nested_namespaces(lab_factory: Any) -> None:
    scenarios = ["closed_port@netns", "linger_abort@named", "closed_port", "quiet"]
    state = lab_factory(len(scenarios), scenarios=scenarios, ttl=300.0,
                        idle_named={"host3": 2})
    record = json.loads((state.directory / "lab.json").read_text())
    nested_box, named_box, plain, quiet = state.hosts
    processes = [p for p in record["processes"] if p["host"] is not None]
    pidns = {h.name: _ns_inode(h.init.pid, "pid") for h in state.hosts if h.init}
    mntns = {h.name: _ns_inode(h.init.pid, "mnt") for h in state.hosts if h.init}
    nested = {n.inode: n for h in state.hosts for n in h.netns}
    names = {h.name: sorted(n.name for n in h.netns if n.name) for h in state.hosts}
    assert len(nested) == 4 and len(set(pidns.values())) == len(set(mntns.values())) == 4
    assert len(names["host1"]) == 1 and len(names["host3"]) == 2 and not names["host0"]

    # Inside, each host's /proc, ps and /run/netns are its own; the machine's (and the other
    # hosts') processes and named namespaces are not there.
    for host in state.hosts:
        assert host.init is not None and host.init.ns_pid == 1
        listed, ps, netns = _inside(state, host)
        mine = [p for p in processes if p["host"] == host.name]
        others = {comm_of(p["name"]) for p in processes if p["host"] != host.name
                  and p["role"] in ("client", "server")}
        assert 1 in listed and len(listed) < 40, listed
        for proc in mine:
            assert proc["ns_pid"] in listed, proc
            # The root namespace's PID and the host's name the same process.
            assert _ns_inode(proc["pid"], "pid") == pidns[host.name]
            assert ps[proc["ns_pid"]] == comm_of(proc["name"]), (proc, ps)
        assert not others & set(ps.values()), (host.name, ps)
        assert sorted(netns) == names[host.name]
    # ... and the root namespace's /run/netns has none of theirs.
    machine = set(os.listdir("/run/netns"))
    assert not machine & {n.name for n in nested.values()}
    assert {h.namespace for h in state.hosts} <= machine

    # A client in a nested namespace gets its resets on that namespace's own lo; the host's
    # own namespace sees none of them.
    port = nested_box.expected["local_port"]
    box = nested_box.netns[0]
    assert box.main is not None and box.inode == nested_box.expected["netns"]["inode"]
    assert box.name is None and box.scenario == "closed_port"
    assert box.main.name == nested_box.expected["process"] == box.processes[0].name
    assert _ns_inode(box.main.pid, "net") == box.inode != _ns_inode(nested_box.init.pid, "net")
    outside = {"nested": _snmp(box.main.pid), "host": _snmp(nested_box.init.pid)}
    with ThreadPoolExecutor(2) as pool:
        in_box = pool.submit(_rst_capture, f"/proc/{box.main.pid}/ns/net", 5.0, port, 3)
        in_host = pool.submit(_rst_capture, f"/proc/{nested_box.init.pid}/ns/net", 3.0, port)
        seen, host_seen = in_box.result(), in_host.result()
    moved = {"nested": _snmp(box.main.pid) - outside["nested"],
             "host": _snmp(nested_box.init.pid) - outside["host"]}
    print(f"\nnested closed_port: {seen[:2]}, OutRsts moved {moved}")
    assert len(seen) == 3 and all(f"127.0.0.1.{port} > 127.0.0.1." in line for line in seen)
    assert not host_seen
    assert moved["nested"] >= 4 and moved["host"] == 0

    # A server aborting its connections in a named nested namespace, client beside it.
    named = named_box.netns[0]
    assert named.name == named_box.expected["netns"]["name"] and named.name in names["host1"]
    assert named.inode == named_box.expected["netns"]["inode"]
    assert os.stat(f"/proc/{named_box.init.pid}/root/run/netns/{named.name}").st_ino == named.inode
    assert {p.role for p in named.processes} == {"server", "client"}
    assert all(_ns_inode(p.pid, "net") == named.inode for p in named.processes)
    server = next(p for p in named.processes if p.role == "server")
    before = (_snmp(server.pid, "TcpExt:TCPAbortOnData"), _snmp(named_box.init.pid))
    time.sleep(2.0)
    assert _snmp(server.pid, "TcpExt:TCPAbortOnData") - before[0] >= 2
    assert _snmp(named_box.init.pid) == before[1]

    # The plain closed_port host is as before: its resets in its own namespace.
    assert not plain.netns and "netns" not in plain.expected
    before_plain = _snmp(plain.init.pid)
    time.sleep(1.5)
    assert _snmp(plain.init.pid) > before_plain
    assert all(n.main is None and not n.processes for n in quiet.netns)

    with _held(state) as held:
        assert held["net"] == set(nested) and held["pid"] == set(pidns.values())
        lab_down(state.directory)
        _assert_gone(record)
        _assert_nested_gone(held)


def _assert_nested_gone(held: dict[str, set[int]]) -> None:
    """No process is left in these namespaces, no mount of the root namespace holds one, none of
    the hosts' own /proc and /run/netns mounts reached the root namespace's mount table."""
    for kind, inodes in held.items():
        assert not _holders(kind, inodes), kind
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    assert not [m for m in mounts if any(f"net:[{inode}]" in m for inode in held["net"])]
    assert not [m for m in mounts if m.split()[4] == "/run/netns" and " - tmpfs " in m]
    assert [m.split()[4] for m in mounts if " - proc " in m].count("/proc") == 1


@pytest.mark.lab
def test_a_host_with_a_hundred_nested_namespaces_comes_up_and_goes_away(
        lab_factory: Any) -> None:
    started = time.monotonic()
    state = lab_factory(2, scenarios=["quiet", "closed_port"], ttl=300.0,
                        idle_netns={"host0": 100}, idle_named={"host0": 100})
    up = time.monotonic() - started
    host, other = state.hosts
    unnamed = [n for n in host.netns if n.name is None]
    named = [n for n in host.netns if n.name is not None]
    assert len(unnamed) == len(named) == 100 and not other.netns
    inodes = {n.inode for n in host.netns}
    assert len(inodes) == 200
    for box in unnamed:
        assert box.main is not None and box.main.name == "sleep"
        assert _ns_inode(box.main.pid, "net") == box.inode
    # Seen from a login on the host: 100 namespaces held by processes besides its own, and its
    # own 100 named ones (none of which the other host or the machine lists).
    done = _ssh(state, host.address, "for p in /proc/[0-9]*; do readlink $p/ns/net; done "
                                     "| sort -u | wc -l; ip netns list | wc -l; readlink "
                                     "/proc/self/ns/net")
    assert done.returncode == 0, done.stderr
    held, listed, own = done.stdout.split()
    assert int(held) == 101 and int(listed) == 100
    assert own == f"net:[{_ns_inode(host.init.pid, 'net')}]"
    assert _inside(state, other)[2] == []
    assert not set(os.listdir("/run/netns")) & {n.name for n in named}
    # lo is up in each, as a container runtime leaves it.
    lo = subprocess.run(["nsenter", f"--net=/proc/{unnamed[-1].main.pid}/ns/net", "ip", "-o",
                         "link", "show", "lo"], capture_output=True, text=True, check=True)
    assert "UP" in lo.stdout.split(">")[0]

    record = json.loads((state.directory / "lab.json").read_text())
    with _held(state) as held:
        assert held["net"] == inodes
        started = time.monotonic()
        lab_down(state.directory)
        down = time.monotonic() - started
        print(f"\n200 nested namespaces: up {up:.1f}s (whole lab), down {down:.1f}s")
        _assert_gone(record)
        _assert_nested_gone(held)
