"""End to end: three scans of one namespace fleet compared with each other, and their trend.

Host A runs the lab's closed_port scenario through all three runs. Host B is quiet in the first
run; before the second, the test starts its own bounded client in B's namespace that keeps
connecting to a closed port on 127.0.0.1; it is stopped before the third. So the second run has a
new finding on B (and A's is still there), the third has B's finding gone.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fleetrst.lab import LabHost, LabState

pytestmark = pytest.mark.lab

WINDOW = "4"  # seconds per scan
# A client of a dead local service: connects twice a second, bounded in count and time.
CLIENT = """
import socket, sys, time
port, count, ttl = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + ttl
for i in range(count):
    if time.monotonic() >= deadline:
        break
    s = socket.socket()
    s.settimeout(1.0)
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        pass
    s.close()
    if i == 0:
        print("started", flush=True)
    time.sleep(0.5)
"""


@dataclass
class Runs:
    lab: LabState
    steady: LabHost  # closed_port in every run
    changing: LabHost  # quiet, then the test's client, then quiet again
    port: int  # the closed port the test's client calls
    dirs: list[Path]
    results: list[subprocess.CompletedProcess[str]]
    junit_regression: ET.Element  # the third run's, with --fail-on-regression
    analyze_plain: subprocess.CompletedProcess[str]  # the third run again without it
    junit_plain: ET.Element

    def summary(self, i: int) -> dict[str, Any]:
        return json.loads((self.dirs[i] / "summary.json").read_text())


def fleetrst(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetrst", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_client(namespace: str, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", CLIENT, str(port), "40", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    if not ready or proc.stdout.readline().strip() != "started":
        stop(proc)
        pytest.fail(
            f"the client in {namespace} did not start: {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def runs(lab_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    seed = int(os.environ.get("FLEETRST_LAB_SEED") or random.SystemRandom().randrange(1, 2**31))
    rng = random.Random(seed)
    scenarios = ["closed_port", "quiet"]
    rng.shuffle(scenarios)
    print(
        f"\nbaseline e2e seed: {seed} (FLEETRST_LAB_SEED={seed} reproduces), placement {scenarios}"
    )
    lab = lab_factory(2, scenarios=scenarios, seed=seed, ttl=300)
    steady = next(h for h in lab.hosts if h.scenario == "closed_port")
    changing = next(h for h in lab.hosts if h.scenario == "quiet")
    port = rng.choice([p for p in range(1025, 32000) if p != steady.expected["local_port"]])
    print(
        f"closed_port on {steady.name} port {steady.expected['local_port']}; "
        f"test client on {changing.name} ({changing.namespace}) port {port}"
    )
    root = tmp_path_factory.mktemp("runs")
    dirs = [root / f"run{i}" for i in range(3)]
    common = ["--known-hosts", str(lab.known_hosts), "--duration", WINDOW]
    results = [fleetrst("scan", str(lab.inventory), *common, "-o", str(dirs[0]))]
    client = start_client(changing.namespace, port)
    try:
        results.append(
            fleetrst(
                "scan",
                str(lab.inventory),
                *common,
                "-o",
                str(dirs[1]),
                "--baseline",
                str(dirs[0]),
                "--fail-on-regression",
            )
        )
    finally:
        stop(client)
    results.append(
        fleetrst(
            "scan",
            str(lab.inventory),
            *common,
            "-o",
            str(dirs[2]),
            "--baseline",
            str(dirs[1] / "summary.json"),
            "--fail-on-regression",
        )
    )
    for r in results:
        print(r.stdout, r.stderr[-2000:])
    junit_regression = ET.parse(dirs[2] / "junit.xml").getroot()
    # The third run again, without --fail-on-regression: A's finding fails it as any finding would.
    plain = fleetrst("analyze", str(dirs[2]), "--baseline", str(dirs[1]))
    junit_plain = ET.parse(dirs[2] / "junit.xml").getroot()
    return Runs(lab, steady, changing, port, dirs, results, junit_regression, plain, junit_plain)


def host(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(h for h in summary["hosts"] if h["name"] == name)


def dead_service(h: dict[str, Any], port: int) -> dict[str, Any] | None:
    return next(
        (
            f
            for f in h["findings"]
            if f["kind"] == "local_dead_service" and f["local"] == f"127.0.0.1:{port}"
        ),
        None,
    )


def test_the_scans_ran_and_the_fleet_behaved(runs: Runs) -> None:
    assert runs.results[0].returncode == 1, runs.results[0].stderr[-2000:]
    first = runs.summary(0)
    a0 = dead_service(host(first, runs.steady.name), runs.steady.expected["local_port"])
    assert a0 is not None and a0["severity"] in ("warning", "critical")
    assert dead_service(host(first, runs.changing.name), runs.port) is None
    assert "baseline" not in first


def test_second_run_marks_the_new_finding_and_not_the_old_one(runs: Runs) -> None:
    second = runs.summary(1)
    new = dead_service(host(second, runs.changing.name), runs.port)
    assert new is not None, host(second, runs.changing.name)["findings"]
    assert new["interface"] == "lo" and new["baseline"] == "new"
    still = dead_service(host(second, runs.steady.name), runs.steady.expected["local_port"])
    assert still is not None and still["baseline"] == "still"
    section = second["baseline"]
    assert section["against"]["source"] == str(runs.dirs[0])
    assert section["against"]["id"] == runs.summary(0)["run"]["id"]
    assert (runs.changing.name, f"127.0.0.1:{runs.port}") in {
        (e["host"], e["local"]) for e in section["new"]
    }
    assert all(
        e["host"] != runs.steady.name or e["kind"] != "local_dead_service" for e in section["new"]
    )
    assert host(second, runs.changing.name)["baseline"]["counts"]["new"] >= 1
    assert "NEW  " + runs.changing.name in runs.results[1].stdout
    page = (runs.dirs[1] / "index.html").read_text()
    assert 'id="baseline"' in page and f"127.0.0.1:{runs.port}" in page
    host_page = (runs.dirs[1] / host(second, runs.changing.name)["report"]).read_text()
    assert 'class="chg chg-new"' in host_page


def test_exit_code_and_junit_follow_fail_on_regression(runs: Runs) -> None:
    # Second run: something new at warning or above -> exit 1, and only the changing host fails.
    assert runs.results[1].returncode == 1, runs.results[1].stderr[-2000:]
    cases = {c.get("name"): c for c in ET.parse(runs.dirs[1] / "junit.xml").getroot()}
    assert cases[runs.changing.name].find("failure") is not None
    assert cases[runs.steady.name].find("failure") is None, (
        "a finding present in both runs is flagged"
    )
    # Third run: the new finding is gone and the old one is still there -> not a regression.
    assert runs.results[2].returncode == 0, runs.results[2].stdout + runs.results[2].stderr[-2000:]
    third = runs.summary(2)
    gone = [e for e in third["baseline"]["gone"] if e["host"] == runs.changing.name]
    assert [e["local"] for e in gone] == [f"127.0.0.1:{runs.port}"]
    steady = dead_service(host(third, runs.steady.name), runs.steady.expected["local_port"])
    assert steady is not None and steady["baseline"] == "still"
    assert runs.junit_regression.get("failures") == "0"
    # The same run and baseline without --fail-on-regression: the old finding fails it.
    assert runs.analyze_plain.returncode == 1
    plain = {c.get("name"): c for c in runs.junit_plain}
    assert plain[runs.steady.name].find("failure") is not None


def test_trend_over_the_three_runs(runs: Runs, tmp_path: Path) -> None:
    page = tmp_path / "trend.html"
    r = fleetrst("trend", str(runs.dirs[0].parent / "run*"), "-o", str(page))
    assert r.returncode == 0, r.stderr
    trend = json.loads((tmp_path / "trend.json").read_text())
    assert [run["source"] for run in trend["runs"]] == [str(d) for d in runs.dirs]
    names = {h["name"]: h for h in trend["hosts"]}
    assert set(names) == {runs.steady.name, runs.changing.name}
    for h in names.values():
        assert all(v is not None for v in h["series"]["sent_per_s"])
    changing = names[runs.changing.name]["series"]["sent_per_s"]
    assert changing[1] >= 1.0 and changing[0] < 0.5 and changing[2] < 0.5, changing
    came_went = [
        (e["run"], e["change"])
        for e in trend["changes"]
        if e["host"] == runs.changing.name and e["local"] == f"127.0.0.1:{runs.port}"
    ]
    assert came_went == [(2, "gone"), (1, "new")]
    assert not [
        e
        for e in trend["changes"]
        if e["host"] == runs.steady.name and e["kind"] == "local_dead_service"
    ]
    html = page.read_text()
    for name in names:
        assert html.count(f'data-host="{name}"') == 3

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium is missing", pytrace=False)
        pytest.skip("no chromium: the page was checked, not opened")
    shown = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.stdout.strip(), shown.stderr[-500:]
    assert ":CONSOLE" not in shown.stderr, shown.stderr
    assert shown.stdout.count('<g class="series') == 4  # two hosts in each of the two charts
