"""End to end: papermill executes every chapter with the smoke profile, Jupyter Book builds the HTML, and the
pages hold what every chapter must show (read from the study registry)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

from optbench import book
from optbench.studies import STUDIES
from optbench.verdicts import VERDICTS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PAGES = {"intro": "book/intro.html", "methods": "book/methods.html",
         **{name: f"book/studies/{name}.html" for name in STUDIES}}


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


def test_every_page_exists_and_the_toc_lists_every_study(built_book):
    root, _ = built_book
    for name, page in PAGES.items():
        assert (root / "_build" / "html" / page).is_file(), f"missing page {page}"
    assert (root / "_build" / "html" / "index.html").is_file()
    toc = (ROOT / "_toc.yml").read_text()
    for name in STUDIES:
        assert f"book/studies/{name}" in toc, f"_toc.yml does not list {name}"


def test_executed_notebooks_have_hidden_parameters_and_no_stderr_noise(built_book):
    root, log = built_book
    for name, study in STUDIES.items():
        notebook = nbformat.read(root / study.executed, as_version=4)
        injected = [cell for cell in notebook.cells if "injected-parameters" in cell.metadata.get("tags", [])]
        assert len(injected) == 1 and "remove-cell" in injected[0].metadata["tags"]
        assert 'profile = "smoke"' in injected[0].source
        noise = [output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
                 if output.get("name") == "stderr"]
        assert noise == [], f"{name}: stderr in the executed notebook: {noise[:2]}"
        html = (root / "_build" / "html" / PAGES[name]).read_text()
        assert "Parameters" not in html and 'profile = "smoke"' not in html
    # the progress bars went to the terminal instead
    assert "protocol A" in log


@pytest.mark.parametrize("chapter", sorted(STUDIES))
def test_chapter_figures_are_captioned_pngs_with_alt_text(built_book, chapter):
    root, _ = built_book
    page_path = root / "_build" / "html" / PAGES[chapter]
    page = _page(root, chapter)
    for label in STUDIES[chapter].figures:
        figure = page.find(id=label)
        assert figure is not None, f"figure {label} is missing"
        image = figure.find("img")
        assert image is not None, f"figure {label} has no image"
        content = (page_path.parent / image["src"]).resolve().read_bytes()
        assert content[:8] == b"\x89PNG\r\n\x1a\n" and len(content) > 5000, f"{label} is not a real PNG"
        assert re.match(r"Fig\. \d+", figure.find("figcaption").get_text(" ", strip=True)), f"figure {label} is not numbered"
        alt = image.get("alt", "")
        assert len(alt.split()) >= 6 and ".png" not in alt, f"figure {label} has no descriptive alt text: {alt!r}"


@pytest.mark.parametrize("chapter", sorted(STUDIES))
def test_chapter_tables_are_numbered_with_captions_and_rows(built_book, chapter):
    root, _ = built_book
    page = _page(root, chapter)
    for label in STUDIES[chapter].tables:
        table = page.find(id=label)
        assert table is not None and table.name == "table", f"table {label} is missing"
        caption = table.find("caption")
        assert caption is not None and re.match(r"Table \d+", caption.get_text(" ", strip=True)), f"table {label} is not numbered"
        assert len(table.find_all("tr")) >= 2, f"table {label} is empty"
        # one header row: no separate row for an index name
        assert len(table.find("thead").find_all("tr")) == 1, f"table {label} has more than one header row"


@pytest.mark.parametrize("chapter", sorted(STUDIES))
def test_chapter_opens_with_the_scale_admonition_and_ends_with_the_reproduce_section(built_book, chapter):
    root, _ = built_book
    page = _page(root, chapter)
    article = page.find("article")
    box = article.select_one("div.admonition.note")
    assert box is not None and "Scale: profile smoke" in box.get_text(" ", strip=True)
    order = article.find_all(lambda tag: tag is box or tag.name == "h2")
    assert order[0] is box, "the scale box opens the chapter, before its first section"
    reproduce = page.find(id="reproduce-this-chapter")
    text = " ".join(reproduce.get_text(" ").split())
    assert f"optbench execute --profile smoke --notebook {chapter}" in text and "papermill" in text and "git commit" in text
    # the analysis code is on the page, behind toggles
    assert len(page.select("details.hide.above-input")) >= 3


@pytest.mark.parametrize("chapter", sorted(STUDIES))
def test_every_claim_has_a_verdict_from_the_vocabulary_and_the_findings_count_them(built_book, chapter):
    root, _ = built_book
    page = _page(root, chapter)
    table = page.find(id=STUDIES[chapter].claims_table)
    assert STUDIES[chapter].claims_table in STUDIES[chapter].tables
    rows = table.find("tbody").find_all("tr")
    claims = [row.find_all("td")[0].get_text(strip=True) for row in rows]
    assert claims == list(STUDIES[chapter].claims)
    verdicts = [row.find_all("td")[-1].get_text(strip=True) for row in rows]
    assert set(verdicts) <= set(VERDICTS), verdicts
    findings = " ".join(page.find(id="findings").get_text(" ").split())
    counts = re.search(r"supports (\d+) , contradicts (\d+) , leaves (\d+) inconclusive and cannot test (\d+)", findings)
    assert counts is not None, findings
    assert [int(count) for count in counts.groups()] == [verdicts.count(verdict) for verdict in VERDICTS]


def test_intro_lists_every_chapter_and_reads_the_compute_from_the_records(built_book):
    root, _ = built_book
    from optbench.store import ResultsStore
    from optbench.summary import compute_summary

    page = _page(root, "intro")
    chapters = page.find(id="tbl-chapters")
    assert len(chapters.find("tbody").find_all("tr")) == len(STUDIES)
    summary = compute_summary(ResultsStore(root / "results" / "smoke"))
    text = " ".join(page.get_text(" ").split())
    assert summary["runs"] > 0 and f"Its {summary['runs']} training runs" in text and "smoke" in text


def test_glued_values_are_filled_in(built_book):
    root, _ = built_book
    for name in PAGES:
        assert "{glue" not in _page(root, name).get_text(" ")
    findings = " ".join(_page(root, "study1_optimizers").find(id="findings").get_text(" ").split())
    assert re.search(r"moves from rank (\d+) to rank (\d+)", findings)


def test_second_execution_reuses_every_record(built_book):
    root, _ = built_book
    env = {**os.environ, "OPTBENCH_RESULTS_DIR": str(root / "results"), "OPTBENCH_NUM_THREADS": "1"}
    # records, timings and measurements: nothing is trained or measured again
    before = {str(path): path.stat().st_mtime_ns for path in (root / "results" / "smoke").rglob("*.json")}
    chapters = [argument for name in STUDIES for argument in ("--notebook", name)]
    again = subprocess.run([str(BIN / "optbench"), "execute", "--profile", "smoke", "--root", str(root), *chapters],
                           env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    after = {str(path): path.stat().st_mtime_ns for path in (root / "results" / "smoke").rglob("*.json")}
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
