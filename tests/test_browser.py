"""The smoke book in a real browser: Playwright drives Debian's Chromium (never a downloaded browser) over a
local web server, page by page, at desktop width and at 420 px.

Every page of ``_toc.yml`` is opened; the test checks that every image loaded, the sidebar reaches every page,
tables and formulas render, the console shows no error, nothing is fetched from outside the site, and at 420
px no table, figure or formula is cut off (nothing sticks out of the viewport except inside a scroll
container). A desktop and a phone screenshot of each page are saved; the session's last lines name the folder
(``$OPTBENCH_SCREENSHOTS_DIR`` when set).
"""

import contextlib
import functools
import http.server
import os
import threading
from pathlib import Path

import pytest
import yaml

from optbench.studies import STUDIES

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 420, "height": 860}
#: the tallest screenshot taken (Chromium's software compositor fails on much taller captures)
MAX_SCREENSHOT_HEIGHT = 12_000


def toc_pages() -> list[str]:
    """The book's pages in the order of ``_toc.yml`` (their paths without suffix)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [entry["file"] for entry in toc["chapters"]]


PAGES = toc_pages()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    """Chromium through Playwright; skipped (with the reason) only where Chromium is not installed."""
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} and could not be installed here: .ci/run installs it with "
                    "'apt-get install -y chromium' where apt-get is available (README, 'The two commands')")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@contextlib.contextmanager
def _served(directory: Path):
    """``directory`` served over HTTP on a free local port (as any web server would serve it); yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site(built_book):
    root, _ = built_book
    with _served(root / "_build" / "html") as url:
        yield url


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory, session_notes):
    folder = Path(os.environ["OPTBENCH_SCREENSHOTS_DIR"]) if os.environ.get("OPTBENCH_SCREENSHOTS_DIR") else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    session_notes.append(f"browser screenshots (desktop and 420 px phone, per page): {folder}")
    return folder


class _Visit:
    """A page opened in a fresh browser context, with everything that went wrong while loading it."""

    def __init__(self, browser, site: str, page: str, viewport: dict):
        self.context = browser.new_context(viewport=viewport)
        self.problems: list[str] = []
        self.context.route("**/*", self._only_the_site(site))
        self.page = self.context.new_page()
        self.page.on("console", lambda message: self.problems.append(f"console {message.type}: {message.text}")
                     if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("requestfailed", lambda request: self.problems.append(f"failed request: {request.url} ({request.failure})"))
        response = self.page.goto(f"{site}{page}.html", wait_until="load")
        assert response is not None and response.ok, f"{page}.html: HTTP {response.status if response else 'no response'}"
        self.page.wait_for_load_state("networkidle")
        # formulas: MathJax (served with the book) has replaced every math element's TeX
        self.page.wait_for_function("() => [...document.querySelectorAll('.math')].every(node => node.querySelector('mjx-container'))",
                                    timeout=20_000)
        self.page.wait_for_function("() => [...document.images].every(image => image.complete)", timeout=20_000)

    def _only_the_site(self, site: str):
        def route(route):
            if route.request.url.startswith(site):
                route.continue_()
            else:  # the book must work offline: anything from elsewhere is a problem
                self.problems.append(f"request outside the site: {route.request.url}")
                route.abort()
        return route

    def screenshot(self, path: Path) -> None:
        height = self.page.evaluate("() => document.documentElement.scrollHeight")
        width = self.page.viewport_size["width"]
        self.page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": width,
                                                                    "height": min(height, MAX_SCREENSHOT_HEIGHT)})

    def close(self) -> None:
        self.context.close()


BROKEN_IMAGES = "() => [...document.images].filter(image => !(image.naturalWidth > 0)).map(image => image.currentSrc || image.src)"
SIDEBAR_LINKS = """() => {
  const nav = document.querySelector('nav.bd-docs-nav');
  if (!nav || !nav.checkVisibility()) return null;
  return [...nav.querySelectorAll('a[href]')].map(link => new URL(link.href).pathname);
}"""
UNRENDERED_TABLES = """() => [...document.querySelectorAll('article table')].filter(table =>
  !table.checkVisibility() ? false : (table.getBoundingClientRect().height < 10 || table.querySelectorAll('tbody tr').length === 0)
).map(table => table.id || table.querySelector('caption')?.innerText || 'a table')"""
TABLE_IDS = "() => [...document.querySelectorAll('article table[id]')].filter(table => table.getBoundingClientRect().height > 10).map(table => table.id)"
# MyST a reader should never see: a table or directive left as text, a role not resolved
RAW_MARKUP = ("|:--", "|--:", ":::{", "{glue", "{numref}", "{cite", "{download}", "{ref}", "{doc}")
CUT_OFF = """() => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > width + 1) problems.push(`the page is ${document.documentElement.scrollWidth} px wide`);
  const selector = 'article table, article figure, article img, article mjx-container[display="true"], article pre, article .cell_output';
  for (const element of document.querySelectorAll(selector)) {
    const box = element.getBoundingClientRect();
    if (box.width === 0 || !element.checkVisibility()) continue;  // inside a closed "show code" toggle
    const name = element.id || element.tagName.toLowerCase() + (element.className ? '.' + String(element.className).split(' ')[0] : '');
    let scrolls = false;
    for (let ancestor = element.parentElement; ancestor; ancestor = ancestor.parentElement) {
      const overflow = getComputedStyle(ancestor).overflowX;
      const outer = ancestor.getBoundingClientRect();
      if (overflow === 'auto' || overflow === 'scroll') {
        if (outer.right > width + 1 || outer.left < -1) problems.push(`${name}: its scroll container sticks out of the viewport`);
        scrolls = true;
        break;
      }
      if ((overflow === 'hidden' || overflow === 'clip') && (box.right > outer.right + 1 || box.left < outer.left - 1)) {
        problems.push(`${name}: clipped by an ancestor (${Math.round(box.width)} px in ${Math.round(outer.width)} px)`);
        scrolls = true;
        break;
      }
    }
    if (!scrolls && (box.right > width + 1 || box.left < -1)) problems.push(`${name}: ${Math.round(box.left)}–${Math.round(box.right)} px in a ${width} px viewport`);
  }
  // a caption is read, not scrolled: it stays inside the viewport and the box its table scrolls in
  for (const caption of document.querySelectorAll('article table caption')) {
    const box = caption.getBoundingClientRect();
    if (box.width === 0 || !caption.checkVisibility()) continue;
    let right = width, left = 0;
    for (let ancestor = caption.parentElement; ancestor; ancestor = ancestor.parentElement) {
      if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(ancestor).overflowX)) {
        const outer = ancestor.getBoundingClientRect();
        right = Math.min(right, outer.right);
        left = Math.max(left, outer.left);
        break;
      }
    }
    if (box.right > right + 1 || box.left < left - 1)
      problems.push(`caption of ${caption.parentElement.id || 'a table'}: ${Math.round(box.left)}–${Math.round(box.right)} px, visible ${Math.round(left)}–${Math.round(right)} px`);
  }
  return problems;
}"""


def _name(page: str) -> str:
    return page.split("/")[-1]


@contextlib.contextmanager
def _visiting(browser, site: str, page: str, viewport: dict, screenshot: Path | None = None):
    """A :class:`_Visit` of ``page``, screenshotted first (a failing page is the one worth seeing), closed after."""
    visit = _Visit(browser, site, page, viewport)
    try:
        if screenshot is not None:
            visit.screenshot(screenshot)
        yield visit
    finally:
        visit.close()


@pytest.mark.parametrize("page", PAGES)
def test_page_in_a_desktop_browser(browser, site, screenshots, page):
    with _visiting(browser, site, page, DESKTOP, screenshots / f"{_name(page)}-desktop.png") as visit:
        assert visit.page.evaluate(BROKEN_IMAGES) == [], f"{page}: images that did not load"
        sidebar = visit.page.evaluate(SIDEBAR_LINKS)
        assert sidebar is not None, f"{page}: no visible sidebar at desktop width"
        reached = {path.removeprefix("/").removesuffix(".html") for path in sidebar}
        assert set(PAGES) <= reached, f"{page}: the sidebar does not reach {sorted(set(PAGES) - reached)}"
        assert visit.page.evaluate(UNRENDERED_TABLES) == [], f"{page}: tables that did not render"
        text = visit.page.inner_text("article")
        assert [markup for markup in RAW_MARKUP if markup in text] == [], f"{page}: MyST markup shown as text"
        study = next((study for study in STUDIES.values() if study.executed.removesuffix(".ipynb") == page), None)
        if study is not None:
            shown = set(visit.page.evaluate(TABLE_IDS))
            assert set(study.tables) <= shown, f"{page}: tables not shown: {sorted(set(study.tables) - shown)}"
        assert visit.problems == [], f"{page}: {visit.problems}"


@pytest.mark.parametrize("page", PAGES)
def test_page_on_a_420_px_phone_cuts_nothing_off(browser, site, screenshots, page):
    with _visiting(browser, site, page, PHONE, screenshots / f"{_name(page)}-phone.png") as visit:
        assert visit.page.evaluate(BROKEN_IMAGES) == [], f"{page}: images that did not load"
        assert visit.page.evaluate(CUT_OFF) == [], f"{page} at {PHONE['width']} px"
        assert visit.problems == [], f"{page}: {visit.problems}"


BROKEN_PAGE = """<!DOCTYPE html><html><head><meta name="viewport" content="width=device-width"></head><body><article>
<p>|:--|--:| a table left as text</p>
<img src="missing.png" alt="a missing image">
<table id="too-wide" style="width: 900px"><caption>A table wider than a phone</caption><tbody><tr><td>x</td></tr></tbody></table>
<div style="overflow-x: auto"><table id="scrolls" style="width: 900px"><tbody><tr><td>y</td></tr></tbody></table></div>
<img src="https://example.org/remote.png" alt="an image from elsewhere">
</article><script>console.error("broken on purpose")</script></body></html>"""


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    (tmp_path / "broken.html").write_text(BROKEN_PAGE)
    with _served(tmp_path) as url, _visiting(browser, url, "broken", PHONE) as visit:
        broken = visit.page.evaluate(BROKEN_IMAGES)
        cut_off = visit.page.evaluate(CUT_OFF)
        text = visit.page.inner_text("article")
    assert [src.rsplit("/", 1)[-1] for src in broken] == ["missing.png", "remote.png"]
    assert any(problem.startswith("too-wide:") for problem in cut_off) and not any(problem.startswith("scrolls") for problem in cut_off)
    assert any("the page is" in problem for problem in cut_off) and any("caption of too-wide" in problem for problem in cut_off)
    assert "console error: broken on purpose" in visit.problems
    assert "request outside the site: https://example.org/remote.png" in visit.problems
    assert [markup for markup in RAW_MARKUP if markup in text] == ["|:--", "|--:"]
