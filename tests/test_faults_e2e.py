"""Fault suite: one broken host never costs the others, nothing is left behind, exit codes are right.

Every case runs the real CLI over real SSH against the namespace fleet, and records a row
(case -> expected -> seen) for the table printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fleetrst.lab import LabState

pytestmark = pytest.mark.lab

CLEAN = {"dirs": [], "tcpdump": [], "trace_instances": []}


def leftovers(fleet: LabState, *runs: Path) -> dict[str, list[str]]:
    from test_scan_e2e import leftovers as scan_leftovers

    return scan_leftovers(fleet, list(runs))


@pytest.fixture(scope="module")
def fleet(lab_factory) -> LabState:
    seed = int(os.environ.get("FLEETRST_LAB_SEED") or random.SystemRandom().randrange(1, 2**31))
    scenarios = ["closed_port", "quiet", "linger_abort", "quiet"]
    random.Random(seed).shuffle(scenarios)
    return lab_factory(len(scenarios), scenarios=scenarios, seed=seed)


def scan(inventory: Path, fleet: LabState, out: Path, *extra: str, duration: str = "3") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetrst", "scan", str(inventory), "--known-hosts", str(fleet.known_hosts),
         "--duration", duration, "-o", str(out), *extra],
        capture_output=True, text=True, timeout=180, check=False,
    )


def inventory_with(fleet: LabState, path: Path, extra_hosts: dict[str, dict[str, object]]) -> Path:
    inv = yaml.safe_load(fleet.inventory.read_text())
    inv["all"]["children"]["lab"]["hosts"].update(extra_hosts)
    path.write_text(yaml.safe_dump(inv))
    return path


def summary_of(out: Path) -> dict[str, dict]:
    return {h["name"]: h for h in json.loads((out / "summary.json").read_text())["hosts"]}


def check_others_complete(fleet: LabState, hosts: dict[str, dict]) -> None:
    for lh in fleet.hosts:
        h = hosts[lh.name]
        assert h["status"] == "ok", (lh.name, h.get("error"))
        assert h["counters"]["OutRsts"]["end"] >= h["counters"]["OutRsts"]["start"]
        if lh.scenario == "closed_port":
            assert h["findings"] and h["findings"][0]["kind"] == lh.expected["kind"]


def record(table: list, case: str, expected: str, seen: str, ok: bool) -> None:
    table.append((case, expected, seen, "ok" if ok else "FAIL"))
    assert ok, f"{case}: expected {expected}, seen {seen}"


def unused_address(fleet: LabState) -> str:
    import ipaddress

    net = ipaddress.ip_network(fleet.subnet)
    used = {h.address for h in fleet.hosts}
    return str(next(a for a in reversed(list(net.hosts())) if str(a) not in used))


@pytest.mark.parametrize("case", ["unreachable", "blackhole", "wrong_key"])
def test_a_broken_host_fails_alone_with_one_line(case: str, fleet: LabState, tmp_path: Path, fault_table) -> None:
    helper = None
    target = next(h for h in fleet.hosts if h.scenario == "quiet")
    try:
        if case == "unreachable":
            extra = {"ghost": {"ansible_host": unused_address(fleet)}}
            expected = "failed: timed out / no route"
        elif case == "blackhole":
            # Accepts TCP but never speaks SSH; bounded: it exits by itself after 60 s.
            port = random.randrange(20000, 30000)
            code = ("import socket,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                    f"s.bind(('{target.address}',{port}));s.listen(8);s.settimeout(60);held=[]\n"
                    "end=time.time()+60\nwhile time.time()<end:\n"
                    "    try: held.append(s.accept()[0])\n    except OSError: break\n")
            helper = subprocess.Popen(["ip", "netns", "exec", target.namespace, sys.executable, "-c", code])
            deadline = time.monotonic() + 10
            import socket as _s

            while time.monotonic() < deadline:
                try:
                    _s.create_connection((target.address, port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            extra = {"blackhole": {"ansible_host": target.address, "ansible_port": port}}
            expected = "failed: no SSH banner"
        else:
            key = tmp_path / "stranger"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
            extra = {"wrongkey": {"ansible_host": target.address, "ansible_ssh_private_key_file": str(key)}}
            expected = "failed: authentication failed"
        inv = inventory_with(fleet, tmp_path / "inv.yml", extra)
        if case == "blackhole":
            # The blackhole's port is not in known_hosts under [addr]:port: accept it, so the
            # failure we see is the missing banner, not the key.
            kh = tmp_path / "known_hosts"
            kh.write_text(fleet.known_hosts.read_text())
            r = subprocess.run(
                [sys.executable, "-m", "fleetrst", "scan", str(inv), "--known-hosts", str(kh),
                 "--accept-new-host-keys", "--duration", "3", "-o", str(tmp_path / "run")],
                capture_output=True, text=True, timeout=180, check=False)
        else:
            r = scan(inv, fleet, tmp_path / "run")
        hosts = summary_of(tmp_path / "run")
        bad = hosts[next(iter(extra))]
        err = bad.get("error") or ""
        want = {"unreachable": ("timed out", "no route", "unreachable"), "blackhole": ("banner",),
                "wrong_key": ("authentication failed",)}[case]
        ok = (bad["status"] == "failed" and "\n" not in err and any(w in err.lower() for w in want)
              and r.returncode == 3)
        record(fault_table, case, expected + ", exit 3", f"{bad['status']}: {err} (exit {r.returncode})", ok)
        check_others_complete(fleet, hosts)
        assert leftovers(fleet, tmp_path / "run") == CLEAN
    finally:
        if helper is not None:
            helper.kill()
            helper.wait()


def _sshd_sessions(fleet: LabState, host) -> list[int]:
    """PIDs of the SSH sessions serving connections on a lab host (children of its sshd)."""
    data = json.loads((fleet.directory / "lab.json").read_text())
    main = [p["pid"] for p in data["processes"] if p.get("role") == "sshd" and p.get("host") == host.name]
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid in main:
            pids.append(int(proc.name))
    return pids


def _start_scan(fleet: LabState, out: Path, duration: int) -> tuple[subprocess.Popen[str], float]:
    """Start a scan and return once its captures run on the hosts (the window is open)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetrst", "scan", str(fleet.inventory), "--known-hosts", str(fleet.known_hosts),
         "--duration", str(duration), "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        # As from a terminal: a suite run as a background job would pass SIGINT on ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "run.json").exists() and leftovers(fleet, out)["tcpdump"]:
            return proc, time.monotonic()
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError("the scan never reached its window")


def _wait_clean(fleet: LabState, run: Path, until: float) -> dict[str, list[str]]:
    while time.monotonic() < until and leftovers(fleet, run) != CLEAN:
        time.sleep(0.5)
    return leftovers(fleet, run)


def test_ssh_connection_killed_mid_window(fleet: LabState, tmp_path: Path, fault_table) -> None:
    victim = next(h for h in fleet.hosts if h.scenario == "quiet")
    duration = 6
    proc, start = _start_scan(fleet, tmp_path / "run", duration)
    try:
        time.sleep(1.5)
        sessions = _sshd_sessions(fleet, victim)
        assert sessions, "no SSH session found on the victim"
        for pid in sessions:
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    hosts = summary_of(tmp_path / "run")
    bad = hosts[victim.name]
    left = _wait_clean(fleet, tmp_path / "run", start + duration + 5)
    ok = bad["status"] == "failed" and proc.returncode == 3 and left == CLEAN
    record(fault_table, "ssh connection killed mid-window", "that host failed, others ok, nothing left",
           f"{bad['status']}: {bad.get('error')} (exit {proc.returncode}, leftovers {sum(map(len, left.values()))})", ok)
    others = [h for h in fleet.hosts if h.name != victim.name]
    for lh in others:
        assert hosts[lh.name]["status"] == "ok", hosts[lh.name].get("error")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_orchestrator_stopped_mid_window_hosts_end_alone(sig: int, fleet: LabState, tmp_path: Path,
                                                         fault_table) -> None:
    duration = 8
    proc, start = _start_scan(fleet, tmp_path / "run", duration)
    try:
        time.sleep(1.5)
        assert leftovers(fleet, tmp_path / "run")["tcpdump"], "captures should be running mid-window"
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = _wait_clean(fleet, tmp_path / "run", start + duration + 5)
    expected_rc = 130 if sig == signal.SIGINT else -signal.SIGKILL
    ok = left == CLEAN and proc.returncode == expected_rc
    name = signal.Signals(sig).name
    record(fault_table, f"orchestrator {name} mid-window", f"exit {expected_rc}, nothing left within window+5 s",
           f"exit {proc.returncode}, leftovers {left}", ok)


def test_an_interface_that_disappears_mid_capture(fleet: LabState, tmp_path: Path, fault_table) -> None:
    victim = next(h for h in fleet.hosts if h.scenario != "quiet")
    ns = victim.namespace
    # A veth pair inside the host: deleting one end removes both, mid-capture.
    subprocess.run(["ip", "-n", ns, "link", "add", "frdum0", "type", "veth", "peer", "name", "frdum1"], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "frdum0", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "frdum1", "up"], check=True)
        proc, _ = _start_scan(fleet, tmp_path / "run", 5)
        time.sleep(1.5)
        subprocess.run(["ip", "-n", ns, "link", "del", "frdum0"], check=True)
        proc.communicate(timeout=120)
    finally:
        subprocess.run(["ip", "-n", ns, "link", "del", "frdum0"], capture_output=True, check=False)
    hosts = summary_of(tmp_path / "run")
    h = hosts[victim.name]
    top = h["findings"][0]["kind"] if h["findings"] else None
    ok = h["status"] == "ok" and top == victim.expected["kind"] and leftovers(fleet, tmp_path / "run") == CLEAN
    record(fault_table, "interface disappears mid-capture", "host ok, other interfaces' findings kept",
           f"{h['status']}, top finding {top}", ok)


def test_hostile_names_and_values_are_never_executed(fleet: LabState, tmp_path: Path, fault_table) -> None:
    target = next(h for h in fleet.hosts if h.scenario == "quiet")
    mark = f"fleetrst-pwned-{random.randrange(10**9)}"
    evil = f"touch {mark}"
    places = [Path("/root"), Path("/tmp"), Path("/"), tmp_path, Path.home()]
    extra = {
        f"$({evil})": {"ansible_host": target.address},
        f";{evil};": {"ansible_host": target.address},
        f"`{evil}`": {"ansible_host": target.address, "ansible_become": True,
                      "ansible_become_user": f"x; {evil}"},
        "<img src=x onerror=alert(1)>": {"ansible_host": target.address},
    }
    inv = inventory_with(fleet, tmp_path / "inv.yml", extra)
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "fleetrst", "scan", str(inv), "--known-hosts", str(fleet.known_hosts),
         "--duration", "2", "-o", str(out), "--interfaces", f"lo,eth0;{evil}"],
        capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path)
    r2 = subprocess.run(
        [sys.executable, "-m", "fleetrst", "scan", str(inv), "--known-hosts", str(fleet.known_hosts),
         "--duration", "1", "-o", str(tmp_path / "run2"), "--remote-tmp", f"/tmp/$({evil})", "-l", "*touch*"],
        capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path)
    created = [str(p / mark) for p in places if (p / mark).exists()]
    hosts = summary_of(out)
    index = (out / "index.html").read_text()
    ok = (not created and set(extra) <= set(hosts) and "<img src=x" not in index
          and "&lt;img src=x onerror=alert(1)&gt;" in index)
    record(fault_table, "hostile host names and variables", "never executed, shown as text",
           f"marker {created or 'absent'}, {len(hosts)} hosts reported, exit {r.returncode}/{r2.returncode}", ok)
    assert leftovers(fleet, out, tmp_path / "run2") == CLEAN


def _sshd_pid(fleet: LabState, host) -> int:
    data = json.loads((fleet.directory / "lab.json").read_text())
    return next(p["pid"] for p in data["processes"] if p.get("role") == "sshd" and p.get("host") == host.name)


def in_host(pid: int, *argv: str) -> list[str]:
    """argv inside the lab host of process `pid`: its mount and PID namespaces. The host's /proc
    shows only its own processes, so a command there must be one of them (umount needs
    /proc/self/mountinfo)."""
    return ["nsenter", "-t", str(pid), "-m", "-p", "--", *argv]


class HostMounts:
    """Mounts made inside one lab host's own mount namespace (its sshd's), undone afterwards."""

    def __init__(self, fleet: LabState, host) -> None:
        self.pid = _sshd_pid(fleet, host)
        self.targets: list[str] = []

    def mount(self, *args: str) -> None:
        subprocess.run(in_host(self.pid, "mount", *args), check=True, capture_output=True)
        self.targets.append(args[-1])

    def undo(self) -> None:
        for target in reversed(self.targets):
            subprocess.run(in_host(self.pid, "umount", target), check=True, capture_output=True)


@pytest.mark.parametrize("case", ["tcpdump_missing", "tracefs_missing", "full_disk"])
def test_a_host_lacking_something_degrades_alone(case: str, fleet: LabState, tmp_path: Path, fault_table) -> None:
    victim = next(h for h in fleet.hosts if h.scenario == "closed_port")
    mounts = HostMounts(fleet, victim)
    empty = tmp_path / "empty"
    empty.write_text("")
    try:
        if case == "tcpdump_missing":
            mounts.mount("--bind", "/dev/null", shutil.which("tcpdump") or "/usr/bin/tcpdump")
        elif case == "tracefs_missing":
            mounts.mount("--bind", str(empty), "/proc/filesystems")
        else:
            # /var/tmp, not /tmp: the lab's own sshd keeps its keys under /tmp. Room for the
            # host script itself (about 40 KB), not for captures (fleetrst wants 512 KB free).
            mounts.mount("-t", "tmpfs", "-o", "size=128k,mode=1777", "tmpfs", "/var/tmp")
        out = tmp_path / "run"
        r = scan(fleet.inventory, fleet, out, *(["--remote-tmp", "/var/tmp"] if case == "full_disk" else []))
        # What the victim itself sees in its work directories, before its mounts go away.
        seen_there = subprocess.run(in_host(mounts.pid, "ls", "-a", "/tmp", "/var/tmp"),
                                    capture_output=True, text=True, check=False).stdout
    finally:
        mounts.undo()
    hosts = summary_of(out)
    h = hosts[victim.name]
    others = {lh.name: hosts[lh.name]["status"] for lh in fleet.hosts if lh.name != victim.name}
    facts = h.get("facts") or {}
    if case == "tcpdump_missing":
        ok = (h["status"] == "partial" and "tcpdump" in (h.get("error") or "")
              and h["counters"]["OutRsts"]["delta"] > 0 and r.returncode in (1, 3))
        seen = f"{h['status']}: {h.get('error')}, OutRsts +{h['counters']['OutRsts']['delta']}"
        expected = "partial: counters only, reason named"
    elif case == "tracefs_missing":
        top = h["findings"][0] if h["findings"] else {}
        ok = (h["status"] == "ok" and top.get("kind") == victim.expected["kind"]
              and facts.get("classification") == "packet rules")
        seen = f"{h['status']}, top {top.get('kind')}, classification {facts.get('classification')}"
        expected = "ok: packet rules, same finding"
    else:
        ok = (h["status"] in ("failed", "partial") and "free" in (h.get("error") or "")
              and "\n" not in (h.get("error") or ""))
        seen = f"{h['status']}: {h.get('error')}"
        expected = "failed/partial with a one-line reason"
    run_id = json.loads((out / "run.json").read_text())["id"]
    left_var = [f for f in seen_there.split() if f.startswith(f"fleetrst-{run_id}-")]
    ok = ok and all(s == "ok" for s in others.values()) and leftovers(fleet, out) == CLEAN and not left_var
    record(fault_table, case.replace("_", " "), expected + ", others ok, nothing left", seen, ok)


def test_sigkill_in_a_30_s_window_on_10_hosts_leaves_nothing_after_35_s(lab_factory, tmp_path: Path,
                                                                         fault_table) -> None:
    seed = int(os.environ.get("FLEETRST_LAB_SEED") or random.SystemRandom().randrange(1, 2**31))
    big = lab_factory(10, scenarios=["closed_port", "linger_abort", "quiet", "unread_close", "quiet"], seed=seed)
    out = tmp_path / "run"
    proc, start = _start_scan(big, out, 30)
    try:
        time.sleep(3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(max(0.0, start + 35 - time.monotonic()))
    run_id = json.loads((out / "run.json").read_text())["id"]
    # As the must-show says: `ps` and `ls` on every host, over real SSH.
    seen = []
    for h in big.hosts:
        r = subprocess.run(
            ["ssh", "-i", str(big.key_file), "-o", f"UserKnownHostsFile={big.known_hosts}", "-o",
             "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"root@{h.address}",
             "ps -eo pid,args; echo ---; ls -a /tmp"],
            capture_output=True, text=True, timeout=30, check=False)
        if h.scenario == "dead":
            continue
        assert r.returncode == 0, r.stderr
        ps, _, ls = r.stdout.partition("---")
        # A lab host's ps shows its own processes only, with its own PIDs.
        mine = [ln for ln in ps.splitlines() if "tcpdump" in ln and "tcp-rst" in ln]
        files = [f for f in ls.split() if f.startswith(f"fleetrst-{run_id}-")]
        seen.append((h.name, mine, files))
    left = [s for s in seen if s[1] or s[2]]
    record(fault_table, "SIGKILL, 30 s window, 10 hosts", "no tcpdump, no files 35 s after the window began",
           f"{len(seen)} hosts checked, {len(left)} with leftovers", not left)



def test_200_hosts_against_default_maxstartups_all_complete(fleet: LabState, tmp_path: Path, fault_table) -> None:
    """200 inventory hosts, 50 behind each lab sshd (OpenSSH's default MaxStartups 10:30:100),
    all connecting at once (-f 200): sshd drops many handshakes; retries bring every host in."""
    inv = yaml.safe_load(fleet.inventory.read_text())
    lab_hosts = inv["all"]["children"]["lab"]["hosts"]
    aliases: dict[str, dict[str, object]] = {}
    for lh in fleet.hosts:
        for k in range(200 // len(fleet.hosts)):
            aliases[f"{lh.name}-alias{k:03d}"] = dict(lab_hosts[lh.name])
    inv["all"]["children"]["lab"]["hosts"] = aliases
    path = tmp_path / "inventory-200.yml"
    path.write_text(yaml.safe_dump(inv))
    out = tmp_path / "run"
    r = scan(path, fleet, out, "-f", "200", "--interfaces", "lo", "--no-trace", "-q", duration="3")
    hosts = summary_of(out)
    statuses = {h["status"] for h in hosts.values()}
    refused = sum(1 for h in hosts.values() if (h.get("facts") or {}).get("connect_attempts", 1) > 1)
    victim = next(lh for lh in fleet.hosts if lh.scenario == "closed_port")
    closed = [h for name, h in hosts.items() if name.startswith(victim.name + "-alias")]
    seen = (f"{len(hosts)} hosts {sorted(statuses)}, {refused} needed retries, exit {r.returncode}, "
            f"leftovers {sum(map(len, leftovers(fleet, out).values()))}")
    ok = (len(hosts) == 200 and statuses == {"ok"} and refused > 0
          and all(h["findings"] and h["findings"][0]["kind"] == victim.expected["kind"] for h in closed)
          and r.returncode == 1 and leftovers(fleet, out) == CLEAN)
    record(fault_table, "200 hosts vs default MaxStartups", "all 200 ok after retries, nothing left", seen, ok)


def test_a_host_whose_clock_is_an_hour_off_captures_the_same_real_window(lab_factory, tmp_path: Path,
                                                                          fault_table) -> None:
    """One host's wall clock an hour ahead (libfaketime on every program of its SSH sessions,
    the host script included; the kernel's packet timestamps stay true): its window is the
    same real interval as the others', shown on the orchestrator's clock, and its finding is
    as right as if its clock were."""
    seed = int(os.environ.get("FLEETRST_LAB_SEED") or random.SystemRandom().randrange(1, 2**31))
    rng = random.Random(seed)
    scenarios = ["closed_port", "closed_port", "quiet"]
    rng.shuffle(scenarios)
    off_index = rng.choice([i for i, s in enumerate(scenarios) if s == "closed_port"])
    offset = rng.choice([3600, -3600])
    lab = lab_factory(3, scenarios=scenarios, seed=seed, clock_offsets={f"host{off_index}": offset})
    off = next(h for h in lab.hosts if h.name == f"host{off_index}")
    probe = subprocess.run(
        ["ssh", "-i", str(lab.key_file), "-o", f"UserKnownHostsFile={lab.known_hosts}", "-o",
         "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{off.address}", "date +%s"],
        capture_output=True, text=True, timeout=30, check=True)
    # The lab really did set that host's clock off, as its sessions see it.
    assert abs(int(probe.stdout) - time.time() - offset) < 30, probe.stdout
    out = tmp_path / "run"
    r = scan(lab.inventory, lab, out, duration="4")
    hosts = summary_of(out)

    def t(text: str) -> float:
        import datetime as dt

        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    h = hosts[off.name]
    others = [hosts[lh.name] for lh in lab.hosts if lh.name != off.name]
    agreed = json.loads((out / "run.json").read_text())["window"]
    measured = (h.get("facts") or {}).get("clock_offset_s") or 0
    # Uncorrected, the host would start an hour early or late; on a loaded machine any host may
    # start a little late, none early.
    late = t(h["window"]["start"]) - t(agreed["start"])
    top = h["findings"][0] if h["findings"] else {}
    rate = top.get("per_s") or 0
    seen = (f"{h['status']}, offset measured {measured:+.1f} s, counted from {late:+.2f} s after the agreed "
            f"start for {h['window']['seconds']} s, top {top.get('kind')} {rate}/s, exit {r.returncode}")
    ok = (h["status"] == "ok" and abs(measured - offset) < 5 and -0.3 < late < 1.5
          and t(h["window"]["end"]) >= t(agreed["end"]) - 0.3
          and top.get("kind") == off.expected["kind"]
          and top.get("local") == f"127.0.0.1:{off.expected['local_port']}"
          and 0.6 * off.expected["rate"] <= rate <= 1.4 * off.expected["rate"]
          and any("clock is" in w for w in h.get("warnings", []))
          and all(o["status"] == "ok" for o in others) and leftovers(lab, out) == CLEAN)
    record(fault_table, "clock an hour off", "the agreed real window, offset warned, right finding",
           seen, ok)


def test_the_next_run_removes_the_leftovers_it_owns_and_nothing_else(fleet: LabState, tmp_path: Path,
                                                                     fault_table) -> None:
    """Leftovers of a run whose host side was itself killed (the host rebooted, say): the next
    scan of that host removes its own dead run directories, and keeps those of live runs, of
    runs starting right now, of other hosts' tags and of other users."""
    from fleetrst.collect import host_token
    from fleetrst.inventory import load_inventory

    victim = next(lh for lh in fleet.hosts if lh.scenario != "dead")
    host = next(h for h in load_inventory(fleet.inventory).hosts if h.name == victim.name)
    token = host_token(host)
    other_token = "0123456789" if token != "0123456789" else "9876543210"
    gone = subprocess.Popen(["true"])
    gone.wait()  # a PID that no longer runs
    # The host has its PID namespace: its own init is a live process as the host sees it.
    assert victim.init is not None
    live = str(victim.init.ns_pid)
    planted = {
        "dead, ours": (Path(f"/tmp/fleetrst-{time.strftime('%Y%m%d')}-deadrun-{token}"), str(gone.pid), None),
        "live owner": (Path(f"/tmp/fleetrst-{time.strftime('%Y%m%d')}-liverun-{token}"), live, None),
        "young, unarmed": (Path(f"/tmp/fleetrst-{time.strftime('%Y%m%d')}-newrun-{token}"), None, None),
        "another tag": (Path(f"/tmp/fleetrst-{time.strftime('%Y%m%d')}-deadrun-{other_token}"), str(gone.pid), None),
        "another user": (Path(f"/tmp/fleetrst-{time.strftime('%Y%m%d')}-userrun-{token}"), str(gone.pid), 65534),
    }
    old = time.time() - 7200
    try:
        for path, owner, uid in planted.values():
            path.mkdir(mode=0o700)
            (path / "keep.txt").write_text("not fleetrst's to judge\n")
            if owner is not None:
                (path / "owner.pid").write_text(owner + "\n")
            if owner is not None:
                os.utime(path, (old, old))
            if uid is not None:
                os.chown(path, uid, uid)
        out = tmp_path / "run"
        scan(fleet.inventory, fleet, out, "-l", victim.name, duration="2")
        remaining = {case: path.exists() for case, (path, _, _) in planted.items()}
    finally:
        for path, _, _ in planted.values():
            shutil.rmtree(path, ignore_errors=True)
    h = summary_of(out)[victim.name]
    status = h["status"]
    said = [w for w in h.get("notes", []) + h.get("warnings", []) if "removed a leftover" in w]
    seen = ", ".join(f"{case}: {'kept' if kept else 'removed'}" for case, kept in remaining.items())
    seen += f"; {len(said)} removal noted"
    ok = (status == "ok" and len(said) == 1 and "deadrun" in said[0] and remaining == {"dead, ours": False, "live owner": True, "young, unarmed": True,
                                           "another tag": True, "another user": True}
          and leftovers(fleet, out) == CLEAN)
    record(fault_table, "leftovers of a killed host side", "next run removes its own dead ones only",
           f"{status}; {seen}", ok)
