"""End to end: papermill executes every chapter with the smoke profile, Jupyter Book builds the HTML."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from optbench import book

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PAGES = {"intro": "book/intro.html", "methods": "book/methods.html", "study1_optimizers": "book/studies/study1_optimizers.html"}
#: every figure and table a chapter must show, by label
CHAPTER_CONTENT = {
    "study1_optimizers": {
        "figures": ["fig-s1-a-epochs", "fig-s1-a-seconds", "fig-s1-a-time", "fig-s1-b-epochs", "fig-s1-b-seconds", "fig-s1-b-time", "fig-s1-fc"],
        "tables": ["tbl-s1-a", "tbl-s1-grid", "tbl-s1-b", "tbl-s1-ranks", "tbl-s1-fc", "tbl-s1-reported", "tbl-s1-claims"],
    },
}


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """A copy of the book sources, executed with the smoke profile and built; returns (root, log)."""
    root = tmp_path_factory.mktemp("book")
    for item in ("notebooks", "profiles", "book", "_config.yml", "_toc.yml"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, root / item, ignore=shutil.ignore_patterns("*.ipynb"))
        else:
            shutil.copy(source, root / item)
    env = {**os.environ, "OPTBENCH_RESULTS_DIR": str(root / "results"), "OPTBENCH_NUM_THREADS": "1"}
    execute = subprocess.run([str(BIN / "optbench"), "execute", "--profile", "smoke", "--root", str(root)],
                             env=env, capture_output=True, text=True, timeout=1200)
    assert execute.returncode == 0, execute.stdout[-3000:] + execute.stderr[-5000:]
    build = subprocess.run([str(BIN / "jupyter-book"), "build", str(root), "--warningiserror", "--nitpick"],
                           env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-3000:]
    return root, execute.stdout + execute.stderr


def _page(root, name):
    return BeautifulSoup((root / "_build" / "html" / PAGES[name]).read_text(), "html.parser")


def test_every_chapter_page_exists(built_book):
    root, _ = built_book
    for name, page in PAGES.items():
        assert (root / "_build" / "html" / page).is_file(), f"missing page {page}"
    assert (root / "_build" / "html" / "index.html").is_file()


def test_executed_notebooks_are_build_outputs_with_hidden_parameters(built_book):
    import nbformat

    root, _ = built_book
    notebook = nbformat.read(root / "book" / "studies" / "study1_optimizers.ipynb", as_version=4)
    injected = [cell for cell in notebook.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0].metadata["tags"]
    assert 'profile = "smoke"' in injected[0].source
    html = (root / "_build" / "html" / PAGES["study1_optimizers"]).read_text()
    assert "Parameters" not in html and 'profile = "smoke"' not in html


@pytest.mark.parametrize("chapter", sorted(CHAPTER_CONTENT))
def test_chapter_figures_are_referenced_nonempty_pngs(built_book, chapter):
    root, _ = built_book
    page_path = root / "_build" / "html" / PAGES[chapter]
    page = _page(root, chapter)
    for label in CHAPTER_CONTENT[chapter]["figures"]:
        figure = page.find(id=label)
        assert figure is not None, f"figure {label} is missing"
        image = figure.find("img")
        assert image is not None, f"figure {label} has no image"
        png = (page_path.parent / image["src"]).resolve()
        content = png.read_bytes()
        assert content[:8] == b"\x89PNG\r\n\x1a\n" and len(content) > 5000, f"{png} is not a real PNG"
        assert figure.find("figcaption") is not None, f"figure {label} has no caption"


@pytest.mark.parametrize("chapter", sorted(CHAPTER_CONTENT))
def test_chapter_tables_are_there(built_book, chapter):
    root, _ = built_book
    page = _page(root, chapter)
    for label in CHAPTER_CONTENT[chapter]["tables"]:
        target = page.find(id=label)
        assert target is not None, f"table {label} is missing"
        table = target.find_next("table")
        assert table is not None and len(table.find_all("tr")) >= 3, f"table {label} is empty"


def test_study1_claim_table_decides_every_claim(built_book):
    root, _ = built_book
    table = _page(root, "study1_optimizers").find(id="tbl-s1-claims").find_next("table")
    text = table.get_text(" ")
    for claim in [f"C{number}" for number in range(1, 11)]:
        assert claim in text
    verdicts = [cell.get_text(strip=True) for cell in table.find_all("td")]
    assert sum(verdict in ("supported", "contradicted", "not testable at this profile") for verdict in verdicts) == 10


def test_intro_reads_the_compute_from_the_records(built_book):
    root, _ = built_book
    from optbench.store import ResultsStore
    from optbench.summary import compute_summary

    summary = compute_summary(ResultsStore(root / "results" / "smoke"))
    text = _page(root, "intro").get_text(" ")
    assert summary["runs"] > 0
    assert f"Its {summary['runs']} training runs" in " ".join(text.split())
    assert "smoke" in text


def test_glued_numbers_are_filled_in(built_book):
    import re

    root, _ = built_book
    for name in PAGES:
        assert "{glue" not in _page(root, name).get_text(" ")
    findings = " ".join(_page(root, "study1_optimizers").find(id="findings").get_text(" ").split())
    counts = re.search(r"supports (\d+) , contradicts (\d+) and cannot test (\d+)", findings)
    assert counts is not None, findings
    assert sum(int(count) for count in counts.groups()) == 10
    assert re.search(r"moves from rank (\d+) to rank (\d+)", findings)


def test_second_execution_reuses_every_record(built_book):
    root, _ = built_book
    env = {**os.environ, "OPTBENCH_RESULTS_DIR": str(root / "results"), "OPTBENCH_NUM_THREADS": "1"}
    before = {path.name: path.stat().st_mtime_ns for path in (root / "results" / "smoke").glob("*.json")}
    again = subprocess.run([str(BIN / "optbench"), "execute", "--profile", "smoke", "--root", str(root), "--notebook", "study1_optimizers"],
                           env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    after = {path.name: path.stat().st_mtime_ns for path in (root / "results" / "smoke").glob("*.json")}
    assert after == before


def test_profiles_are_valid_and_unknown_keys_are_rejected(tmp_path):
    # fashion and paper need datasets this machine may lack: their values are checked, not their data
    for profile in ("smoke", "default", "fashion", "paper"):
        parameters = book.load_profile(profile, ROOT, check_data=profile in ("smoke", "default"))
        assert set(parameters) == set(book.NOTEBOOKS)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "bad.yaml").write_text("notebooks:\n  study1_optimizers:\n    num_epoch: 3\n")
    with pytest.raises(book.ProfileError, match="unknown parameter.*'num_epoch'.*num_epochs"):
        book.load_profile("bad", tmp_path)
