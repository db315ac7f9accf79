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
import yaml
from bs4 import BeautifulSoup

from optbench import book
from optbench.studies import STUDIES
from optbench.verdicts import VERDICTS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: every notebook of the book → its page: the registered studies, then the pages (optbench.book.PAGES)
PAGES = {name: target.removesuffix(".ipynb") + ".html" for name, (_, target) in book.NOTEBOOKS.items()}


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
    for name, (_, executed) in book.NOTEBOOKS.items():
        notebook = nbformat.read(root / executed, as_version=4)
        injected = [cell for cell in notebook.cells if "injected-parameters" in cell.metadata.get("tags", [])]
        assert len(injected) == 1 and "remove-cell" in injected[0].metadata["tags"]
        assert 'profile = "smoke"' in injected[0].source
        noise = [output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
                 if output.get("name") == "stderr"]
        assert noise == [], f"{name}: stderr in the executed notebook: {noise[:2]}"
        html = (root / "_build" / "html" / PAGES[name]).read_text()
        assert "Parameters" not in html and 'profile = "smoke"' not in html
        # the injected cell shows every parameter's final value, not only the profile's changes
        values = {}
        exec(injected[0].source, {}, values)
        assert values == book.load_profile("smoke", root, check_data=False)[name]
    # the progress bars went to the terminal instead; the kernels' own chatter did not
    assert "protocol A" in log
    for noise in ("[IPKernelApp]", "KeyboardInterrupt", "Traceback", "Kernel is running over TCP"):
        assert noise not in log, noise
    # each chapter's plan came first
    assert "study1_optimizers: 80 runs needed, 0 stored, 80 to train, time left unknown" in log


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


def _rows(table) -> list[list[str]]:
    return [[cell.get_text(" ", strip=True) for cell in row.find_all("td")] for row in table.find("tbody").find_all("tr")]


def _header(table) -> list[str]:
    return [cell.get_text(" ", strip=True) for cell in table.find("thead").find_all("th")]


def test_toc_puts_the_summary_after_every_study_and_lists_every_page():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [entry["file"] for entry in toc["chapters"]]
    for name, (_, executed) in book.NOTEBOOKS.items():
        assert executed.removesuffix(".ipynb") in files, f"_toc.yml does not list {name}"
    studies = [files.index(study.executed.removesuffix(".ipynb")) for study in STUDIES.values()]
    assert files.index("book/summary") > max(studies)
    assert "book/references" in files


def test_summary_counts_every_chapters_verdicts(built_book):
    root, _ = built_book
    verdicts_on_pages = {}
    for name, study in STUDIES.items():
        table = _page(root, name).find(id=study.claims_table)
        verdicts_on_pages[name] = [(study.reports, row[1], row[-1]) for row in _rows(table)]
    page = _page(root, "summary")
    counts = page.find(id="tbl-summary-verdicts")
    assert _header(counts) == ["report", *VERDICTS, "claims"]
    rows = {row[0]: [int(value) for value in row[1:]] for row in _rows(counts)}
    every = [(report, verdict) for claims in verdicts_on_pages.values() for _, report, verdict in claims]
    assert rows["all reports"] == [sum(verdict == wanted for _, verdict in every) for wanted in VERDICTS] + [len(every)]
    for report in {report for report, _ in every}:
        assert rows[f"report {report}"][-1] == sum(item == report for item, _ in every)
    claims = page.find(id="tbl-summary-claims")
    assert len(_rows(claims)) == sum(len(study.claims) for study in STUDIES.values())
    findings = " ".join(page.find(id="what-held-and-what-did-not").get_text(" ").split())
    numbers = re.search(r"supports (\d+) , contradicts (\d+) , leaves (\d+) inconclusive and cannot test (\d+)", findings)
    assert [int(number) for number in numbers.groups()] == rows["all reports"][:4]


def test_summary_profiles_cover_every_chapters_workloads(built_book):
    root, _ = built_book
    from optbench import chapter_results
    from optbench.store import ResultsStore

    results = chapter_results.load_all(ResultsStore(root / "results" / "smoke"))
    assert list(results) == list(STUDIES)
    page = _page(root, "summary")
    workloads = _rows(page.find(id="tbl-summary-workloads"))
    expected = {(workload, result.title.split(" — ")[0]) for result in results.values() for workload in result.workloads["workload"]}
    assert {(row[0], row[1]) for row in workloads} == expected
    optimizers = {label for result in results.values() for label in result.workloads["optimizer"]}
    scores = _rows(page.find(id="tbl-summary-scores"))
    assert {row[0] for row in scores} == optimizers
    figure = page.find(id="fig-summary-profiles")
    image = (root / "_build" / "html" / "book" / figure.find("img")["src"]).resolve().read_bytes()
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    text = " ".join(page.find(id="performance-profiles").get_text(" ").split())
    winner = re.search(r"rank (.+?) first in final test error", text).group(1)
    assert winner in optimizers


def test_reproducibility_appendix_lists_every_run_with_its_provenance(built_book):
    root, _ = built_book
    from optbench import chapter_results
    from optbench.store import ResultsStore

    store = ResultsStore(root / "results" / "smoke")
    results = chapter_results.load_all(store)
    page = _page(root, "reproducibility")
    compute = {row[0]: row for row in _rows(page.find(id="tbl-repro-compute"))}
    # every run of the store belongs to a chapter: chapters hand over every run they show
    assert int(compute["the book (each run once)"][1]) == len(list(store.records()))
    for name, result in results.items():
        runs = _rows(page.find(id=f"tbl-repro-runs-{STUDIES[name].prefix}"))
        assert sorted(row[0] for row in runs) == sorted(result.run_ids)
        assert all("commit" in row[-1] and "torch" in row[-1] and "threads" in row[-1] for row in runs)
    commands = " ".join(page.find(id="tbl-repro-commands").get_text(" ").split())
    for name in book.NOTEBOOKS:
        assert f"optbench execute --profile smoke --notebook {name}" in commands


def test_verification_appendix_shows_every_check_and_names_the_deviations(built_book):
    root, _ = built_book
    from optbench import optim

    page = _page(root, "verification")
    table = page.find(id="tbl-verification")
    rows = _rows(table)
    ours = {name for name in optim.available() if optim.spec(name).factory.__module__ != "optbench.optim.torch_builtin"}
    assert {row[1] for row in rows} == ours
    header = _header(table)
    for row in rows:
        for column in ("after 1 step", "after 10 steps", "after 100 steps"):
            assert float(row[header.index(column)]) < 1e-12
    deviations = page.find(id="documented-deviations").find_all("li")
    assert len(deviations) == sum(row[header.index("documented deviations")] != "none" for row in rows) > 0


@pytest.mark.parametrize("chapter", sorted(STUDIES))
def test_chapter_offers_its_run_records_as_a_csv(built_book, chapter):
    import pandas as pd

    from optbench import chapter_results
    from optbench.store import ResultsStore

    root, _ = built_book
    page_path = root / "_build" / "html" / PAGES[chapter]
    links = [link for link in _page(root, chapter).find_all("a", class_="download") if link["href"].endswith(f"{chapter}_runs.csv")]
    assert len(links) == 1
    frame = pd.read_csv((page_path.parent / links[0]["href"]).resolve())
    store = ResultsStore(root / "results" / "smoke")
    result = chapter_results.load(chapter, store)
    assert sorted(frame["run_id"].unique()) == sorted(result.run_ids)
    assert len(frame) == sum(len(store.load(run_id)["epochs"]) for run_id in result.run_ids)
    assert {"optimizer", "seed", "epoch", "test_accuracy", "elapsed_seconds", "grad_evals", "status"} <= set(frame.columns)


@pytest.mark.parametrize("chapter", sorted(STUDIES))
def test_chapter_cites_its_source_reports(built_book, chapter):
    root, _ = built_book
    citations = [link.get("title", "") for link in _page(root, chapter).select('a[href*="references.html#"]')]
    for report in STUDIES[chapter].reports:
        assert any(f"Report {report} of this book" in title for title in citations), f"{chapter} does not cite report {report}"


def test_methods_page_cites_every_report_network_and_optimizer(built_book):
    root, _ = built_book
    page = _page(root, "methods")
    citations = [link.get("title", "") for link in page.select('a[href*="references.html#"]')]
    for report in ("000", "001", "002", "003", "004"):
        assert any(f"Report {report} of this book" in title for title in citations)
    for label in ("tbl-methods-networks", "tbl-methods-optimizers"):
        table = page.find(id=label)
        for row in table.find("tbody").find_all("tr"):
            assert row.find_all("td")[-1].select('a[href*="references.html#"]'), f"{label}: a row without a reference"
    references = BeautifulSoup((root / "_build" / "html" / "book" / "references.html").read_text(), "html.parser")
    assert len(references.select("div.citation")) >= 5


def test_site_works_from_any_web_server(built_book):
    from optbench import site

    root, _ = built_book
    html = root / "_build" / "html"
    assert site.absolute_local_links(html, forbidden=(str(root),)) == []
    assert site.broken_internal_links(html) == []


def _cli(root, *argv):
    env = {**os.environ, "OPTBENCH_RESULTS_DIR": str(root / "results"), "OPTBENCH_NUM_THREADS": "1"}
    return subprocess.run([str(BIN / "optbench"), *argv, "--root", str(root)], env=env, capture_output=True, text=True, timeout=900)


def _store_files(root):
    return {str(path.relative_to(root)): path.stat().st_mtime_ns for path in (root / "results").rglob("*") if path.is_file()}


def test_plan_and_status_of_the_built_store(built_book):
    from optbench import plan as plans
    from optbench.store import ResultsStore
    from optbench.summary import compute_summary

    root, _ = built_book
    planned = _cli(root, "plan", "--profile", "smoke")
    assert planned.returncode == 0, planned.stderr
    assert "study1_optimizers: 80 runs needed, 80 stored, 0 to train, nothing to train" in planned.stdout
    status = _cli(root, "status", "--profile", "smoke")
    assert status.returncode == 0, status.stderr
    rows = {cells[0]: cells for cells in (re.split(r"\s{2,}", line.strip()) for line in status.stdout.splitlines()[2:])}
    chapter = rows["study1_optimizers"]
    assert int(chapter[1]) + int(chapter[2]) == 80 and chapter[3:6] == ["0", "0", "0"]
    # every chapter's compute and the rest add up to every record's (a run two chapters plan is counted in each)
    store = ResultsStore(root / "results" / "smoke")
    states = plans.store_states(store)
    studies = plans.chapter_states(book.load_profile("smoke", root, check_data=False), list(STUDIES), store, states)
    assert [study.name for study in studies] == list(STUDIES)
    planned = set().union(*(study.planned for study in studies))
    others = sum(plans.record_seconds(entry.record) for run_id, entry in states.items() if run_id not in planned)
    shared = sum(plans.record_seconds(states[run_id].record) * (sum(run_id in study.planned for study in studies) - 1)
                 for run_id in planned if run_id in states)
    assert sum(study.seconds_spent for study in studies) - shared + others == pytest.approx(compute_summary(store)["seconds"])


def test_command_line_parameters_reach_the_notebook_and_papermill_itself_gives_the_same(built_book, tmp_path):
    root, _ = built_book
    book_before = (root / "book" / "studies" / "study1_optimizers.ipynb").stat().st_mtime_ns
    store_before = _store_files(root)
    # the same runs in another order: visible in the notebook, and nothing to train
    (tmp_path / "overrides.yaml").write_text("selection_seeds: [1, 0]\n")
    output = tmp_path / "out" / "study1.ipynb"
    executed = _cli(root, "execute", "--profile", "smoke", "--notebook", "study1_optimizers", "-f", str(tmp_path / "overrides.yaml"),
                    "-p", "lr_grid", "[0.1, 0.001]", "--output", str(output))
    assert executed.returncode == 0, executed.stderr[-3000:]
    assert "80 runs needed, 80 stored, 0 to train" in executed.stdout
    assert _store_files(root) == store_before  # every run was stored: nothing trained or rewritten
    assert (root / "book" / "studies" / "study1_optimizers.ipynb").stat().st_mtime_ns == book_before
    ours = nbformat.read(output, as_version=4)
    [injected] = [cell for cell in ours.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    values = {}
    exec(injected.source, {}, values)
    defaults = book.notebook_parameters(root / "notebooks" / "study1_optimizers.md")
    smoke = yaml.safe_load((root / "profiles" / "smoke.yaml").read_text())["notebooks"]["study1_optimizers"]
    assert values == {**defaults, **smoke, "selection_seeds": [1, 0], "lr_grid": [0.1, 0.001], "profile": "smoke"}
    assert any("0.1, 0.001" in _text(cell) for cell in ours.cells)  # the settings table shows the grid as given

    # papermill itself, on the jupytext conversion, with the profile's values as a parameter file and -y on top
    parameters = _cli(root, "parameters", "--profile", "smoke", "--notebook", "study1_optimizers")
    assert parameters.returncode == 0, parameters.stderr
    (tmp_path / "smoke.yaml").write_text(parameters.stdout)
    source = tmp_path / "study1.ipynb"
    converted = subprocess.run([str(BIN / "jupytext"), "--to", "ipynb", "--output", str(source), str(root / "notebooks" / "study1_optimizers.md")],
                               capture_output=True, text=True, timeout=300)
    assert converted.returncode == 0, converted.stderr
    env = {**os.environ, "OPTBENCH_RESULTS_DIR": str(root / "results"), "OPTBENCH_NUM_THREADS": "1"}
    theirs_path = tmp_path / "papermill.ipynb"
    papermill = subprocess.run([str(BIN / "papermill"), str(source), str(theirs_path), "-f", str(tmp_path / "smoke.yaml"),
                                "-y", "{selection_seeds: [1, 0], lr_grid: [0.1, 0.001]}", "--cwd", str(root)],
                               env=env, capture_output=True, text=True, timeout=900)
    assert papermill.returncode == 0, papermill.stderr[-3000:]
    assert _store_files(root) == store_before  # papermill's run asked for exactly the runs optbench stored
    theirs = nbformat.read(theirs_path, as_version=4)
    # the hand-over's note says where each execution went: into the book (papermill from the root) or outside it
    compared = lambda cell: "injected-parameters" not in cell.metadata.get("tags", []) and "chapter_results.hand_over" not in cell.source
    mine = [_outputs(cell) for cell in ours.cells if compared(cell)]
    papers = [_outputs(cell) for cell in theirs.cells if compared(cell)]
    assert any("lies outside the book" in _text(cell) for cell in ours.cells)
    assert len(mine) == len(papers) and sum(map(bool, mine)) >= 10
    for index, (a, b) in enumerate(zip(mine, papers)):
        assert a == b, f"cell {index} differs"


def _outputs(cell) -> list:
    """A cell's outputs without what differs between two executions of the same thing (execution counts)."""
    return [{key: value for key, value in output.items() if key not in ("execution_count", "metadata")} for output in cell.get("outputs", [])]


def _text(cell) -> str:
    return " ".join(str(output.get("data", {}).get("text/markdown", "")) + str(output.get("text", "")) for output in cell.get("outputs", []))
