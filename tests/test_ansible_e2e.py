"""The Ansible path: playbooks/capture.yml collects what `fleetrst scan` collects.

First the parts without a fleet: the role's filters agree with fleetrst's own parsers, its
module splits and checks bundles, and capture.sh's file lease. Then end to end against the lab:
`fleetrst scan` and then `ansible-playbook ... capture.yml` + `fleetrst analyze` on the same
hosts must find the same things, and leave nothing on the hosts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fleetrst.analysis.severity import FAULT_KINDS
from fleetrst.cli import _namespaces_spec_ok
from fleetrst.collect import _iface_tag, host_dir_names, host_token, iso, local_name, parse_kv
from fleetrst.facts import parse_ip_link
from fleetrst.inventory import ansible_env
from fleetrst.lab import LabState, lab_down, lab_up
from fleetrst.model import Host

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = ROOT / "playbooks" / "capture.yml"
ROLE = ROOT / "playbooks" / "roles" / "fleetrst"
SCRIPT = ROOT / "fleetrst" / "remote" / "capture.sh"
FACTS = Path(__file__).parent / "data" / "facts"


@pytest.fixture(autouse=True)
def _ansible_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ansible's own state (~/.ansible: local temp files, caches) goes to the test's directory."""
    monkeypatch.setenv("ANSIBLE_HOME", str(tmp_path / "ansible-home"))


def ansible_tool(name: str) -> str:
    """An ansible-core command; skipped without it, except under CI, where it must be there."""
    found = shutil.which(name)
    beside = Path(sys.executable).parent / name
    if found is None and beside.is_file():
        found = str(beside)
    if found is None:
        message = f"{name} not found: install the test extra (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def filters() -> ModuleType:
    return load(ROLE / "filter_plugins" / "fleetrst_filters.py", "fleetrst_filters")


@pytest.fixture(scope="module")
def record_module() -> ModuleType:
    ansible_tool("ansible-playbook")  # the module imports ansible.module_utils
    return load(ROLE / "library" / "fleetrst_record.py", "fleetrst_record")


# --- the role's filters against fleetrst's own code -----------------------------------------------


@pytest.mark.parametrize("interfaces", ["all", "lo", "lo,nosuch0", ["lo"]])
def test_preflight_reading_matches_fleetrst(
    filters: ModuleType, run_dir: Path, interfaces: Any
) -> None:
    # A real preflight of this machine, plus recorded interface lists with odd names.
    r = subprocess.run(["sh", str(SCRIPT), "preflight", str(run_dir)], capture_output=True,
                       text=True, timeout=30, check=True)
    for ns in ("host", "ns-a", "ns-b"):
        links = (FACTS / f"ip-link-{ns}.txt").read_text()
        stdout = r.stdout.split("--- ip -o link")[0] + "--- ip -o link\n" + links + \
            "--- ip -o addr\n" + (FACTS / f"ip-addr-{ns}.txt").read_text()
        got = filters.fleetrst_preflight(stdout, interfaces)
        kv, sections = parse_kv(stdout)
        assert got["ran"] is True
        assert got["ip_link"] == sections["ip -o link"]
        assert got["ip_addr"] == sections["ip -o addr"]
        tools = {k[5:]: v or None for k, v in kv.items() if k.startswith("tool.")}
        assert got["facts"]["tools"] == tools
        assert got["facts"]["kernel"] == kv["kernel"] and got["facts"]["uid"] == kv["uid"]
        assert got["missing"] == [t for t in ("timeout", "ip", "ss", "awk", "sha256sum")
                                  if not tools.get(t)]
        wanted = None if interfaces == "all" else (
            interfaces if isinstance(interfaces, list) else interfaces.split(","))
        parsed = parse_ip_link(sections["ip -o link"])
        if got["status"] == "ok":
            expected = [{"interface": i.name, "index": n, "tag": _iface_tag(i.name, n)}
                        for n, i in sorted(parsed.items())
                        if i.up and (wanted is None or i.name in wanted)]
            assert got["captures"] == expected
            assert expected, "every recorded host has lo up"
        else:
            assert got["captures"] == []
        if wanted and "nosuch0" in wanted:
            assert "interface nosuch0 does not exist on this host" in got["notes"]


def test_preflight_partial_cases(filters: ModuleType) -> None:
    base = "fleetrst_remote=1\nuid=0\ntool.timeout=/t\ntool.ip=/i\ntool.ss=/s\ntool.awk=/a\n" \
           "tool.sha256sum=/h\n--- ip -o link\n1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536\n"
    ok = filters.fleetrst_preflight(base + "", "all")
    assert ok["status"] == "partial" and ok["error"] == "tcpdump not found on the host: counters only"
    with_tcpdump = base.replace("uid=0", "uid=0\ntool.tcpdump=/usr/bin/tcpdump")
    assert filters.fleetrst_preflight(with_tcpdump)["status"] == "ok"
    as_user = filters.fleetrst_preflight(with_tcpdump.replace("uid=0", "uid=1000"))
    assert as_user["status"] == "partial" and "uid 1000" in as_user["error"]
    assert as_user["captures"] == [] and as_user["trace"] is False
    refused = filters.fleetrst_preflight(with_tcpdump, "all", "Missing sudo\npassword")
    assert refused["status"] == "partial" and refused["error"] == "sudo refused: Missing sudo password"
    assert filters.fleetrst_preflight("garbage")["ran"] is False


def test_names_and_instants_match_fleetrst(filters: ModuleType) -> None:
    names = ["web01", "web01", "a/b", "..x", ".", "", "index.html", "x" * 100, "h\x1bq", "Run.json",
             "db 1"]
    hosts = [Host(name=n or "h", address="198.18.0.9", port=22) for n in names]
    unique = list(dict.fromkeys(h.name for h in hosts))
    expected = dict(zip(unique, host_dir_names([Host(name=n, address="x") for n in unique])))
    assert filters.fleetrst_dir_names(unique) == expected
    for h in hosts:
        assert filters.fleetrst_token(h.name, h.address, h.port) == host_token(h)
        assert filters.fleetrst_token(h.name, h.address, "2222") == host_token(
            Host(name=h.name, address=h.address, port=2222))
    for ts in (0.0, 1795452730.5546, 1795452730.0004):
        assert filters.fleetrst_iso(ts) == iso(ts)


def test_status_lines(filters: ModuleType) -> None:
    text = ("armed pid=9 time=1.0\nstarted time=10.5\nended time=15.5\n"
            "file 12 abc capture.sh\nfile 3 def counters-end.txt\nfile 0 e3b rst-lo.pcap\n"
            "file 1 x .hidden\nfile 2 y a/b\ndone time=16\n")
    st = filters.fleetrst_status(text.replace("file 1 x .hidden", "file 6 p owner.pid\nfile 1 x .hidden"))
    assert st["done"] is True and st["error"] is None
    assert st["window_host"] == {"armed": 1.0, "started": 10.5, "ended": 15.5, "done": 16.0}
    assert [f["name"] for f in st["files"]] == ["counters-end.txt", "rst-lo.pcap"]
    assert filters.fleetrst_status("armed pid=1\nerror=run directory /x is missing\n") == {
        "window_host": {}, "files": [], "done": False, "error": "run directory /x is missing"}


def test_record_module_splits_and_checks_bundles(record_module: ModuleType, tmp_path: Path) -> None:
    parts = {"counters-start.txt": b"# fleetrst counters\ntime=103.5\nTcp: 1\n",
             "rst-lo.pcap": bytes(range(256)) * 5,
             "empty.txt": b""}
    files = [{"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
             for n, b in parts.items()]
    good = tmp_path / "good"
    good.mkdir()
    (good / ".bundle").write_bytes(b"".join(parts.values()))
    record = record_module.host_record(
        {"name": "web 1", "directory": "good", "address": "198.18.0.5", "port": "2222",
         "state": {"status": "ok", "fetched": files, "window_host": {"started": 104.5},
                   "ip_link": "1: lo: <UP>\n"},
         "window_start": 100.0}, str(tmp_path))
    assert record["status"] == "ok" and record["error"] is None and record["port"] == 2222
    assert {n: (good / n).read_bytes() for n in parts} == parts
    assert record["files"] == {f["name"]: {"size": f["size"], "sha256": f["sha256"]} for f in files}
    assert not (good / ".bundle").exists()
    assert (good / "ip-link.txt").read_text() == "1: lo: <UP>\n"
    assert any("3.5 s late" in n for n in record["notes"])
    assert json.loads((good / "host.json").read_text()) == record

    bad = tmp_path / "bad"
    bad.mkdir()
    damaged = bytearray(b"".join(parts.values()))
    damaged[len(parts["counters-start.txt"]) + 10] ^= 1  # a byte of the pcap
    (bad / ".bundle").write_bytes(bytes(damaged))
    record = record_module.host_record(
        {"name": "b", "directory": "bad", "state": {"status": "ok", "fetched": files}},
        str(tmp_path))
    assert record["status"] == "failed"
    assert record["error"] == "rst-lo.pcap arrived damaged (1280 of 1280 bytes, sha256 mismatch)"
    assert set(record["files"]) == {"counters-start.txt", "empty.txt"}

    gone = record_module.host_record({"name": "g", "directory": "g", "state": None}, str(tmp_path))
    assert gone["status"] == "failed" and "left the play" in gone["error"]

    missed = tmp_path / "missed"
    missed.mkdir()
    (missed / ".bundle").write_bytes(b"".join(parts.values()))
    record = record_module.host_record(
        {"name": "m", "directory": "missed", "window_start": 98.0,
         "state": {"status": "ok", "fetched": files}}, str(tmp_path), 5.0)
    assert record["status"] == "failed"
    assert record["error"] == ("the host started 5.5 s late, after the window had ended: the "
                               "host was too busy to start its captures on time")
    (missed / ".bundle").write_bytes(b"".join(parts.values()))
    record = record_module.host_record(
        {"name": "m", "directory": "missed", "window_start": 98.0,
         "state": {"status": "ok", "fetched": files, "window_host": {"armed": 97.5}}},
        str(tmp_path), 5.0)
    assert record["error"].endswith("the play needed more time than fleetrst_arm_margin to start "
                                    "every host (raise it, or --forks)")


# --- capture.sh's file lease ------------------------------------------------------------------------


def run_capture(directory: Path, start: float, duration: float, lease: Path) -> subprocess.Popen[str]:
    # No interfaces and no trace: the lease logic needs neither root nor tcpdump.
    return subprocess.Popen(
        ["sh", str(directory / "capture.sh"), "run", str(directory), f"{start:.6f}",
         f"{duration:.3f}", "2048", "20", "0", f"lease={lease}", "--"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A run directory where capture.sh accepts one: /tmp/fleetrst-NAME, NAME of [A-Za-z0-9-]."""
    directory = Path(f"/tmp/fleetrst-lt{secrets.token_hex(6)}")
    directory.mkdir(mode=0o700)
    try:
        shutil.copy(SCRIPT, directory / "capture.sh")
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_file_lease_keeps_files_until_released(run_dir: Path) -> None:
    lease = run_dir / ".lease"
    lease.touch()
    proc = run_capture(run_dir, time.time() + 0.5, 1.0, lease)
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if not line or line.startswith("done "):
                break
        assert lines[-1].startswith("done "), lines
        listed = {ln.split()[3] for ln in lines if ln.startswith("file ")}
        assert {"counters-start.txt", "counters-end.txt", "sockets.txt"} <= listed
        time.sleep(1.0)  # done, but the lease holds: the files stay for the fetch
        assert proc.poll() is None
        assert (run_dir / "counters-end.txt").exists()
        lease.unlink()
        assert proc.wait(timeout=10) == 0
        assert not run_dir.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_losing_the_file_lease_mid_window_removes_everything(run_dir: Path) -> None:
    lease = run_dir / ".lease"
    lease.touch()
    proc = run_capture(run_dir, time.time() + 0.3, 20.0, lease)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("armed ")
        time.sleep(1.0)
        lease.unlink()
        assert proc.wait(timeout=10) == 3
        assert not run_dir.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_missing_lease_file_is_refused(run_dir: Path) -> None:
    proc = run_capture(run_dir, time.time(), 1.0, run_dir / ".nolease")
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 2
    assert out.strip() == f"error=lease file {run_dir / '.nolease'} is missing"


def test_playbook_syntax() -> None:
    r = subprocess.run(
        [ansible_tool("ansible-playbook"), "--syntax-check", "-i", "localhost,", str(PLAYBOOK)],
        capture_output=True, text=True, env=ansible_env(), timeout=120, check=False)
    assert r.returncode == 0, r.stderr


def test_bad_settings_stop_the_play_before_any_host_is_touched(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = subprocess.run(
        [ansible_tool("ansible-playbook"), "-i", "web01.invalid,", str(PLAYBOOK),
         "-e", f"fleetrst_out={out}", "-e", "fleetrst_remote_tmp=/etc"],
        capture_output=True, text=True, env=ansible_env(), cwd=tmp_path, timeout=120, check=False)
    assert r.returncode != 0
    assert "fleetrst_remote_tmp must be /tmp or /var/tmp" in r.stdout
    assert "Log in as the inventory user" not in r.stdout
    assert not out.exists()


@pytest.mark.parametrize(("value", "ok"), [
    ("default/web-0,api-7f9c", True), ("4026532001,blue", True),
    ("a/b/c", False), ("x;id", False), ("/x", False),
])
def test_the_play_checks_the_namespaces_setting_as_the_cli_does(
        tmp_path: Path, value: str, ok: bool) -> None:
    assert _namespaces_spec_ok(value) is ok
    out = tmp_path / "run"
    # A host on loopback whose port refuses at once: a setting that passes goes on to log in.
    r = subprocess.run(
        [ansible_tool("ansible-playbook"), "-i", "127.0.0.1,", str(PLAYBOOK),
         "-e", f"fleetrst_out={out}", "-e", f"fleetrst_namespaces={value}", "-e", "ansible_port=1"],
        capture_output=True, text=True, env=ansible_env(), cwd=tmp_path, timeout=120, check=False)
    assert r.returncode != 0
    assert ("fleetrst_namespaces is all, host or a comma-separated" in r.stdout) is not ok, r.stdout
    assert ("Log in as the inventory user" in r.stdout) is ok, r.stdout


# --- end to end against the lab --------------------------------------------------------------------


# linger_abort runs in a named network namespace nested in its host, as a container's would: its
# files come back as the namespace's own (HOST/netns/INODE/), on either path.
SCENARIOS = ["closed_port", "linger_abort@named", "port_sweep", "quiet", "dead"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    seed = int(os.environ.get("FLEETRST_LAB_SEED") or random.SystemRandom().randrange(1, 2**31))
    scenarios = list(SCENARIOS)
    random.Random(seed).shuffle(scenarios)
    print(f"\nlab seed: {seed} (FLEETRST_LAB_SEED={seed} reproduces), scenarios: {scenarios}")
    directory = tmp_path_factory.mktemp("lab")
    try:
        yield lab_up(directory, hosts=len(scenarios), seed=seed, scenarios=scenarios)
    finally:
        lab_down(directory)


def fleetrst(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleetrst", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def left_on_hosts(run_id: str) -> list[str]:
    """What a run left behind: its directories, trace instances, or processes that still have a
    file of it open (the lab's hosts share this machine's file system and kernel)."""
    left = [str(p) for p in Path("/tmp").glob(f"fleetrst-{run_id}-*")]
    for root in (Path("/sys/kernel/tracing/instances"), Path("/sys/kernel/debug/tracing/instances")):
        if root.is_dir():
            left += [str(i) for i in root.glob(f"fleetrst-fleetrst-{run_id}-*")]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if f"/fleetrst-{run_id}-" in target:
                left.append(f"pid {proc.name} has {target} open")
    return left


def findings(run_dir: Path) -> dict[str, tuple[str, set[tuple[str, str, str]]]]:
    """Per host: status, and (kind, interface, local port) of each finding about the host's own
    fault. (Findings about resets received sit near rate thresholds in this lab: whether one is a
    warning can differ between two windows of the same traffic.)"""
    out = {}
    for h in json.loads((run_dir / "summary.json").read_text())["hosts"]:
        out[h["name"]] = (h["status"], {
            (f["kind"], f["interface"], f["local"].rsplit(":", 1)[-1])
            for f in h["findings"] if f["kind"] in FAULT_KINDS})
    return out


@pytest.mark.lab
def test_playbook_run_gives_the_same_findings_as_a_scan(fleet: LabState, tmp_path: Path) -> None:
    playbook_cmd = ansible_tool("ansible-playbook")
    scan_dir, ansible_dir = tmp_path / "scan", tmp_path / "ansible"
    r = fleetrst("scan", str(fleet.inventory), "--known-hosts", str(fleet.known_hosts),
                 "--duration", "5", "-o", str(scan_dir), "-q")
    assert r.returncode == 3, r.stdout + r.stderr  # the dead host

    # Ansible's own state stays in this test's directory; its ssh masters are stopped below.
    control = Path(tempfile.mkdtemp(prefix="frcp-", dir="/tmp"))  # short: a socket path
    env = ansible_env()
    env.update(
        ANSIBLE_PIPELINING="True",
        ANSIBLE_SSH_ARGS=f"-o ControlMaster=auto -o ControlPersist=60s -o ControlPath={control}/%C",
        ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3" if Path("/usr/bin/python3").exists()
        else "auto_silent",
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_ASYNC_DIR=str(tmp_path / "ansible-async"),
        ANSIBLE_REMOTE_TMP=str(tmp_path / "ansible-remote-tmp"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local-tmp"),
        ANSIBLE_RETRY_FILES_ENABLED="False",
    )
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    run_id = f"t{random.SystemRandom().randrange(16**8):08x}"
    # One more name for the quiet host, whose sudo refuses (no such become user): that host is
    # scanned without become, counters only, as fleetrst scan does.
    quiet = next(h for h in fleet.hosts if h.scenario == "quiet")
    refused = f"{quiet.name}-nosudo"
    extra = tmp_path / "extra.yml"
    extra.write_text(json.dumps({"all": {"hosts": {refused: {
        "ansible_host": quiet.address, "ansible_become": True,
        "ansible_become_user": f"nosuchuser{random.SystemRandom().randrange(10**6)}"}}}}))
    started = time.monotonic()
    try:
        r = subprocess.run(
            [playbook_cmd, "-i", str(fleet.inventory), "-i", str(extra), str(PLAYBOOK), "-f", "8",
             "-e", f"fleetrst_out={ansible_dir}", "-e", "fleetrst_duration=5",
             # Room to start every host's capture even on a busy test machine.
             "-e", "fleetrst_arm_margin=15",
             "-e", f"fleetrst_run_id={run_id}"],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    finally:
        for sock in control.iterdir():
            subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "lab"],
                           capture_output=True, timeout=10, check=False)
        shutil.rmtree(control, ignore_errors=True)
    print(f"ansible-playbook: {time.monotonic() - started:.1f} s")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]

    run = json.loads((ansible_dir / "run.json").read_text())
    assert run["id"] == run_id and run["collector"].startswith("ansible-playbook ")
    assert sorted(h["name"] for h in run["hosts"]) == sorted([h.name for h in fleet.hosts] + [refused])
    directory = {h["name"]: h["directory"] for h in run["hosts"]}
    assert run["window"]["seconds"] == 5.0
    r = fleetrst("analyze", str(ansible_dir), "-q")
    assert r.returncode == 3, r.stdout + r.stderr
    for name in ("index.html", "summary.json", "junit.xml"):
        assert (ansible_dir / name).exists()

    by_scan, by_ansible = findings(scan_dir), findings(ansible_dir)
    print("scan:   ", by_scan, "\nansible:", by_ansible)
    late = [n for run_dir in (scan_dir, ansible_dir)
            for h in json.loads((run_dir / "summary.json").read_text())["hosts"]
            for n in h.get("warnings", []) if " late" in n]
    nosudo = by_ansible.pop(refused)
    assert by_ansible == by_scan, f"(hosts that started late, if any: {late})"
    meta = json.loads((ansible_dir / directory[refused] / "host.json").read_text())
    assert nosudo == ("partial", set()) and meta["captures"] == []
    assert meta["error"].startswith("sudo refused: sudo: unknown user nosuchuser"), meta["error"]
    assert {"counters-start.txt", "counters-end.txt"} <= set(meta["files"])
    assert meta["cleanup"] == "confirmed"
    for lh in fleet.hosts:
        status, found = by_ansible[lh.name]
        host_dir = ansible_dir / directory[lh.name]
        meta = json.loads((host_dir / "host.json").read_text())
        if lh.scenario == "dead":
            assert status == "failed" and "Connection refused" in meta["error"]
            continue
        assert status == "ok", meta
        assert meta["cleanup"] == "confirmed"
        # Every file the host listed arrived whole, a namespace's in its own folder.
        for name, info in meta["files"].items():
            data = (host_dir / local_name(name)).read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (info["size"], info["sha256"])
        assert {"counters-start.txt", "counters-end.txt", "sockets.txt", "captures.txt",
                "exit-codes.txt", "ip-link.txt", "ip-addr.txt"} <= set(meta["files"])
        assert any(n.startswith("rst-") and n.endswith(".pcap") for n in meta["files"])
        exp = lh.expected
        if lh.scenario == "quiet":
            assert found == set()
        elif lh.scenario == "port_sweep":
            assert any(k == "scan" and i == exp["interface"] for k, i, _ in found), found
        else:
            assert (exp["kind"], exp["interface"], str(exp["local_port"])) in found, found
        if exp.get("netns"):
            inode = exp["netns"]["inode"]
            assert (host_dir / "netns" / str(inode) / "rst-lo.pcap").exists()
            for run_dir in (scan_dir, ansible_dir):
                h = next(h for h in json.loads((run_dir / "summary.json").read_text())["hosts"]
                         if h["name"] == lh.name)
                assert any(f["kind"] == exp["kind"] and (f["netns"] or {}).get("inode") == inode
                           for f in h["findings"]), (run_dir.name, h["findings"])

    assert left_on_hosts(run_id) == []
    assert not any((tmp_path / "ansible-async").glob("*")), "Ansible's job files were left"
