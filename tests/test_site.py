"""The checks that let the built book work from any web server, on small sites made by hand, and the book's
Sphinx extension that keeps each script once per page."""

from pathlib import Path

import pytest

from optbench import site, sphinxext


def _write(root: Path, path: str, body: str) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"<!DOCTYPE html><html><head></head><body>{body}</body></html>")


@pytest.fixture
def good_site(tmp_path):
    _write(tmp_path, "index.html", '<a href="book/a.html#results">A</a> <img src="_images/plot.png" srcset="_images/plot.png 2x">'
                                   '<a href="https://example.org/x">out</a> <a href="#top" id="top">top</a> <a href="#">menu</a>')
    _write(tmp_path, "book/a.html", '<h2 id="results">Results</h2><a href="../index.html">home</a><a href="sub/">folder</a>'
                                    '<a href="../_downloads/1/runs%20all.csv">csv</a><script src="../_static/x.js"></script>')
    _write(tmp_path, "book/sub/index.html", "<a name='anchor'>here</a>")
    for path in ("_images/plot.png", "_downloads/1/runs all.csv", "_static/x.js"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    # the theme's Jinja templates under _static are not pages
    _write(tmp_path, "_static/macros.html", "<link href=\"{{ pathto('x.css', 1) }}\">")
    return tmp_path


def test_a_good_site_passes_both_checks(good_site):
    assert site.html_pages(good_site) == [good_site / "book/a.html", good_site / "book/sub/index.html", good_site / "index.html"]
    assert site.absolute_local_links(good_site, forbidden=("/home/someone/optbench",)) == []
    assert site.broken_internal_links(good_site) == []
    assert site.main([str(good_site)]) == 0


def test_absolute_local_links_and_local_paths_are_found(good_site):
    _write(good_site, "book/b.html", '<img src="/_images/plot.png"><a href="file:///home/someone/optbench/_build/html/index.html">x</a>'
                                     '<a href="//cdn.example.org/lib.js">protocol-relative: external</a>')
    (good_site / "_static" / "y.js").write_text("load('/home/someone/optbench/results/smoke')")
    problems = site.absolute_local_links(good_site, forbidden=("/home/someone/optbench",))
    assert any("book/b.html: src='/_images/plot.png' is an absolute local link" in problem for problem in problems)
    assert any("href='file:///home/someone" in problem for problem in problems)
    assert any("_static/y.js: contains the local path" in problem for problem in problems)
    assert len(problems) == 4  # the two links, and the local path in book/b.html and in y.js


def test_broken_files_fragments_and_escapes_are_found(good_site):
    _write(good_site, "book/c.html", '<a href="a.html#missing">x</a><a href="gone.html">y</a><img src="../_images/none.png">'
                                     '<a href="../../outside.html">z</a><a href="#nowhere">w</a>')
    problems = site.broken_internal_links(good_site)
    assert len(problems) == 5, problems
    assert "book/c.html: href='a.html#missing': book/a.html has no element with id 'missing'" in problems
    assert "book/c.html: href='gone.html': no file book/gone.html" in problems
    assert "book/c.html: src='../_images/none.png': no file _images/none.png" in problems
    assert "book/c.html: href='../../outside.html' leads outside the site" in problems
    assert "book/c.html: href='#nowhere': book/c.html has no element with id 'nowhere'" in problems
    assert site.main([str(good_site)]) == 1


def test_a_missing_site_is_an_error(tmp_path, capsys):
    assert site.main([str(tmp_path / "nothing")]) == 2
    assert "no built site" in capsys.readouterr().err


def test_each_script_is_kept_once_whatever_its_no_file_spelling():
    from sphinx.builders.html._assets import _JavaScript

    thebe = "const THEBE_JS_URL = 'x'"
    scripts = [_JavaScript(None, body=thebe), _JavaScript("a.js", priority=500), _JavaScript("", body=thebe),
               _JavaScript("a.js", priority=500), _JavaScript("a.js", priority=200), _JavaScript("", body="other")]
    unique = sphinxext.unique_scripts(scripts)
    assert unique == [scripts[0], scripts[1], scripts[4], scripts[5]]
    context = {"script_files": scripts}
    sphinxext._unique_page_scripts(None, "page", "page.html", context, None)
    assert len(context["script_files"]) == 4
