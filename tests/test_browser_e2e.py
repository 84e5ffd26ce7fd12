"""The reports of a real lab run, opened in headless Chromium: they load nothing from the network,
raise no error, draw their charts, show verdicts and counters, sort, and show hostile process
names as text. Screenshots go to test-artifacts/.

Runs wherever the lab runs; outside CI it is skipped when Chromium (Debian's `chromium`) or the
Playwright package is missing, in CI (CI set) it fails instead.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetrst.lab import lab_down, lab_up
from fleetrst.report import fmt_int, fmt_rate

pytestmark = pytest.mark.lab

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
SCENARIOS = ["closed_port", "linger_abort", "quiet", "dead"]
# The kernel keeps 15 bytes of a process name: the caller shows as "<script>alert(1"; the whole
# name is in its command line.
SCRIPT_NAME = "<script>alert(1)</script>"


def _require_browser() -> None:
    missing = [] if os.access(CHROMIUM, os.X_OK) else [f"{CHROMIUM} (apt-get install chromium)"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser test needs {', '.join(missing)}; CI is set, so it must run "
                    "(./install.sh --test installs both)", pytrace=False)
    pytest.skip(f"browser test needs {', '.join(missing)}")


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A lab run rendered to a run directory: the lab comes down as soon as the scan is over."""
    _require_browser()
    seed = int(os.environ.get("FLEETRST_LAB_SEED") or random.SystemRandom().randrange(1, 2**31))
    rng = random.Random(seed)
    scenarios = list(SCENARIOS)
    rng.shuffle(scenarios)
    # Markup, both quotes and an entity: all of it must stay text.
    bold = f"<b>{rng.randrange(256):02x}</b>\"'&lt;"
    print(f"\nlab seed: {seed} (FLEETRST_LAB_SEED={seed} reproduces), scenarios: {scenarios}")
    directory = tmp_path_factory.mktemp("lab")
    out = tmp_path_factory.mktemp("run") / "run"
    try:
        state = lab_up(directory, hosts=len(scenarios), seed=seed, scenarios=scenarios, ttl=600,
                       names={"closed_port": SCRIPT_NAME, "linger_abort": bold})
        scan = subprocess.run(
            [sys.executable, "-m", "fleetrst", "scan", str(state.inventory), "--known-hosts",
             str(state.known_hosts), "--duration", "4", "-o", str(out), "-q"],
            capture_output=True, text=True, timeout=180, check=False)
    finally:
        lab_down(directory)
    print(scan.stdout, scan.stderr[-2000:])
    assert scan.returncode == 3, "the dead host makes the run exit with 'some hosts failed'"
    summary = json.loads((out / "summary.json").read_text())
    yield {"state": state, "out": out, "summary": summary, "bold": bold,
           "hosts": {h["name"]: h for h in summary["hosts"]},
           "by": {h.scenario: h for h in state.hosts}}


@pytest.fixture(scope="module")
def browser(scanned: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Visit:
    """One page opened in a fresh browser context, with everything it did recorded."""

    def __init__(self, browser: Any, path: Path, width: int = 1280) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = page = self.context.new_page()
        self.console: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", on_dialog)
        page.on("request", lambda r: self.requests.append(r.url))
        page.goto(path.as_uri(), wait_until="load")

    def assert_quiet(self) -> None:
        """Nothing went wrong and nothing was fetched but the page itself."""
        assert self.console == [], self.console  # CSP violations and script errors land here
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs
        assert all(u.startswith(("file:", "data:")) for u in self.requests), self.requests

    def text(self) -> str:
        return str(self.page.evaluate("document.body.innerText"))

    def close(self) -> None:
        self.context.close()


def _screenshot(visit: Visit, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    visit.page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, "a screenshot of a rendered page is not that small"
    return path


_CHARTS = """() => Array.from(document.querySelectorAll("svg.chart")).map(svg => {
    const box = svg.getBoundingClientRect();
    const shapes = Array.from(svg.querySelectorAll("polygon, polyline, rect.bar, rect.cell"))
        .filter(s => !s.classList.contains("track") && !s.classList.contains("empty"))
        .map(s => { const b = s.getBBox(); return [b.width, b.height]; });
    return {kind: svg.dataset.chart, points: Number(svg.dataset.points), width: box.width,
            height: box.height, visible: getComputedStyle(svg).visibility === "visible",
            drawn: shapes.filter(([w, h]) => w > 0 && h > 0).length};
})"""


def _charts(visit: Visit) -> dict[str, dict[str, Any]]:
    """Every chart of the page, each checked to have drawn: a size, points, shapes with area."""
    charts = visit.page.evaluate(_CHARTS)
    for chart in charts:
        assert chart["visible"] and chart["width"] > 0 and chart["height"] > 0, chart
        assert chart["points"] > 0 and chart["drawn"] > 0, chart
    return {c["kind"]: c for c in charts}


def _no_phone_overflow(browser: Any, path: Path) -> None:
    phone = Visit(browser, path, width=390)
    try:
        phone.assert_quiet()
        width = phone.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"page scrolls sideways on a phone: {width}"
    finally:
        phone.close()


def test_host_page_of_the_closed_port_host(scanned: dict[str, Any], browser: Any, fault_table) -> None:
    lab_host = scanned["by"]["closed_port"]
    host = scanned["hosts"][lab_host.name]
    port = lab_host.expected["local_port"]
    visit = Visit(browser, scanned["out"] / host["report"])
    try:
        visit.assert_quiet()
        page = visit.page
        verdict = page.locator("#verdict")
        assert verdict.is_visible()
        assert verdict.locator(".badge").first.inner_text().lower() == host["verdict"]["severity"]
        text = verdict.locator(".verdict-text").inner_text()
        assert f"nothing listens on {port}" in text
        # The caller's name is shown as the text it is, and it ran nothing.
        assert "<script>alert(1" in text, text
        assert page.evaluate("document.scripts.length") == 0
        assert page.evaluate("document.querySelectorAll('body script').length") == 0
        fault_table.append(("HTML escaping of host content", "a '<script>alert(1' process shown as text",
                            "shown as text in Chromium, no dialog, no script element", "ok"))

        counters = page.locator("table.counters")
        assert counters.is_visible()
        row = counters.locator("tbody tr", has=page.locator("td", has_text="OutRsts")).first
        assert row.is_visible()
        cells = [c.strip() for c in row.locator("td").all_inner_texts()]
        out_rsts = host["counters"]["OutRsts"]
        assert out_rsts["delta"] > 0
        assert cells[:4] == ["OutRsts", fmt_int(out_rsts["start"]), fmt_int(out_rsts["end"]),
                             fmt_int(out_rsts["delta"])]
        assert cells[4] == fmt_rate(out_rsts["per_s"])

        charts = _charts(visit)
        assert {"timeline", "ports", "peers"} <= set(charts), charts
        for kind in ("timeline", "ports", "peers"):
            page.locator(f'svg.chart[data-chart="{kind}"]').scroll_into_view_if_needed()
            assert page.locator(f'svg.chart[data-chart="{kind}"]').is_visible()
        ports = str(page.locator('svg.chart[data-chart="ports"]').text_content())
        assert str(port) in ports
        _screenshot(visit, "browser-host-closed_port.png")
    finally:
        visit.close()
    _no_phone_overflow(browser, scanned["out"] / host["report"])


def _column(visit: Visit, index: int, attribute: str | None = None) -> list[str]:
    cells = visit.page.locator(f"table#hosts tbody tr td:nth-child({index + 1})")
    if attribute:
        return [str(cells.nth(i).get_attribute(attribute)) for i in range(cells.count())]
    return [t.strip() for t in cells.all_inner_texts()]


def test_fleet_page_shows_every_host_and_sorts(scanned: dict[str, Any], browser: Any) -> None:
    state, hosts, by = scanned["state"], scanned["hosts"], scanned["by"]
    visit = Visit(browser, scanned["out"] / "index.html")
    try:
        visit.assert_quiet()
        page = visit.page
        assert page.locator("#verdict").is_visible()
        assert page.evaluate("document.scripts.length") == 1  # its own sort script, nothing else
        rows = page.locator("table#hosts tbody tr")
        assert rows.count() == len(state.hosts)
        for lab_host in state.hosts:
            host = hosts[lab_host.name]
            row = page.locator("table#hosts tbody tr", has=page.get_by_text(lab_host.name, exact=True))
            assert row.count() == 1 and row.is_visible()
            cells = [c.strip() for c in row.locator("td").all_inner_texts()]
            assert cells[2].lower().startswith(host["verdict"]["severity"]), cells
            if lab_host.scenario == "dead":
                assert "connection refused" in cells[5]
                continue
            assert cells[3] == fmt_rate(host["resets"]["sent_per_s"])
            assert cells[4] == fmt_rate(host["resets"]["received_per_s"])
        # Hostile names in the verdicts: markup, quotes and entities shown as typed, nothing run.
        text = visit.text()
        assert "<script>alert(1" in text
        assert scanned["bold"] in text
        assert page.evaluate("document.querySelectorAll('main b').length") == 0
        assert hosts[by["linger_abort"].name]["findings"][0]["process"]["name"] == scanned["bold"]
        _charts(visit)  # whatever charts the fleet page has drew
        _screenshot(visit, "browser-fleet.png")

        # Sorting: a click on Host sorts by name, a second click reverses; Sent/s sorts by number.
        host_header = page.locator("table#hosts thead th").nth(0)
        host_header.locator("button").click()
        names = [n.splitlines()[0] for n in _column(visit, 0)]
        assert host_header.get_attribute("aria-sort") == "ascending"
        assert names == sorted(names, key=str.lower) and len(names) == len(state.hosts)
        host_header.locator("button").click()
        assert host_header.get_attribute("aria-sort") == "descending"
        assert [n.splitlines()[0] for n in _column(visit, 0)] == names[::-1]
        sent_header = page.locator("table#hosts thead th").nth(3)
        sent_header.locator("button").click()
        values = [float(v) for v in _column(visit, 3, "data-sort-value")]
        order = sent_header.get_attribute("aria-sort")
        assert values == sorted(values, reverse=order == "descending"), (order, values)
        assert values[0 if order == "descending" else -1] > 0
        visit.assert_quiet()
    finally:
        visit.close()
    _no_phone_overflow(browser, scanned["out"] / "index.html")
