"""End to end: the real CLI over real SSH against a namespace fleet with real resets."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetrst.lab import LabState, lab_down, lab_up

pytestmark = pytest.mark.lab

SCENARIOS = ["closed_port", "linger_abort", "quiet", "dead", "unread_close", "port_sweep"]


def _seed() -> int:
    return int(os.environ.get("FLEETRST_LAB_SEED") or random.SystemRandom().randrange(1, 2**31))


def fleetrst(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetrst", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def leftovers(fleet: LabState | None = None, runs: list[Path] | None = None) -> dict[str, list[str]]:
    """What fleetrst could have left on the (shared) hosts: run directories, tcpdumps, trace instances.

    With a fleet and run directories, only what belongs to those runs and that fleet counts, so
    that other scans on the same machine do not disturb the check.
    """
    ids = []
    for run in runs or []:
        try:
            ids.append(json.loads((run / "run.json").read_text())["id"])
        except (OSError, ValueError, KeyError):
            pass
    prefixes = tuple(f"fleetrst-{i}-" for i in ids) or ("fleetrst-",)
    dirs = sorted(str(p) for p in Path("/tmp").glob("fleetrst-*")
                  if p.is_dir() and p.name.startswith(prefixes) and len(p.name.split("-")) >= 4)
    inodes = {_netns_inode(f"/run/netns/{h.namespace}") for h in fleet.hosts} - {None} if fleet else set()
    procs = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ino = os.stat(p / "ns" / "net").st_ino
        except OSError:
            continue
        if "tcpdump" in cmd and "tcp-rst" in cmd and (not inodes or ino in inodes):
            procs.append(f"{p.name}: {cmd}")
    instances = []
    for root in (Path("/sys/kernel/tracing/instances"), Path("/sys/kernel/debug/tracing/instances")):
        if root.is_dir():
            instances += [str(i) for i in root.glob("fleetrst-*") if i.name.startswith(prefixes)]
    return {"dirs": dirs, "tcpdump": procs, "trace_instances": instances}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    seed = _seed()
    scenarios = list(SCENARIOS)
    random.Random(seed).shuffle(scenarios)
    print(f"\nlab seed: {seed} (FLEETRST_LAB_SEED={seed} reproduces), scenarios: {scenarios}")
    directory = tmp_path_factory.mktemp("lab")
    try:
        state = lab_up(directory, hosts=len(scenarios), seed=seed, scenarios=scenarios)
        yield state
    finally:
        lab_down(directory)


def _by_scenario(state: LabState) -> dict[str, object]:
    return {h.scenario: h for h in state.hosts}


def test_scan_finds_the_top_sender_on_every_host(fleet: LabState, tmp_path: Path, fault_table) -> None:
    out = tmp_path / "run"
    r = fleetrst("scan", str(fleet.inventory), "--known-hosts", str(fleet.known_hosts),
                 "--duration", "8", "-o", str(out))
    print(r.stdout, r.stderr[-3000:])
    assert r.returncode == 3, "a dead host must make the exit status say some hosts failed"
    assert str(out / "index.html") in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    hosts = {h["name"]: h for h in summary["hosts"]}
    assert set(hosts) == {h.name for h in fleet.hosts}
    # Machine-readable outputs of a real run: the schema holds, JUnit has one case per host.
    import xml.etree.ElementTree as ET
    from importlib import resources

    import jsonschema

    schema = json.loads(resources.files("fleetrst").joinpath("summary.schema.json").read_text())
    jsonschema.validate(summary, schema)
    cases = ET.parse(out / "junit.xml").getroot().iter("testcase")
    verdicts = {c.get("name"): [child.tag for child in c] for c in cases}
    assert set(verdicts) == {h.name for h in fleet.hosts}
    for lh in fleet.hosts:
        if lh.scenario == "dead":
            assert "error" in verdicts[lh.name]
        elif lh.scenario == "quiet":
            assert "failure" not in verdicts[lh.name] and "error" not in verdicts[lh.name]
        else:
            assert "failure" in verdicts[lh.name]
    index = (out / "index.html").read_text()

    for lh in fleet.hosts:
        h = hosts[lh.name]
        exp = lh.expected
        assert (out / h["report"]).exists()
        assert lh.name in index
        if lh.scenario == "dead":
            assert h["status"] == "failed"
            assert "refused" in h["error"]
            fault_table.append(("connection refused", "failed: one line, others complete, exit 3",
                                f"failed: {h['error']} (exit {r.returncode})", "ok"))
            continue
        assert h["status"] == "ok", h.get("error")
        assert h["counters"]["OutRsts"]["delta"] >= 0
        warn = [f for f in h["findings"] if f["severity"] in ("warning", "critical")]
        if lh.scenario == "quiet":
            assert not warn, h["findings"]
            continue
        if lh.scenario == "port_sweep":
            top = next(f for f in h["findings"] if f["kind"] == "scan")
            assert top["interface"] == exp["interface"]
            assert exp["peer"] in top["peers"]
            continue
        top = h["findings"][0]
        assert top["kind"] == exp["kind"], (lh.scenario, top)
        assert top["interface"] == exp["interface"]
        assert top["local"].rsplit(":", 1)[1] == str(exp["local_port"])
        if lh.scenario == "closed_port":
            assert top["local"] == f"127.0.0.1:{exp['local_port']}"
            # About 2/s over the window (tolerance for start-up and scheduling).
            assert 1.2 <= top["per_s"] <= 2.8, top
            assert top["reason"] == "NO_SOCKET"
            assert top["process"] and top["process"]["name"] == exp["process"]
            assert f"nothing listens on {exp['local_port']}" in top["summary"]
            page = (out / h["report"]).read_text()
            assert "lo" in page and str(exp["local_port"]) in page
        if lh.scenario in ("linger_abort", "unread_close"):
            assert top["process"] and top["process"]["name"] == exp["process"]
            assert exp["counter"] in top["evidence"]["counters"], top
    assert leftovers(fleet, [out]) == {"dirs": [], "tcpdump": [], "trace_instances": []}


def test_sigint_mid_window_leaves_nothing_on_the_hosts(fleet: LabState, tmp_path: Path, fault_table) -> None:
    duration = 20
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetrst", "scan", str(fleet.inventory), "--known-hosts",
         str(fleet.known_hosts), "--duration", str(duration), "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        # As from a terminal: a suite run as a background job would pass SIGINT on ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        window_start = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "run.json").exists() and leftovers(fleet, [out])["tcpdump"]:
                window_start = time.monotonic()
                break
            time.sleep(0.1)
        assert window_start is not None, "the scan never reached its window (no capture running)"
        time.sleep(2)
        # Mid-window, on the hosts: one private directory per host, files readable by no one else.
        run_id = json.loads((out / "run.json").read_text())["id"]
        dirs = list(Path("/tmp").glob(f"fleetrst-{run_id}-*"))
        assert len(dirs) == sum(1 for h in fleet.hosts if h.scenario != "dead")
        for d in dirs:
            assert d.stat().st_mode & 0o777 == 0o700 and not d.is_symlink()
            files = [f for f in d.iterdir()]
            assert any(f.name.startswith("rst-") for f in files)
            for f in files:
                assert f.stat().st_mode & 0o077 == 0, (f, oct(f.stat().st_mode))
        fault_table.append(("host-side file modes", "files 0600 in a 0700 directory, mid-window",
                            f"{len(dirs)} directories 0700, no file readable by group or others", "ok"))
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        assert rc == 130
        # The host side ends on its own within the window plus a few seconds at most.
        while time.monotonic() < window_start + duration + 5 and any(leftovers(fleet, [out]).values()):
            time.sleep(0.5)
        assert leftovers(fleet, [out]) == {"dirs": [], "tcpdump": [], "trace_instances": []}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _live_host(state: LabState):
    return next(h for h in state.hosts if h.scenario == "quiet")


def test_unknown_host_keys_are_refused_unless_accepted_explicitly(fleet: LabState, tmp_path: Path, fault_table) -> None:
    host = _live_host(fleet)
    empty = tmp_path / "known_hosts"
    r = fleetrst("scan", str(fleet.inventory), "-l", host.name, "--known-hosts", str(empty),
                 "--duration", "1", "-o", str(tmp_path / "run1"))
    assert r.returncode == 3
    entry = json.loads((tmp_path / "run1" / "summary.json").read_text())["hosts"][0]
    assert entry["status"] == "failed"
    assert "unknown host key" in entry["error"] and "--accept-new-host-keys" in entry["error"]
    assert not empty.exists(), "a refused key must not be recorded"

    r = fleetrst("scan", str(fleet.inventory), "-l", host.name, "--known-hosts", str(empty),
                 "--accept-new-host-keys", "--duration", "1", "-o", str(tmp_path / "run2"))
    assert r.returncode == 0, r.stderr
    recorded = empty.read_text()
    assert recorded.startswith(f"{host.address} ssh-ed25519 ")
    # The recorded key is the host's real key: OpenSSH's own client accepts it strictly.
    ssh = subprocess.run(
        ["ssh", "-i", str(fleet.key_file), "-o", f"UserKnownHostsFile={empty}", "-o", "StrictHostKeyChecking=yes",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"root@{host.address}", "true"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert ssh.returncode == 0, ssh.stderr
    fault_table.append(("unknown host key", "refused unless --accept-new-host-keys, then recorded",
                        f"refused ({entry['error'][:50]}...), accepted key verified by OpenSSH", "ok"))


def test_a_changed_host_key_is_refused_and_named(fleet: LabState, tmp_path: Path, fault_table) -> None:
    host = _live_host(fleet)
    other = next(h for h in fleet.hosts if h.name != host.name)
    lines = fleet.known_hosts.read_text().splitlines()
    # Give this host the key of another host: what a man in the middle would look like.
    other_key = next(ln.split(" ", 1)[1] for ln in lines if ln.split(" ", 1)[0] == other.address)
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{host.address} {other_key}\n")
    r = fleetrst("scan", str(fleet.inventory), "-l", host.name, "--known-hosts", str(forged),
                 "--accept-new-host-keys", "--duration", "1", "-o", str(tmp_path / "run"))
    assert r.returncode == 3
    entry = json.loads((tmp_path / "run" / "summary.json").read_text())["hosts"][0]
    assert entry["status"] == "failed"
    assert "CHANGED" in entry["error"] and str(forged) in entry["error"]
    assert forged.read_text() == f"{host.address} {other_key}\n"
    fault_table.append(("changed host key", "refused even with --accept-new-host-keys, known_hosts named",
                        f"failed: {entry['error'][:90]}", "ok"))


def test_hosts_behind_a_bastion_are_reached_through_one_shared_connection(fleet: LabState, tmp_path: Path) -> None:
    import yaml

    live = [h for h in fleet.hosts if h.scenario != "dead"]
    bastion, behind = live[0], live[1:]
    inv = yaml.safe_load(fleet.inventory.read_text())
    hosts = inv["all"]["children"]["lab"]["hosts"]
    for h in behind:
        hosts[h.name]["ansible_ssh_common_args"] = f"-o ProxyJump=root@{bastion.address}"
    for name in list(hosts):
        if name not in {h.name for h in behind}:
            del hosts[name]
    path = tmp_path / "bastion.yml"
    path.write_text(yaml.safe_dump(inv))
    out = tmp_path / "run"
    r = fleetrst("scan", str(path), "--known-hosts", str(fleet.known_hosts), "--duration", "2", "-o", str(out))
    assert r.returncode in (0, 1), r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert {h["name"] for h in summary["hosts"]} == {h.name for h in behind}
    assert all(h["status"] == "ok" for h in summary["hosts"]), [h.get("error") for h in summary["hosts"]]
    for h in summary["hosts"]:
        # The target's own socket table: its SSH session comes from the bastion, not from us.
        sockets = (out / h["report"]).parent.joinpath("sockets.txt").read_text()
        ssh_peers = {ln.split()[4].rsplit(":", 1)[0] for ln in sockets.splitlines()
                     if len(ln.split()) > 4 and ln.split()[0] == "ESTAB" and ln.split()[3].endswith(":22")}
        assert ssh_peers == {bastion.address}, ssh_peers


def test_exit_code_tells_a_clean_run_from_one_with_warnings(fleet: LabState, tmp_path: Path) -> None:
    quiet = next(h for h in fleet.hosts if h.scenario == "quiet")
    noisy = next(h for h in fleet.hosts if h.scenario == "closed_port")
    clean = fleetrst("scan", str(fleet.inventory), "-l", quiet.name, "--known-hosts", str(fleet.known_hosts),
                     "--duration", "3", "-o", str(tmp_path / "clean"))
    warn = fleetrst("scan", str(fleet.inventory), "-l", noisy.name, "--known-hosts", str(fleet.known_hosts),
                    "--duration", "3", "-o", str(tmp_path / "warn"))
    assert (clean.returncode, warn.returncode) == (0, 1), (clean.stderr, warn.stderr)
