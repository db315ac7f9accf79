"""Checks that a built book works from any web server: every link relative, every internal link alive.

``python -m optbench.site _build/html`` runs both checks (``make publish`` does, before it pushes) and exits
non-zero listing the problems. Links are read from the HTML attributes that load or link something
(``href``, ``src``, ``srcset``, ``poster``, ``data``, ``action``) with the standard library's parser.
"""

from __future__ import annotations

import argparse
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

LINK_ATTRIBUTES = ("href", "src", "srcset", "poster", "data", "action")
#: schemes of links that leave the site (not checked for existence; the browser test checks none is loaded)
EXTERNAL_SCHEMES = ("http", "https", "mailto", "tel", "data", "javascript")


class _Links(HTMLParser):
    """Collects (attribute, value) of link attributes and every element id and anchor name of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            elif name in LINK_ATTRIBUTES:
                if name == "srcset":
                    self.links.extend((name, candidate.strip().split(" ")[0]) for candidate in value.split(",") if candidate.strip())
                else:
                    self.links.append((name, value))


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


#: a built book's folder of assets: its HTML files are the theme's Jinja macro templates, not pages
STATIC = "_static"


def html_pages(site: Path) -> list[Path]:
    """Every HTML page of the built site (the theme's templates under ``_static/`` are not pages)."""
    site = Path(site)
    if not site.is_dir():
        raise ValueError(f"no built site at {site}: build the book first (make book)")
    return sorted(path for path in site.rglob("*.html") if STATIC not in path.relative_to(site).parts)


def absolute_local_links(site: str | Path, forbidden: tuple[str, ...] = ()) -> list[str]:
    """Problems that tie the site to one machine or server root: links starting with ``/`` or ``file:``, and
    any of the ``forbidden`` strings (the build directory's absolute path, say) anywhere in an HTML, JS or CSS
    file. Each problem names its file."""
    site = Path(site)
    problems = []
    for page in html_pages(site):
        for attribute, value in _parse(page).links:
            url = value.strip()
            if url.lower().startswith("file:") or (url.startswith("/") and not url.startswith("//")):
                problems.append(f"{page.relative_to(site)}: {attribute}={url!r} is an absolute local link")
    for path in sorted(item for pattern in ("*.html", "*.js", "*.css") for item in site.rglob(pattern)):
        text = path.read_text(encoding="utf-8", errors="replace")
        for needle in forbidden:
            if needle and needle in text:
                problems.append(f"{path.relative_to(site)}: contains the local path {needle!r}")
    return problems


def broken_internal_links(site: str | Path) -> list[str]:
    """Relative links whose file does not exist in the site, or whose ``#fragment`` names no element of the
    page they lead to. Each problem names its page and link."""
    site = Path(site).resolve()
    parsed: dict[Path, _Links] = {}

    def page(path: Path) -> _Links:
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path]

    problems = []
    for source in html_pages(site):
        for attribute, value in page(source).links:
            parts = urlsplit(value.strip())
            if parts.scheme.lower() in EXTERNAL_SCHEMES or parts.netloc or value.strip() in ("", "#"):
                continue
            target = source if not parts.path else (source.parent / unquote(parts.path)).resolve()
            where = f"{source.relative_to(site)}: {attribute}={value!r}"
            if target.is_dir():
                target = target / "index.html"
            if site not in target.parents and target != site:
                problems.append(f"{where} leads outside the site")
            elif not target.is_file():
                problems.append(f"{where}: no file {target.relative_to(site) if site in target.parents else target}")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in page(target).ids:
                problems.append(f"{where}: {target.relative_to(site)} has no element with id {unquote(parts.fragment)!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optbench.site", description=__doc__.splitlines()[0])
    parser.add_argument("site", help="the built HTML directory, e.g. _build/html")
    parser.add_argument("--forbid", action="append", default=[], help="a string no file may contain (e.g. the checkout's absolute path)")
    arguments = parser.parse_args(argv)
    try:
        problems = absolute_local_links(arguments.site, tuple(arguments.forbid)) + broken_internal_links(arguments.site)
    except ValueError as error:
        print(f"optbench.site: error: {error}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem, file=sys.stderr)
    pages = len(html_pages(Path(arguments.site)))
    print(f"{arguments.site}: {pages} pages, {len(problems)} link problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
