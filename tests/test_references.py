"""The bibliography: every key the book cites exists, every registered optimizer, network, dataset and source
report has an entry, and the reports' entries hold what the bibliography page promises."""

from pathlib import Path

import pytest
from pybtex.database import parse_file

from optbench import data, models, optim, references
from optbench.studies import STUDIES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bibliography():
    return parse_file(str(ROOT / references.BIBLIOGRAPHY), bib_format="bibtex")


def test_the_config_reads_the_bibliography_the_package_names():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["bibtex_bibfiles"] == [references.BIBLIOGRAPHY]


def test_every_key_the_package_names_is_in_the_bibliography(bibliography):
    assert references.all_keys() - set(bibliography.entries) == set()


def test_every_optimizer_network_dataset_and_report_has_a_reference():
    assert set(optim.available()) <= set(references.OPTIMIZERS)
    assert set(models.available_models()) <= set(references.MODELS)
    assert set(data.DATASET_INFO) <= set(references.DATASETS)
    assert {report for study in STUDIES.values() for report in study.reports} <= set(references.REPORTS)


def test_the_chapters_cite_only_keys_of_the_bibliography(bibliography):
    import re

    for source in sorted((ROOT / "notebooks").glob("*.md")):
        for keys in re.findall(r"\{cite(?::[pt])?\}`([^`]+)`", source.read_text()):
            for key in keys.split(","):
                assert key.strip() in bibliography.entries, f"{source.name} cites unknown key {key!r}"


def test_each_report_entry_has_title_authors_and_says_what_the_report_leaves_unstated(bibliography):
    for report, key in references.REPORTS.items():
        entry = bibliography.entries[key]
        assert entry.fields["title"] and entry.persons["author"], key
        assert entry.fields["note"].startswith(f"Report {report} of this book"), key
        if entry.fields["year"] == "n.d.":
            assert "no date" in entry.fields["note"], key
        if "howpublished" not in entry.fields:
            assert "no institution" in entry.fields["note"], key


def test_cite_builds_the_roles():
    assert references.cite(["kingma2015", "reddi2018", "kingma2015"]) == "{cite:p}`kingma2015,reddi2018`"
    assert references.cite(["he2016"], textual=True) == "{cite:t}`he2016`"
    assert references.cite_report("003") == "{cite:p}`report003`"
    with pytest.raises(ValueError, match="unknown report '007'"):
        references.cite_report("007")
    with pytest.raises(ValueError, match="at least one"):
        references.cite([])
