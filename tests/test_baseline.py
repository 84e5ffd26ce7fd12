"""Comparing a run with a baseline: matching, the noise rule, the summary, pages, JUnit and CLI."""

from __future__ import annotations

import copy
import io
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from fleetrst import report
from fleetrst.baseline import (
    BaselineError,
    apply_baseline,
    compare,
    compare_host,
    describe,
    finding_key,
    load_summary,
    match_findings,
    rate_change,
    regressions,
)
from fleetrst.cli import ExitStatus, main

DATA = Path(__file__).parent / "data"
SCHEMA = Path(report.__file__).with_name("summary.schema.json")


def example() -> dict[str, Any]:
    return json.loads((DATA / "summaries" / "example.json").read_text(encoding="utf-8"))


def host(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(h for h in summary["hosts"] if h["name"] == name)


def finding(
    kind: str,
    local: str,
    *,
    interface: str = "lo",
    severity: str = "warning",
    per_s: float = 2.0,
    peers: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "severity": severity,
        "kind": kind,
        "interface": interface,
        "local": local,
        "peers": peers or ["127.0.0.1"],
        "count": int(per_s * 10),
        "per_s": per_s,
        "reason": None,
        "process": None,
        "summary": f"{kind} on {local}",
        **extra,
    }


def validate(summary: dict[str, Any]) -> None:
    import jsonschema  # a test dependency: a missing one must fail here, not skip

    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8"))).validate(
        summary
    )


# --- matching -------------------------------------------------------------------------------


def test_service_findings_match_by_service_port_not_address_or_text() -> None:
    a = finding("local_dead_service", "127.0.0.1:7211", peers=["127.0.0.1"])
    b = finding("local_dead_service", "[::1]:7211", peers=["::1"], per_s=9.0)
    b["summary"] = "something else entirely"
    assert finding_key(a) == finding_key(b)
    abort_now = finding("abort", "198.18.0.12:6432", interface="eth0")
    abort_then = finding("abort", "10.0.0.12:6432", interface="eth0")
    assert finding_key(abort_now) == finding_key(abort_then)
    assert finding_key(abort_now) != finding_key(
        finding("abort", "198.18.0.12:6433", interface="eth0")
    )


@pytest.mark.parametrize(
    "other",
    [
        {"kind": "refused"},  # another kind on the same port
        {"interface": "eth0"},  # another interface
        {"netns": "app"},  # another network namespace
    ],
)
def test_kind_interface_and_namespace_tell_findings_apart(other: dict[str, Any]) -> None:
    base = finding("local_dead_service", "127.0.0.1:7211")
    assert finding_key(base) != finding_key({**base, **other})


def test_received_resets_match_by_the_remote_endpoint_and_scans_by_address() -> None:
    r1 = finding("received_refused", "198.18.0.11", interface="eth0", peers=["198.18.0.12:5432"])
    r2 = finding("received_refused", "198.18.0.11", interface="eth0", peers=["198.18.0.13:5432"])
    assert finding_key(r1) != finding_key(r2)
    assert finding_key(r1) == finding_key({**r1, "per_s": 50.0})
    s1 = finding("scan", "198.18.0.11:*", interface="eth0", peers=["198.18.0.9"])
    s2 = finding("scan", "198.18.0.12:*", interface="eth0", peers=["198.18.0.9"])
    assert finding_key(s1) != finding_key(s2)


def test_two_findings_of_one_key_pair_up_worst_with_worst() -> None:
    now = [
        finding("abort", "10.0.0.1:80", severity="info", per_s=0.2),
        finding("abort", "10.0.0.2:80", severity="critical", per_s=60),
    ]
    then = [finding("abort", "10.0.0.9:80", severity="critical", per_s=55)]
    pairs = match_findings(now, then)
    assert len(pairs) == 2
    matched = next(p for p in pairs if p[1] is not None)
    assert matched[0] is not None and matched[0]["severity"] == "critical"
    assert any(p[1] is None and p[0] is not None and p[0]["severity"] == "info" for p in pairs)


# --- the noise rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        (0.1, 5.0, "up"),  # the example
        (0.1, 0.9, "same"),  # more than doubled, but less than 1/s more
        (2.0, 3.5, "same"),  # 1.5/s more, but not doubled
        (2.0, 4.0, "up"),
        (4.0, 2.0, "down"),
        (6.2, 0.0, "down"),
        (0.0, 1.0, "up"),
        (10.0, 10.9, "same"),
        (None, 3.0, "unknown"),
        (3.0, None, "unknown"),
    ],
)
def test_rate_change_noise_rule(before: float | None, after: float | None, change: str) -> None:
    assert rate_change(before, after) == change


# --- comparing summaries ----------------------------------------------------------------------


def two_runs() -> tuple[dict[str, Any], dict[str, Any]]:
    """The example as the current run; a baseline where web01 had no finding (and sent 0.1/s),
    db01 had its abort at 1/s, cache01 had a scan, edge01 was fine and old01 existed."""
    current = example()
    base = copy.deepcopy(current)
    web = host(base, "web01")
    web["findings"] = []
    web["resets"]["sent_per_s"] = 0.1
    host(base, "db01")["findings"][0]["per_s"] = 1.0
    host(base, "cache01")["findings"] = [
        finding("scan", "198.18.0.13:*", interface="eth0", peers=["198.18.0.66"])
    ]
    edge = host(base, "edge01")
    edge.update(
        status="ok", error=None, findings=[], resets={"sent_per_s": 0.0, "received_per_s": 0.0}
    )
    base["hosts"].append(
        {
            "name": "old01",
            "address": "198.18.0.20",
            "status": "ok",
            "error": None,
            "report": "old01/report.html",
            "findings": [finding("abort", "198.18.0.20:80")],
        }
    )
    base["run"]["id"] = "baseline-run"
    return current, base


def test_compare_marks_new_still_and_gone_per_host() -> None:
    current, base = two_runs()
    result = compare(current, base, "runs/yesterday")
    web, db, cache = result["hosts"]["web01"], result["hosts"]["db01"], result["hosts"]["cache01"]
    assert [f["change"] for f in web["findings"]] == ["new"]
    assert web["findings"][0]["local"] == "127.0.0.1:7211"
    assert [f["change"] for f in db["findings"]] == ["still"]
    assert db["findings"][0]["per_s_before"] == 1.0 and db["findings"][0]["rate_change"] == "up"
    assert [f["change"] for f in cache["findings"]] == ["gone"]
    assert result["counts"] == {"new": 1, "still": 1, "gone": 1}
    assert [e["host"] for e in result["new"]] == ["web01"]
    assert [e["host"] for e in result["gone"]] == ["cache01"]
    assert [e["host"] for e in result["changed"]] == ["db01"]
    assert (
        result["against"]["id"] == "baseline-run"
        and result["against"]["source"] == "runs/yesterday"
    )


def test_compare_reports_hosts_status_and_rates() -> None:
    current, base = two_runs()
    current["hosts"].append(
        {
            "name": "new01",
            "address": "198.18.0.30",
            "status": "ok",
            "error": None,
            "report": "new01/report.html",
            "findings": [],
        }
    )
    result = compare(current, base)
    assert result["hosts_added"] == ["new01"]
    assert [m["host"] for m in result["hosts_missing"]] == ["old01"]
    assert result["hosts_missing"][0]["findings"] == 1
    assert result["status_changes"] == [{"host": "edge01", "before": "ok", "after": "failed"}]
    # web01 went from 0.1/s to 2/s sent: a change; db01's 6.17/s both times is not.
    assert [(r["host"], r["rate"], r["change"]) for r in result["rate_changes"]] == [
        ("web01", "sent_per_s", "up")
    ]


def test_a_host_that_failed_now_is_not_compared_and_loses_nothing() -> None:
    current, base = two_runs()
    edge = host(base, "edge01")
    edge["findings"] = [finding("refused", "198.18.0.9:22", interface="eth0")]
    result = compare_host(host(current, "edge01"), edge)
    assert result["compared"] is False
    assert result["findings"] == [] and result["counts"]["gone"] == 0
    assert result["status"] == {"before": "ok", "after": "failed", "changed": True}


def test_findings_of_a_host_the_baseline_lacks_or_could_not_scan_are_new() -> None:
    current = example()
    web = host(current, "web01")
    assert [f["change"] for f in compare_host(web, None)["findings"]] == ["new"]
    failed = {"name": "web01", "status": "failed", "error": "timeout", "findings": []}
    result = compare_host(web, failed)
    assert [f["change"] for f in result["findings"]] == ["new"]
    assert result["status"]["changed"] and result["rates"]["sent_per_s"]["change"] == "unknown"


def test_a_run_against_itself_has_only_still_findings() -> None:
    current = example()
    result = apply_baseline(current, example())
    assert result["counts"]["new"] == result["counts"]["gone"] == 0
    assert result["counts"]["still"] == sum(len(h["findings"]) for h in current["hosts"])
    assert not result["rate_changes"] and not result["status_changes"]
    assert regressions(current, "info") == []


def test_apply_baseline_writes_the_sections_and_marks_findings() -> None:
    current, base = two_runs()
    apply_baseline(current, base, "runs/yesterday/summary.json")
    assert current["baseline"]["counts"] == {"new": 1, "still": 1, "gone": 1}
    assert "hosts" not in current["baseline"]
    web, db = host(current, "web01"), host(current, "db01")
    assert web["findings"][0]["baseline"] == "new"
    assert db["findings"][0]["baseline"] == "still"
    assert web["baseline"]["against"]["source"] == "runs/yesterday/summary.json"
    assert web["baseline"]["rates"]["sent_per_s"] == {"before": 0.1, "after": 2.0, "change": "up"}
    assert host(current, "edge01")["baseline"]["compared"] is False
    validate(current)


def test_schema_rejects_a_broken_baseline_section() -> None:
    import jsonschema

    current, base = two_runs()
    apply_baseline(current, base)
    broken = copy.deepcopy(current)
    broken["baseline"]["new"][0]["change"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    broken = copy.deepcopy(current)
    host(broken, "web01")["findings"][0]["baseline"] = "old"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_regressions_are_new_findings_at_the_level() -> None:
    current, base = two_runs()
    apply_baseline(current, base)
    assert [(name, f["kind"]) for name, f in regressions(current, "warning")] == [
        ("web01", "local_dead_service")
    ]
    # db01's critical abort was there before: never a regression, whatever its level.
    assert regressions(current, "critical") == []
    host(current, "web01")["findings"][0]["severity"] = "info"
    assert regressions(current, "warning") == []
    assert len(regressions(current, "info")) == 1


def test_describe_names_what_changed() -> None:
    current, base = two_runs()
    lines = describe(apply_baseline(current, base, "yesterday"))
    assert lines[0].startswith("baseline baseline-run: 1 new, 1 gone, 1 still")
    assert "hosts missing: old01" in lines[0]
    text = "\n".join(lines)
    assert "NEW  web01: [warning] local_dead_service lo 127.0.0.1:7211" in text
    assert "gone cache01: [warning] scan eth0 198.18.0.13:*" in text
    assert "edge01: status ok -> failed" in text


# --- reading a baseline -----------------------------------------------------------------------


def test_load_summary_from_a_run_dir_or_its_file(tmp_path: Path) -> None:
    summary = example()
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert load_summary(tmp_path) == summary
    assert load_summary(tmp_path / "summary.json") == summary


def test_load_summary_analyzes_a_run_dir_without_summary(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(DATA / "runs" / "closed-port-local", run)
    summary = load_summary(run)
    assert summary["hosts"][0]["findings"][0]["local"] == "127.0.0.1:7219"
    assert not (run / "summary.json").exists(), "reading a baseline must not write into it"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ('{"run": {}}', "not a fleetrst summary"),
        ("[1, 2]", "not a fleetrst summary"),
    ],
)
def test_load_summary_errors_name_the_path(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "summary.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BaselineError, match=message) as info:
        load_summary(path)
    assert str(path) in str(info.value)
    with pytest.raises(BaselineError, match="not a fleetrst run directory"):
        load_summary(tmp_path / "..")


# --- pages and JUnit --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    current, base = two_runs()
    apply_baseline(current, base, "runs/yesterday")
    target = tmp_path_factory.mktemp("compared")
    report.write_reports(target, current, regression=True)
    return target


def test_fleet_page_shows_the_comparison_at_the_top(compared_dir: Path) -> None:
    page = (compared_dir / "index.html").read_text(encoding="utf-8")
    box = page.index('id="baseline"')
    assert page.index('id="verdict"') < box < page.index('id="hosts"')
    assert 'data-new="1" data-gone="1" data-still="1"' in page
    assert "baseline-run" in page
    section = page[box : page.index("</section>", box)]
    assert '<a href="web01/report.html">web01</a>' in section
    assert "127.0.0.1:7211" in section and "cache01" in section and "old01" in section
    assert "edge01" in section and "failed" in section
    assert "<script" not in section


def test_host_page_shows_its_comparison(compared_dir: Path) -> None:
    web = (compared_dir / "web01" / "report.html").read_text(encoding="utf-8")
    box = web.index('id="baseline"')
    assert box < web.index("<h2>Findings")
    section = web[box : web.index("</section>", box)]
    assert 'class="chg chg-new"' in section and "local_dead_service" in section
    assert 'class="delta-up"' in section  # sent 0.1/s -> 2.0/s
    db = (compared_dir / "db01" / "report.html").read_text(encoding="utf-8")
    assert 'data-new="0" data-gone="0" data-still="1"' in db
    edge = (compared_dir / "edge01" / "report.html").read_text(encoding="utf-8")
    assert "findings were not compared" in edge


def test_pages_without_a_baseline_have_no_box(tmp_path: Path) -> None:
    report.write_reports(tmp_path, example())
    for page in [tmp_path / "index.html", *tmp_path.glob("*/report.html")]:
        assert 'id="baseline"' not in page.read_text(encoding="utf-8")


def test_junit_fails_only_for_new_findings_with_regression(compared_dir: Path) -> None:
    current, base = two_runs()
    apply_baseline(current, base)
    cases = {c.get("name"): c for c in ET.fromstring(report.junit_xml(current, "warning", True))}
    assert cases["web01"].find("failure") is not None
    assert "new since the baseline" in (cases["web01"].find("failure").get("message") or "")  # type: ignore[union-attr]
    assert cases["db01"].find("failure") is None, (
        "a finding present in both runs is not a regression"
    )
    assert cases["edge01"].find("error") is not None
    plain = {c.get("name"): c for c in ET.fromstring(report.junit_xml(current, "warning"))}
    assert plain["db01"].find("failure") is not None
    written = ET.parse(compared_dir / "junit.xml").getroot()
    assert written.get("failures") == "1"


# --- the command line -------------------------------------------------------------------------


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture()
def recorded_run(tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(DATA / "runs" / "closed-port-local", target)
    return target


def test_analyze_against_a_baseline_without_the_finding_is_a_regression(
    recorded_run: Path, tmp_path: Path
) -> None:
    rc, _, _ = run("analyze", str(recorded_run), "-q")
    assert rc == ExitStatus.FINDINGS
    quiet = json.loads((recorded_run / "summary.json").read_text())
    quiet["hosts"][0]["findings"] = []
    quiet["run"]["id"] = "quiet-yesterday"
    baseline = tmp_path / "base.json"
    baseline.write_text(json.dumps(quiet))

    rc, out, _ = run(
        "analyze", str(recorded_run), "--baseline", str(baseline), "--fail-on-regression"
    )
    assert rc == ExitStatus.FINDINGS
    assert "baseline quiet-yesterday: 1 new, 0 gone, 0 still" in out
    summary = json.loads((recorded_run / "summary.json").read_text())
    assert summary["hosts"][0]["findings"][0]["baseline"] == "new"
    validate(summary)
    suite = ET.parse(recorded_run / "junit.xml").getroot()
    assert suite.get("failures") == "1"

    # The same finding in the baseline: not flagged, and the exit code says so.
    rc, out, _ = run(
        "analyze",
        str(recorded_run),
        "--baseline",
        str(recorded_run / "summary.json"),
        "--fail-on-regression",
    )
    assert rc == ExitStatus.OK, out
    assert ET.parse(recorded_run / "junit.xml").getroot().get("failures") == "0"
    # Without --fail-on-regression the finding still fails the run, as before.
    rc, _, _ = run("analyze", str(recorded_run), "--baseline", str(baseline))
    assert rc == ExitStatus.FINDINGS


@pytest.mark.parametrize(
    "argv",
    [
        ["--fail-on-regression"],
        ["--baseline", "/nonexistent/fleetrst-run"],
    ],
)
def test_bad_baseline_options_are_usage_errors(recorded_run: Path, argv: list[str]) -> None:
    rc, _, err = run("analyze", str(recorded_run), *argv)
    assert rc == ExitStatus.USAGE
    assert err.count("\n") == 1 and ("--baseline" in err or "nonexistent" in err)


def test_scan_reads_the_baseline_before_connecting(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    # An address nothing answers on: were the scan attempted, this would fail differently (exit 3).
    inv.write_text("all:\n  hosts:\n    web01: {ansible_host: 198.18.0.250}\n")
    rc, _, err = run(
        "scan", str(inv), "--baseline", str(tmp_path / "missing"), "-o", str(tmp_path / "r")
    )
    assert rc == ExitStatus.USAGE and "missing" in err
    assert not (tmp_path / "r").exists()
