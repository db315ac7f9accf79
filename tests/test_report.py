"""What chapters print: MyST tables, the scale box, the reproduce section, and the dataset facts they state."""

import pandas as pd
import pytest

from optbench import data, report


def test_markdown_table_is_a_numbered_myst_table_with_aligned_escaped_cells():
    frame = pd.DataFrame({"optimizer": ["Adam", "a|b"], "accuracy (%)": ["97.3 [96.1, 98.2]", "–"], "runs": [3, 3]})
    text = report.markdown_table(frame, "Results.", "tbl-x")
    lines = text.splitlines()
    assert lines[:2] == [":::{table} Results.", ":name: tbl-x"]
    assert "| optimizer | accuracy (%) | runs |" in lines
    assert "|:--|--:|--:|" in lines  # text left, numbers right
    assert "| a\\|b | – | 3 |" in lines
    with pytest.raises(ValueError, match="table 'tbl-y' has no rows"):
        report.markdown_table(frame.iloc[0:0], "Empty.", "tbl-y")


def test_scale_box_names_what_differs():
    box = report.scale_admonition("smoke", [("epochs", "200", "2"), ("batch size", "128", "128")], "report 000", "tbl-scale").data
    assert box.startswith("::::{admonition} Scale: profile `smoke`")
    assert "This build differs from report 000 in: epochs." in box and ":name: tbl-scale" in box


def test_digits_facts_match_the_loaded_split():
    digits = data.load_dataset("digits")
    info = data.DATASET_INFO["digits"]
    assert (len(digits.train_labels), len(digits.test_labels), digits.image_size) == (
        info["train_examples"], info["test_examples"], info["image_size"])
    assert report.describe_data("digits", None) == "scikit-learn's handwritten digits, 8×8 (native), 1,347 training and 450 test images"
    assert "resized to 16×16" in report.describe_data("digits", 16)
    assert "256 training (a fixed subset)" in report.describe_data("digits", None, 256)


def test_reproduce_section_gives_both_commands_and_the_provenance():
    text = report.reproduce_section("study1_optimizers", "smoke", {"seeds": [0, 1], "num_epochs": 2}).data
    assert ".venv/bin/optbench execute --profile smoke --notebook study1_optimizers" in text
    assert "papermill study1_optimizers.ipynb study1_optimizers-executed.ipynb -y '{profile: smoke, seeds: [0, 1], num_epochs: 2}'" in text
    assert "torch " in text and "git commit" in text
