"""The trend over several runs: series per host, what came and went, the page and the CLI."""

from __future__ import annotations

import copy
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fleetrst import report
from fleetrst.baseline import BaselineError
from fleetrst.cli import ExitStatus, main
from fleetrst.trend import build_trend, expand_runs, render_trend, write_trend

DATA = Path(__file__).parent / "data"


def example() -> dict[str, Any]:
    return json.loads((DATA / "summaries" / "example.json").read_text(encoding="utf-8"))


def host(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(h for h in summary["hosts"] if h["name"] == name)


def runs() -> list[dict[str, Any]]:
    """Three days of the example fleet: web01's dead-service finding appears on day 2; db01's
    abort stops on day 3; cache01 is missing on day 2; edge01 never answers."""
    days = []
    for day in range(3):
        summary = example()
        summary["run"]["id"] = f"day{day}"
        summary["run"]["window"]["start"] = f"2025-11-2{3 + day}T16:05:00Z"
        days.append(summary)
    web = host(days[0], "web01")
    web["findings"], web["verdict"] = [], {"severity": "ok", "text": "quiet"}
    web["resets"].update(sent_per_s=0.0, received_per_s=0.0)
    db = host(days[2], "db01")
    db["findings"], db["verdict"] = [], {"severity": "ok", "text": "quiet"}
    db["resets"].update(sent_per_s=0.0, received_per_s=0.0)
    days[1]["hosts"] = [h for h in days[1]["hosts"] if h["name"] != "cache01"]
    return days


def test_runs_are_put_in_window_order_with_a_point_per_host_and_run() -> None:
    days = runs()
    trend = build_trend([("c", days[2]), ("a", days[0]), ("b", days[1])])
    assert [r["id"] for r in trend["runs"]] == ["day0", "day1", "day2"]
    assert [r["source"] for r in trend["runs"]] == ["a", "b", "c"]
    by_name = {h["name"]: h for h in trend["hosts"]}
    assert set(by_name) == {"web01", "db01", "cache01", "edge01"}
    assert by_name["web01"]["series"]["sent_per_s"] == [0.0, 2.0, 2.0]
    assert by_name["db01"]["series"]["sent_per_s"] == [6.17, 6.17, 0.0]
    assert by_name["cache01"]["series"]["sent_per_s"] == [0.0, None, 0.0]
    assert by_name["cache01"]["points"][1]["status"] is None
    assert by_name["edge01"]["series"]["sent_per_s"] == [None, None, None]
    assert [p["status"] for p in by_name["edge01"]["points"]] == ["failed"] * 3


def test_findings_that_came_and_went_are_dated_by_run() -> None:
    trend = build_trend([(str(i), d) for i, d in enumerate(runs())])
    events = [(e["run"], e["host"], e["change"], e["kind"]) for e in trend["changes"]]
    assert events == [(2, "db01", "gone", "abort"), (1, "web01", "new", "local_dead_service")]
    by_name = {h["name"]: h for h in trend["hosts"]}
    assert by_name["db01"]["findings"] == []
    assert by_name["web01"]["findings"][0]["local"] == "127.0.0.1:7211"


def test_a_failed_or_missing_run_does_not_make_findings_flap() -> None:
    days = [example() for _ in range(3)]
    for i, d in enumerate(days):
        d["run"]["window"]["start"] = f"2025-11-2{3 + i}T00:00:00Z"
    host(days[1], "web01").update(status="failed", error="timeout", findings=[])
    days[1]["hosts"] = [h for h in days[1]["hosts"] if h["name"] != "db01"]
    trend = build_trend([(str(i), d) for i, d in enumerate(days)])
    assert trend["changes"] == []


def test_hosts_come_worst_first_by_their_latest_run() -> None:
    trend = build_trend([(str(i), d) for i, d in enumerate(runs())])
    # db01 was critical but is quiet in the last run; web01 is a warning now.
    assert [h["name"] for h in trend["hosts"]] == ["edge01", "web01", "db01", "cache01"]
    assert trend["hosts"][1]["latest"]["severity"] == "warning"
    assert trend["hosts"][2]["peak"]["sent_per_s"] == 6.17


def test_page_draws_a_series_per_host_without_script() -> None:
    trend = build_trend([(str(i), d) for i, d in enumerate(runs())])
    page = render_trend(trend)
    for name in ("web01", "db01", "cache01", "edge01"):
        assert page.count(f'data-host="{name}"') == 3  # sent chart, received chart, table row
    sent = page[page.index('data-chart="trend-sent_per_s"') :]
    sent = sent[: sent.index("</svg>")]
    web = re.search(
        r'<g class="series[^"]*" data-host="web01"><path class="line" d="([^"]*)"', sent
    )
    assert web is not None and len(re.findall(r"[ML]", web.group(1))) == 3
    cache = re.search(r'data-host="cache01"><path class="line" d="([^"]*)"', sent)
    assert cache is not None and cache.group(1).count("M") == 2, "a missing run breaks the line"
    assert "<script" not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert csp is not None and "default-src &#39;none&#39;" in csp.group(1)
    assert "script-src &#39;none&#39;" in csp.group(1)
    assert "day1" in page and "local_dead_service" in page
    assert "http://" not in page and "https://" not in page


def test_hostile_names_stay_text_on_the_trend_page() -> None:
    hostile = json.loads((DATA / "summaries" / "hostile.json").read_text(encoding="utf-8"))
    later = copy.deepcopy(hostile)
    later["run"]["id"] = "later"
    for h in later["hosts"]:
        h["findings"] = []
    page = render_trend(build_trend([("a", hostile), ("b", later)]))
    assert "<script" not in page.lower()
    assert "\x1b" not in page
    names = [h["name"] for h in hostile["hosts"] if isinstance(h.get("name"), str)]
    assert any("<" in n for n in names), "the hostile example should carry markup in a name"
    for name in names:
        if "<" in name:
            assert name not in page


def test_expand_runs_takes_paths_and_globs(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"run{i}").mkdir()
        (tmp_path / f"run{i}" / "summary.json").write_text(json.dumps(example()))
    (tmp_path / "notes").mkdir()
    (tmp_path / "trend.html").write_text("")
    found, skipped = expand_runs([str(tmp_path / "*"), str(tmp_path / "run1")])
    assert [p.name for p in found] == ["run0", "run1", "run2"]
    assert sorted(p.name for p in skipped) == ["notes", "trend.html"]
    with pytest.raises(BaselineError, match="matches no run"):
        expand_runs([str(tmp_path / "nothing-*")])


def write_days(root: Path) -> list[Path]:
    dirs = []
    for i, summary in enumerate(runs()):
        target = root / f"2025112{3 + i}"
        report.write_reports(target, summary)
        dirs.append(target)
    return dirs


def test_write_trend_links_the_runs_and_writes_json(tmp_path: Path) -> None:
    from fleetrst.trend import load_runs

    dirs = write_days(tmp_path / "runs")
    page = tmp_path / "out" / "trend.html"
    trend = write_trend(load_runs(dirs), page)
    html = page.read_text(encoding="utf-8")
    assert 'href="../runs/20251123/index.html"' in html
    assert 'href="../runs/20251125/web01/report.html"' in html
    saved = json.loads((tmp_path / "out" / "trend.json").read_text())
    assert saved["runs"] == trend["runs"] and len(saved["hosts"]) == 4
    assert saved["hosts"][1]["series"]["sent_per_s"] == [0.0, 2.0, 2.0]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_cli_trend_over_a_glob_with_a_raw_run_dir(tmp_path: Path) -> None:
    write_days(tmp_path / "runs")
    # A run directory as the Ansible path leaves it: raw files, no summary.json yet.
    shutil.copytree(DATA / "runs" / "closed-port-local", tmp_path / "runs" / "20251126")
    page, data = tmp_path / "trend.html", tmp_path / "data" / "t.json"
    rc, out, err = run("trend", str(tmp_path / "runs" / "*"), "-o", str(page), "--json", str(data))
    assert rc == ExitStatus.OK, err
    assert "4 run(s), 5 host(s)" in out and str(page) in out and str(data) in out
    trend = json.loads(data.read_text())
    assert trend["runs"][-1]["id"] == "20261123T161732Z-84405d"
    assert {h["name"] for h in trend["hosts"]} == {"web01", "db01", "cache01", "edge01", "me"}
    assert not (tmp_path / "runs" / "20251126" / "summary.json").exists()
    assert 'data-host="me"' in page.read_text(encoding="utf-8")


def test_cli_trend_errors_are_usage_errors(tmp_path: Path) -> None:
    rc, _, err = run("trend", str(tmp_path / "none-*"), "-o", str(tmp_path / "t.html"))
    assert rc == ExitStatus.USAGE and "matches no run" in err
    rc, _, err = run("trend", str(tmp_path), "-o", str(tmp_path / "t.html"))
    assert rc == ExitStatus.USAGE and "not a fleetrst run directory" in err
    assert not (tmp_path / "t.html").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_dom(page: Path) -> str:
    """The page's DOM after headless Chromium loaded it; fails on any console message."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium is missing", pytrace=False)
        pytest.skip("no chromium to load the page in")
    result = subprocess.run(
        [
            CHROMIUM,
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
    assert result.stdout.strip(), f"chromium did not load the page: {result.stderr[-500:]}"
    assert ":CONSOLE" not in result.stderr, result.stderr
    return result.stdout


def test_trend_page_opens_in_a_browser(tmp_path: Path) -> None:
    from fleetrst.trend import load_runs

    page = tmp_path / "trend.html"
    write_trend(load_runs(write_days(tmp_path / "runs")), page)
    dom = chromium_dom(page)
    assert dom.count('<g class="series') == 8  # 4 hosts in each of the two charts
