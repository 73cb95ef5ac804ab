"""curate review in a real headless browser (Chromium driven by Playwright).

The loop a reviewer goes through: open a run, filter its rejects, mark a name the scrubber
missed, re-run the recipe, see the name scrubbed and the decision in the report.

Needs Chromium: Debian's `chromium` package (or CURATE_CHROMIUM=/path/to/chrome). Without it
these tests skip, saying so, except under CI (.ci/run sets CURATE_BROWSER_TESTS=required),
where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from curate.review.data import RunView
from curate.review.decisions import load_decisions
from curate.review.server import bind, serve_in_thread
from tests.conftest import output
from tests.test_review import make_run, rerun

pytestmark = pytest.mark.slow


def _chromium() -> str:
    path = os.environ.get("CURATE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if path:
        return path
    message = ("browser tests need Chromium and Playwright: `apt install chromium` (or CURATE_CHROMIUM=/path) and "
               "`pip install playwright`")  # fmt: skip
    if os.environ.get("CURATE_BROWSER_TESTS") == "required":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser():
    path = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    run = make_run(tmp_path)
    server, url, _ = bind(RunView(run), port=0, reviewer="dana")
    serve_in_thread(server)
    try:
        yield tmp_path, run, url
    finally:
        server.shutdown()
        server.server_close()


def test_review_loop_in_the_browser(browser, served):
    where, run, url = served
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("#tabs button")
    assert "reviewed" in page.inner_text("#run")
    # the first page of the last stage's records (the page fetches them after it draws its tabs)
    page.wait_for_function(f"document.querySelectorAll('tr.row').length === {len(output(run))}")

    # rejects: filter by stage and reason
    page.click("#tabs button[data-tab=rejects]")
    page.wait_for_selector("#rej-stage")
    page.select_option("#rej-stage", "03_dedup.exact")
    page.wait_for_function("document.querySelector('#rej-reason option[value=exact_duplicate]') !== null")
    page.select_option("#rej-reason", "exact_duplicate")
    page.wait_for_function("document.querySelector('#rej-reason').value === 'exact_duplicate' "
                           "&& document.querySelectorAll('tr.row').length === 1")  # fmt: skip
    assert page.locator("tr.row").count() == 1
    assert "exact_duplicate" in page.inner_text("tr.row")

    # the charts: click a reason's bar, then open those rejects
    page.click("#tabs button[data-tab=charts]")
    page.wait_for_selector(".bars[data-key=reason] .bar")
    page.click(".bars[data-key=reason] .bar[data-v=too_short]")
    page.wait_for_function("document.querySelector('#ch-reason').value === 'too_short'")
    page.click("#ch-open")
    page.wait_for_function(
        "document.querySelector('#rej-reason') && document.querySelector('#rej-reason').value === 'too_short'"
    )
    assert "too_short" in page.inner_text("tr.row")

    # PII: find the record, select the name the scrubber missed, mark it
    page.click("#tabs button[data-tab=pii]")
    page.wait_for_selector("#pii-q")
    page.fill("#pii-q", "Cheers")
    page.click("#pii-go")
    # the search's page replaces the one the tab opened with: wait for it, not for any record
    page.wait_for_function("[...document.querySelectorAll('.pii-text')].length === 1 "
                           "&& document.querySelector('.pii-text').textContent.includes('Cheers, Bo')")  # fmt: skip
    box = page.locator(".pii-text").first
    assert box.inner_text().endswith("Cheers, Bo")
    page.evaluate(
        """() => {
        const el = document.querySelector('.pii-text');
        const node = [...el.childNodes].find(n => n.nodeType === 3 && n.textContent.includes('Cheers, Bo'));
        const at = node.textContent.lastIndexOf('Bo');
        const r = document.createRange(); r.setStart(node, at); r.setEnd(node, at + 2);
        const s = getSelection(); s.removeAllRanges(); s.addRange(r);
        const b = el.getBoundingClientRect();
        el.dispatchEvent(new MouseEvent('mouseup', {bubbles: true, clientX: b.left + 20, clientY: b.top + 5}));
    }"""
    )
    page.wait_for_selector("#pii-bar", state="visible")
    page.select_option("#pii-entity", "PERSON")
    page.fill("#why", "a first name")
    page.click("#pii-missed")
    page.wait_for_selector("#toast", state="visible")
    page.wait_for_function("document.querySelector('#count').textContent.startsWith('1 decision')")
    decisions = load_decisions(run)
    assert [(d.action, d.entity, d.who, d.why) for d in decisions] == [("pii_missed", "PERSON", "dana", "a first name")]

    # the decision shows in its tab
    page.click("#tabs button[data-tab=decisions]")
    page.wait_for_selector("tr.row")
    assert "pii_missed" in page.inner_text("tr.row")
    assert errors == []

    # re-run: the name is scrubbed, the report lists the decision
    rerun(where)
    texts = " ".join(output(run)["text"].to_list())
    assert "Cheers, [NAME]" in texts and "Cheers, Bo" not in texts
    report = browser.new_page()
    report.goto((run / "report.html").as_uri())
    section = report.inner_text("#decisions + p + table")
    assert "pii_missed" in section and "dana" in section and "a first name" in section


def test_show_raw_says_so_and_read_only_while_running(browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import json

    monkeypatch.chdir(tmp_path)
    run = make_run(tmp_path)
    stats = json.loads((run / "stats.json").read_text())
    (run / "stats.json").write_text(json.dumps({**stats, "complete": False}))
    server, url, _ = bind(RunView(run, show_raw=True), port=0)
    serve_in_thread(server)
    try:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#tabs button")
        page.wait_for_selector("button.drop")
        banner = page.inner_text("#banner")
        assert "read-only" in banner and "RAW text" in banner
        assert page.locator("button.drop[disabled]").count() == page.locator("button.drop").count() > 0
    finally:
        server.shutdown()
        server.server_close()
