"""A restricted sudo user: only the installed host script is allowed, and results match root's."""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from fleetrst.lab import LabState

pytestmark = pytest.mark.lab


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=True, **kw)


class RestrictedUsers:
    """Users, the installed host script and the sudoers file this test adds; removed afterwards."""

    def __init__(self, fleet: LabState) -> None:
        self.tag = secrets.token_hex(3)
        self.dir = Path(f"/usr/local/lib/fleetrst-test-{self.tag}")
        self.script = self.dir / "capture.sh"
        self.sudoers = Path(f"/etc/sudoers.d/fleetrst-test-{self.tag}")
        self.log = Path(f"/var/log/fleetrst-test-{self.tag}-sudo.log")
        self.users: list[str] = []
        self.fleet = fleet

    def install_script(self) -> None:
        text = _run(sys.executable, "-m", "fleetrst", "host-script").stdout
        self.dir.mkdir(mode=0o755)
        self.script.write_text(text)
        self.script.chmod(0o755)

    def add_user(self, nopasswd: bool, password: str | None = None) -> str:
        name = f"frst{self.tag}{len(self.users)}"
        _run("useradd", "-m", "-s", "/bin/sh", name)
        self.users.append(name)
        if password:
            _run("chpasswd", input=f"{name}:{password}\n")
        else:
            _run("usermod", "-p", "*", name)  # no password, but not a locked account
        home = Path(f"/home/{name}")
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700)
        (ssh / "authorized_keys").write_text(Path(str(self.fleet.key_file) + ".pub").read_text())
        shutil.chown(ssh, name, name)
        shutil.chown(ssh / "authorized_keys", name, name)
        return name

    def write_sudoers(self, rules: list[str]) -> None:
        text = "".join(f"Defaults:{u} logfile={self.log}\n" for u in self.users) + "".join(r + "\n" for r in rules)
        tmp = self.sudoers.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o440)
        _run("visudo", "-cf", str(tmp))
        tmp.rename(self.sudoers)

    def remove(self) -> None:
        for path in (self.sudoers, self.sudoers.with_suffix(".tmp"), self.log):
            path.unlink(missing_ok=True)
        for name in self.users:
            subprocess.run(["userdel", "-r", name], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def fleet(lab_factory) -> LabState:
    if shutil.which("sudo") is None:
        pytest.fail("sudo is needed for this test (install.sh --test installs it)")
    seed = int(os.environ.get("FLEETRST_LAB_SEED") or random.SystemRandom().randrange(1, 2**31))
    scenarios = ["closed_port", "linger_abort", "quiet"]
    random.Random(seed).shuffle(scenarios)
    return lab_factory(len(scenarios), scenarios=scenarios, seed=seed)


@pytest.fixture(scope="module")
def users(fleet: LabState):
    u = RestrictedUsers(fleet)
    try:
        u.install_script()
        yield u
    finally:
        u.remove()


def inventory_as(fleet: LabState, path: Path, user: str | None) -> Path:
    inv = yaml.safe_load(fleet.inventory.read_text())
    if user:
        inv["all"]["vars"]["ansible_user"] = user
        inv["all"]["vars"]["ansible_become"] = True
    path.write_text(yaml.safe_dump(inv))
    return path


def scan(fleet: LabState, inv: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetrst", "scan", str(inv), "--known-hosts", str(fleet.known_hosts),
         "--duration", "5", "-o", str(out), *extra],
        capture_output=True, text=True, timeout=180, check=False,
    )


def top_findings(out: Path) -> dict[str, tuple]:
    result = {}
    for h in json.loads((out / "summary.json").read_text())["hosts"]:
        f = h["findings"][0] if h["findings"] else None
        result[h["name"]] = (h["status"], f and (f["kind"], f["interface"], f["local"].rsplit(":", 1)[-1],
                                                 f["reason"], (f["process"] or {}).get("name")))
    return result


def test_restricted_sudo_user_gets_the_same_results_as_root(fleet: LabState, users: RestrictedUsers,
                                                             tmp_path: Path, fault_table) -> None:
    user = users.add_user(nopasswd=True)
    users.write_sudoers([f"{user} ALL=(root) NOPASSWD: {users.script}"])
    root_out, user_out = tmp_path / "root", tmp_path / "user"
    r = scan(fleet, inventory_as(fleet, tmp_path / "root.yml", None), root_out)
    assert r.returncode == 1, r.stderr
    r = scan(fleet, inventory_as(fleet, tmp_path / "user.yml", user), user_out, "--host-script", str(users.script))
    errors = [(h["name"], h.get("error"), h.get("warnings")) for h in
              json.loads((user_out / "summary.json").read_text())["hosts"] if h["status"] != "ok"]
    assert r.returncode == 1, (r.stderr, errors)
    as_root, as_user = top_findings(root_out), top_findings(user_out)
    assert as_user == as_root
    assert all(status == "ok" for status, _ in as_user.values())
    # Every command sudo ran for this user is the installed host script, nothing else.
    log = users.log.read_text()
    commands = [ln.split("COMMAND=", 1)[1] for ln in log.replace("\n    ", " ").splitlines() if "COMMAND=" in ln]
    assert commands, log
    assert all(c.startswith(f"{users.script} ") for c in commands), commands
    # The fetched files were readable without privileges, and the hosts keep nothing.
    for host in json.loads((user_out / "summary.json").read_text())["hosts"]:
        assert (user_out / host["report"]).parent.joinpath("counters-end.txt").exists()
    assert not list(Path("/tmp").glob(f"fleetrst-{json.loads((user_out / 'run.json').read_text())['id']}-*"))
    fault_table.append(("sudo runs only the README's sudoers command", "sudo log: the host script only",
                        f"{len(commands)} sudo commands, all {users.script}; same findings as root", "ok"))


def test_without_the_installed_script_a_restricted_user_gets_counters_only(fleet: LabState, users: RestrictedUsers,
                                                                          tmp_path: Path, fault_table) -> None:
    user = users.add_user(nopasswd=True)
    users.write_sudoers([f"{user} ALL=(root) NOPASSWD: {users.script}"])
    out = tmp_path / "run"
    r = scan(fleet, inventory_as(fleet, tmp_path / "inv.yml", user), out, "--host-script", "/nonexistent/capture.sh")
    hosts = json.loads((out / "summary.json").read_text())["hosts"]
    assert r.returncode in (0, 1), r.stderr
    ok = all(h["status"] == "partial" and "sudo refused" in h["error"]
             and h["counters"]["OutRsts"]["end"] >= h["counters"]["OutRsts"]["start"] for h in hosts)
    fault_table.append(("sudo refused", "partial: counters only, reason named",
                        f"{[h['status'] for h in hosts]}: {hosts[0].get('error')}", "ok" if ok else "FAIL"))
    assert ok, hosts


def test_a_sudo_password_travels_on_stdin_only(fleet: LabState, users: RestrictedUsers, tmp_path: Path,
                                               fault_table) -> None:
    password = "pw-" + secrets.token_urlsafe(12)
    user = users.add_user(nopasswd=False, password=password)
    users.write_sudoers([f"{user} ALL=(root) {users.script}"])
    pwfile = tmp_path / "become-pass"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    seen_in_argv: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for p in Path("/proc").iterdir():
                if not p.name.isdigit():
                    continue
                for what in ("cmdline", "environ"):
                    try:
                        text = (p / what).read_bytes()
                    except OSError:
                        continue
                    if password.encode() in text:
                        seen_in_argv.append(f"{p.name}/{what}")
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = tmp_path / "run"
    try:
        r = scan(fleet, inventory_as(fleet, tmp_path / "inv.yml", user), out, "--host-script", str(users.script),
                 "--become-password-file", str(pwfile))
    finally:
        stop.set()
        watcher.join()
    hosts = json.loads((out / "summary.json").read_text())["hosts"]
    assert all(h["status"] == "ok" for h in hosts), [h.get("error") for h in hosts]
    assert not seen_in_argv
    assert password not in r.stdout + r.stderr
    files = [f for f in out.rglob("*") if f.is_file()]
    # The lab's own logs too: each host's sshd log, the supervisor's.
    logs = [f for f in Path(fleet.directory).rglob("*.log") if f.is_file()]
    for f in files + logs:
        assert password.encode() not in f.read_bytes(), f
    fault_table.append(("sudo password (-K / --become-password-file)", "never in argv, environment, output, logs or files",
                        f"absent from every argv and environment (/proc polled), output, {len(logs)} logs "
                        f"and {len(files)} run files", "ok"))
