"""Reports: host pages, fleet index, JUnit and summary.json rendered from example summaries."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from fleetrst import report

DATA = Path(__file__).parent / "data" / "summaries"
SCHEMA = Path(report.__file__).with_name("summary.schema.json")


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return load("example.json")


@pytest.fixture(scope="module")
def hostile() -> dict[str, Any]:
    return load("hostile.json")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, example: dict[str, Any]) -> Path:
    target = tmp_path_factory.mktemp("run")
    report.write_reports(target, example)
    return target


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory, hostile: dict[str, Any]) -> Path:
    target = tmp_path_factory.mktemp("hostile") / "run"
    report.write_reports(target, hostile)
    return target


def page(run_dir: Path, relative: str) -> str:
    return (run_dir / relative).read_text(encoding="utf-8")


def all_pages(run_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): p.read_text(encoding="utf-8") for p in run_dir.rglob("*.html")
    }


def svgs(html: str) -> list[ET.Element]:
    """Every inline SVG of a page, parsed: it must be well-formed XML to count."""
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL)]


def hrefs(html: str) -> list[str]:
    return re.findall(r'\bhref="([^"]*)"', html)


# --- files ----------------------------------------------------------------------------------


def test_write_reports_creates_every_page(run_dir: Path, example: dict[str, Any]) -> None:
    for name in ("index.html", "junit.xml", "summary.json"):
        assert (run_dir / name).is_file()
    for host in example["hosts"]:
        assert (run_dir / host["report"]).is_file(), host["name"]
    assert json.loads(page(run_dir, "summary.json")) == example


def test_summary_json_keeps_text_unescaped(hostile_dir: Path, hostile: dict[str, Any]) -> None:
    text = page(hostile_dir, "summary.json")
    assert "<script>alert(1)</script>" in text  # ensure_ascii=False: no \u003c noise for readers
    assert json.loads(text) == hostile


# --- host page ------------------------------------------------------------------------------


def test_host_page_leads_with_verdict_and_finding(run_dir: Path) -> None:
    html = page(run_dir, "web01/report.html")
    banner = html[html.index('id="verdict"') : html.index("<h2>Findings")]
    assert "web01 sends 2.0 resets/s on lo: local clients connect to 127.0.0.1:7211" in banner
    assert 'class="badge sev-warning"' in banner
    card = html[html.index('class="card finding') : html.index("</article>")]
    assert ">lo</dd>" in card
    assert ">127.0.0.1:7211</dd>" in card
    assert ">2.0/s</dd>" in card
    assert "NO_SOCKET" in card
    assert "Next step" in card and "Find which component should listen" in card
    assert "127.0.0.1.7211 &gt; 127.0.0.1.41838: Flags [R.]" in card


def test_host_page_findings_show_process(run_dir: Path) -> None:
    html = page(run_dir, "db01/report.html")
    assert 'class="badge sev-critical"' in html
    banner = html[html.index('id="verdict"'):html.index("<h2>Findings")]
    assert "resets-sent alarm at 5/s would be firing: 6.2/s" in banner  # ties page to the alert
    assert "failed-connections alarm" not in banner  # only alarms that would fire go up there
    assert "pgbouncer" in html and "pid 4242" in html
    assert "TCP_ABORT_ON_CLOSE" in html


def test_host_page_charts_are_svg_with_points(run_dir: Path) -> None:
    charts = {svg.get("data-chart"): svg for svg in svgs(page(run_dir, "web01/report.html"))}
    timeline = charts["timeline"]
    assert timeline.get("class") == "chart"
    assert timeline.get("data-points") == "30"
    ns = "{http://www.w3.org/2000/svg}"
    lines = timeline.findall(f"{ns}polyline") or timeline.findall("polyline")
    # One step line per series: 2 points per bucket, all at the 2/s height (the same y).
    points = lines[0].get("points", "").split()
    assert len(points) == 60
    assert len({p.split(",")[1] for p in points}) == 1
    # The y scale ends at the peak (2/s), so the flat 2/s line runs along the top grid line.
    axis = [t.text for t in timeline.iter() if t.tag.endswith("text")]
    assert "2" in axis and "0 s" in axis and "30 s" in axis
    top_grid = min(float(g.get("y1", "0")) for g in timeline.iter() if g.get("class") == "grid")
    assert float(points[0].split(",")[1]) == top_grid
    ports = charts["ports"]
    assert ports.get("data-points") == "1"
    assert "127.0.0.1:7211" in ET.tostring(ports, encoding="unicode")
    bars = [r for r in ports.iter() if r.tag.endswith("rect") and "sent" in (r.get("class") or "")]
    assert float(bars[0].get("width", "0")) > 0
    assert charts["peers"].get("data-points") == "1"


def test_host_page_counters_alarms_samples_pcaps_facts(run_dir: Path) -> None:
    html = page(run_dir, "db01/report.html")
    row = re.search(r"<tr class=\"moved\"><td class=\"mono\">OutRsts</td>(.*?)</tr>", html)
    assert row and "99,120" in row.group(1) and "99,305" in row.group(1) and "185" in row.group(1)
    assert "a 10 s resets-sent alarm at 5/s would be firing: 6.2/s" in html
    assert 'class="alarm firing"' in html
    assert '<a href="rst-eth0.pcap" download>rst-eth0.pcap</a>' in html
    assert "6.18.2-amd64" in html and "-12.4 ms" in html
    html = report.render_host({}, {"name": "n", "facts": {"classification": "packet rules"}})
    assert "classification</dt>" in html and "packet rules" in html  # unknown facts still shown
    cache = page(run_dir, "cache01/report.html")
    assert "reasons come from the packets&#39; shape only" in cache
    web = page(run_dir, "web01/report.html")
    assert re.search(r"docker0.*?<span class=\"no\">no</span>.*?down", web, flags=re.DOTALL)


def test_failed_host_page_shows_error(run_dir: Path) -> None:
    html = page(run_dir, "edge01/report.html")
    box = html[html.index('class="error-box"') :]
    assert "connection refused (198.18.0.9:22)" in box[:400]
    assert 'class="badge sev-failed"' in html
    assert "<h2>Findings" not in html  # nothing was scanned: no empty sections pretending otherwise


def test_host_page_tolerates_a_bare_host() -> None:
    html = report.render_host({}, {"name": "bare"})
    assert "bare" in html and "<svg" not in html
    html = report.render_host(
        {"id": "r"},
        {
            "name": "n",
            "facts": None,
            "findings": None,
            "resets": None,
            "timeline": {"series": []},
            "counters": None,
        },
    )
    assert "No findings" in html


# --- fleet page -----------------------------------------------------------------------------


def test_index_lists_every_host_worst_first(run_dir: Path) -> None:
    html = page(run_dir, "index.html")
    body = html[html.index("<tbody>") : html.index("</tbody>")]
    names = re.findall(r'class="host-link" href="[^"]*">([^<]*)</a>', body)
    assert names == ["db01", "edge01", "web01", "cache01"]
    assert "20251123T160500Z-7f3a" in html
    assert "2025-11-23 16:05:00 UTC" in html
    assert "6.2/s" in body and "2.0/s" in body
    assert "pgbouncer (pid 4242) aborts 6.2 connections/s" in body
    assert "connection refused (198.18.0.9:22)" in body


def test_index_is_sortable_but_static_without_script(run_dir: Path) -> None:
    html = page(run_dir, "index.html")
    assert html.count("<script>") == 1 and "addEventListener" in html
    assert 'class="sortable stack" id="hosts"' in html
    assert len(re.findall(r"<tr class=\"sev-", html)) == 4  # every row is in the HTML itself
    # The page may run only its own script: the CSP carries that script's hash.
    script = re.search(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    assert script
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"script-src &#39;sha256-{digest}&#39;" in html


def test_index_who_resets_whom(run_dir: Path) -> None:
    html = page(run_dir, "index.html")
    matrix = [s for s in svgs(html) if s.get("data-chart") == "links"]
    assert matrix and matrix[0].get("data-points") == "3"
    table = html[html.index('id="links"') :]
    assert re.search(
        r'href="db01/report.html">db01</a>.*?href="web01/report.html">web01</a>.*?'
        r"abort.*?6432.*?175",
        table,
        flags=re.DOTALL,
    )


def test_links_are_relative(run_dir: Path) -> None:
    for name, html in all_pages(run_dir).items():
        for href in hrefs(html):
            assert not re.match(r"^[a-z]+:|^/", href), (name, href)
    web = page(run_dir, "web01/report.html")
    assert 'href="../index.html"' in web


def test_pages_load_nothing_external(run_dir: Path, hostile_dir: Path) -> None:
    for pages in (all_pages(run_dir), all_pages(hostile_dir)):
        for name, html in pages.items():
            assert not re.search(
                r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE
            ), name
            assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", html, re.IGNORECASE), name
            assert "default-src &#39;none&#39;" in html
    for name, html in all_pages(run_dir).items():
        assert "http://" not in html and "https://" not in html, name


def test_pages_are_responsive_and_printable(run_dir: Path) -> None:
    for name, html in all_pages(run_dir).items():
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html, name
        assert "@media print" in html and "@media (max-width" in html, name


# --- JUnit ----------------------------------------------------------------------------------


def junit_cases(xml: str) -> dict[str, ET.Element]:
    root = ET.fromstring(xml)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["fleetrst"]
    return {case.get("name", ""): case for case in root.iter("testcase")}


def test_junit_one_case_per_host(run_dir: Path) -> None:
    cases = junit_cases(page(run_dir, "junit.xml"))
    assert sorted(cases) == ["cache01", "db01", "edge01", "web01"]
    assert {c.get("classname") for c in cases.values()} == {"fleetrst.scan"}
    assert cases["web01"].find("failure") is not None
    assert cases["db01"].find("failure").get("type") == "critical"  # type: ignore[union-attr]
    assert cases["cache01"].find("failure") is None and cases["cache01"].find("error") is None
    error = cases["edge01"].find("error")
    assert error is not None and error.get("message") == "connection refused (198.18.0.9:22)"
    suite = ET.fromstring(page(run_dir, "junit.xml"))
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "1")


def test_junit_fail_on_threshold(example: dict[str, Any]) -> None:
    cases = junit_cases(report.junit_xml(example, fail_on="critical"))
    assert cases["web01"].find("failure") is None  # a warning no longer fails
    assert cases["db01"].find("failure") is not None
    cases = junit_cases(report.junit_xml(example, fail_on="info"))
    assert cases["web01"].find("failure") is not None
    cases = junit_cases(report.junit_xml(example, fail_on="never"))
    assert all(c.find("failure") is None for c in cases.values())
    assert cases["edge01"].find("error") is not None  # a failed host is an error whatever fail_on
    with pytest.raises(ValueError):
        report.junit_xml(example, fail_on="loud")


def test_junit_survives_hostile_text(hostile_dir: Path) -> None:
    xml = page(hostile_dir, "junit.xml")
    assert "\x1b" not in xml and "\x00" not in xml and "\x07" not in xml
    cases = junit_cases(xml)
    assert "<script>alert(1)</script>" in cases  # escaped on disk, the same text once parsed
    assert "{{7*7}}" in cases and 'x" onmouseover="alert(1)' in cases
    error = cases["red[31mhost\u202e"].find("error")
    assert error is not None and '"refused"' in error.get("message", "")


# --- schema ---------------------------------------------------------------------------------


def test_examples_validate_against_schema(example: dict[str, Any], hostile: dict[str, Any]) -> None:
    import jsonschema  # a test dependency: a missing one must fail here, not skip
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    for summary in (example, hostile):
        jsonschema.Draft202012Validator(schema).validate(summary)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda s: s["run"].pop("id"),
        lambda s: s["run"]["window"].pop("seconds"),
        lambda s: s["hosts"][0].pop("report"),
        lambda s: s["hosts"][0].pop("findings"),
        lambda s: s["hosts"][0]["findings"][0].pop("summary"),
        lambda s: s["hosts"][0]["findings"][0].update(severity="bad"),
        lambda s: s["hosts"][1]["findings"][0].update(process={"pid": 1}),
        lambda s: s["hosts"][3].update(error=None),
        # A finding's network namespace: null (the host's own) or an object with its inode.
        lambda s: s["hosts"][0]["findings"][0].update(netns="4026532317"),
        lambda s: s["hosts"][0]["findings"][0].update(netns={"name": "blue", "pid": 1, "container": None}),
        lambda s: s["hosts"][0].update(namespaces={"counted": 1, "captured": 0, "items": [
            {"inode": 4026532317, "name": None, "pid": 5, "container": None, "sent": 3, "findings": 0}]}),
        lambda s: s["hosts"][0].update(cost={"cpu_s": -1}),
    ],
)
def test_schema_rejects_broken_summaries(example: dict[str, Any], breakage: Any) -> None:
    import jsonschema
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    broken = copy.deepcopy(example)
    breakage(broken)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(broken)


# --- hostile text ---------------------------------------------------------------------------


def test_hostile_text_stays_text(hostile_dir: Path) -> None:
    pages = all_pages(hostile_dir)
    assert len(pages) == 5  # four hosts with a safe report path, and the index
    for name, html in pages.items():
        assert "<script>alert" not in html, name
        assert "\x1b" not in html and "\x00" not in html and "\x7f" not in html, name
        assert "\u202e" not in html and "\x9b" not in html, name
        assert 'onmouseover="' not in html and "onmouseover='" not in html, name
        assert ">49<" not in html and " 49 " not in html, name
        # Exactly our own script tags: none in host pages, one on the index.
        assert html.count("<script") == (1 if name == "index.html" else 0), name
        for svg in svgs(html):  # labels inside SVG escaped too, or the SVG would not parse
            assert svg.get("class", "").startswith("chart")
    host = pages["scriptalert/report.html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in host
    assert "verdict &lt;script&gt;alert(1)&lt;/script&gt; &#34; &#39; {{7*7}} \\x1b[31m" in host
    assert "evil) &lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;{{7*7}}\\x1b[31m\\x00\\x7f\\x9b\\u202e" in host
    index = pages["index.html"]
    assert "ssh: &lt;script&gt;alert(1)&lt;/script&gt; &#34;refused&#34; \\x1b[31m\\x00\\x07 {{7*7}}" in index
    assert "x&#34; onmouseover=&#34;alert(1)" in index
    assert "red\\x1b[31mhost\\u202e" in index


def test_hostile_links_are_quoted_and_contained(hostile_dir: Path) -> None:
    index = page(hostile_dir, "index.html")
    links = hrefs(index)
    assert "a%3Fb%23c%25d/report.html" in links
    assert "%7B%7B7%2A7%7D%7D/report.html" in links
    assert not any(".." in link for link in links)  # the host whose path climbs out gets no link
    assert not (hostile_dir.parent / "escape").exists()
    host = page(hostile_dir, "scriptalert/report.html")
    assert 'href="rst-%3Cscript%3Ealert%281%29%3C/script%3E.pcap"' in host  # each segment quoted
    assert "passwd</a>" not in host and "../../etc/passwd" in host  # shown, never linked


def test_display_text_makes_controls_visible() -> None:
    assert report.display_text("a\x1b[31mb") == "a\\x1b[31mb"
    assert report.display_text("tab\tnew\nline") == "tab\tnew\nline"
    assert report.display_text("\x00\r\x7f\x9b\u202e") == "\\x00\\x0d\\x7f\\x9b\\u202e"
    assert report.display_text(None) == ""
    assert report.xml_text("ok\x1b\x00\ufffe\tend") == "ok\tend"


def test_every_template_output_is_cleaned() -> None:
    # Filters such as |e return Markup, which autoescape lets through: it must be cleaned as well.
    template = report._environment().from_string("{{ x }}|{{ x|e }}|{{ [x, x]|join(',') }}")
    assert template.render(x="<b>\x1b") == "&lt;b&gt;\\x1b|&lt;b&gt;\\x1b|&lt;b&gt;\\x1b,&lt;b&gt;\\x1b"


def test_severity_rank_orders_levels() -> None:
    ranks = [report.severity_rank(s) for s in ("ok", "info", "warning", "critical", "failed")]
    assert ranks == sorted(ranks) and len(set(ranks)) == 5
    assert report.severity_rank("WARNING") == report.severity_rank("warning")
    assert report.severity_rank("nonsense") == report.severity_rank("ok")


# --- in a browser, when one is installed ----------------------------------------------------


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium to load the pages in")
@pytest.mark.parametrize("relative", ["index.html", "web01/report.html"])
def test_pages_run_in_a_browser_without_console_messages(run_dir: Path, relative: str) -> None:
    assert CHROMIUM
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
            (run_dir / relative).as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if not result.stdout.strip():
        pytest.skip(f"chromium did not start: {result.stderr[-300:]}")
    # CSP violations and script errors are logged as console messages.
    assert ":CONSOLE" not in result.stderr, result.stderr
    dom = result.stdout
    assert "<svg" in dom
    if relative == "index.html":
        assert dom.count('class="sort"') == 11  # the script ran and wired every sortable header
