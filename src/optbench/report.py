"""What a chapter shows besides figures: numbered tables, the scale admonition, the reproduce section.

Chapters print these as Markdown outputs of hidden-input cells, which Jupyter Book parses as MyST
(``nb_render_markdown_format: myst`` in ``_config.yml``): a table becomes a numbered ``{table}`` with a
caption and a label the text can ``{numref}``, an admonition a real admonition box.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import shlex
from typing import Iterable

import matplotlib.pyplot as plt
import pandas as pd
import yaml
from IPython.display import Markdown

from . import data
from .training import _git_commit

#: packages whose versions the reproduce section lists
PACKAGES = ("optbench", "torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn", "matplotlib", "seaborn", "papermill", "jupyter-book")


def _cell(value) -> str:
    text = "–" if value is None or (isinstance(value, float) and value != value) else str(value)
    # a pipe would end the cell; a newline would end the row
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, caption: str, name: str, numeric_columns: Iterable[str] | None = None) -> str:
    """``frame`` (its index ignored; values already formatted) as a MyST ``{table}`` with ``caption`` and label ``name``.

    Text columns are left-aligned; ``numeric_columns`` (default: columns whose values are all numbers or
    number-like text) right-aligned.
    """
    if frame.empty:
        raise ValueError(f"table {name!r} has no rows")
    columns = list(frame.columns)
    if numeric_columns is None:
        numeric_columns = [column for column in columns if all(_looks_numeric(value) for value in frame[column])]
    numeric_columns = set(numeric_columns)
    header = "| " + " | ".join(_cell(column) for column in columns) + " |"
    rule = "|" + "|".join("--:" if column in numeric_columns else ":--" for column in columns) + "|"
    rows = ["| " + " | ".join(_cell(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([f":::{{table}} {caption}", f":name: {name}", ":align: left", ":class: optbench-table", "", header, rule, *rows, ":::", ""])


def _looks_numeric(value) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    text = str(value).strip()
    return bool(text) and text[0] in "+-–0123456789." and not any(letter.isalpha() for letter in text.replace("e-", "").replace("e+", ""))


def show_table(frame: pd.DataFrame, caption: str, name: str, numeric_columns: Iterable[str] | None = None) -> Markdown:
    """:func:`markdown_table` as a Markdown display object (the output of a chapter cell)."""
    return Markdown(markdown_table(frame, caption, name, numeric_columns))


def key_value_table(values: dict, caption: str, name: str, key_title: str = "setting", value_title: str = "value") -> Markdown:
    """A two-column table of ``values`` (a settings table, say)."""
    frame = pd.DataFrame({key_title: list(values), value_title: [_cell(value) for value in values.values()]})
    return show_table(frame, caption, name, numeric_columns=[])


def describe_data(dataset: str, image_size: int | None, max_train_examples: int | None = None) -> str:
    """The data of a build in words: name, image size (native or resized) and training/test counts."""
    info = data.DATASET_INFO[dataset]
    native = info["image_size"]
    size = f"{native}×{native} (native)" if image_size in (None, native) else f"{native}×{native} resized to {image_size}×{image_size}"
    train = info["train_examples"] if max_train_examples is None else min(max_train_examples, info["train_examples"])
    subset = "" if max_train_examples is None or max_train_examples >= info["train_examples"] else " (a fixed subset)"
    return f"{info['title']}, {size}, {train:,} training{subset} and {info['test_examples']:,} test images"


def scale_admonition(profile: str, rows: list[tuple[str, str, str]], source: str, name: str) -> Markdown:
    """The box every chapter opens with: the profile and, per setting, the source report's value beside this build's.

    ``rows`` are (setting, source report, this build); the settings that differ are named below the table,
    which is labelled ``name``.
    """
    frame = pd.DataFrame(rows, columns=["setting", source, "this build"])
    differing = [setting for setting, reported, ours in rows if reported != ours]
    summary = (f"This build differs from {source} in: {', '.join(differing)}. Relative claims are checked at this scale; "
               "claims about absolute numbers of the source's setting are marked *not testable here*."
               if differing else f"This build uses {source}'s settings.")
    table = markdown_table(frame, f"The scale of this build (profile `{profile}`) beside {source}.", name, numeric_columns=[])
    text = "\n".join([
        f"::::{{admonition}} Scale: profile `{profile}`",
        ":class: note",
        "",
        table,
        summary,
        "::::",
        "",
    ])
    return Markdown(text)


def changed_parameters(settings, defaults) -> dict:
    """The fields of dataclass ``settings`` that differ from ``defaults`` (another instance)."""
    current, default = dataclasses.asdict(settings), dataclasses.asdict(defaults)
    return {key: value for key, value in current.items() if value != default[key]}


def reproduce_section(notebook: str, profile: str, parameters: dict) -> Markdown:
    """How to re-execute this chapter, and what this build ran on: commands, commit, packages, machine.

    ``parameters`` are the ones this build set besides the notebook's defaults (the profile's, usually).
    """
    yaml_text = yaml.safe_dump({"profile": profile, **parameters}, default_flow_style=True, sort_keys=False, width=10_000).strip()
    commit = _git_commit() or "unknown (not a git checkout)"
    versions = ", ".join(f"{package} {_version(package)}" for package in PACKAGES)
    machine = f"{platform.system()} {platform.machine()} ({platform.processor() or 'processor unknown'}), {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    text = "\n".join([
        "With optbench (from the repository root, after `make venv`):",
        "",
        "```bash",
        f".venv/bin/optbench execute --profile {profile} --notebook {notebook}",
        "```",
        "",
        "With papermill itself, on the MyST source converted by jupytext:",
        "",
        "```bash",
        f".venv/bin/jupytext --to ipynb --output {notebook}.ipynb notebooks/{notebook}.md",
        f".venv/bin/papermill {notebook}.ipynb {notebook}-executed.ipynb -y {shlex.quote(yaml_text)}",
        "```",
        "",
        f"This page was built from git commit `{commit}` with {versions}, on {machine}. {build_options_sentence()}",
        "",
    ])
    return Markdown(text)


def build_options_sentence() -> str:
    """The build's options in words (precision, compilation, sweep backend), from the environment the build ran in."""
    from .config import build_options

    options = build_options()
    backend = os.environ.get("OPTBENCH_EXECUTOR") or "the default (one process, a local pool for long sweeps)"
    compiled = "compiled with torch.compile where the optimizer allows" if options["compile_model"] else "not compiled"
    return (f"Every run trained in {options['precision']} with its model {compiled}, on the sweep backend {backend}; "
            "profile keys or environment variables set these (README).")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def glue_figure(name: str, fig) -> None:
    """Glue ``fig`` under ``name`` for a ``{glue:figure}`` and close it (so it is not shown twice)."""
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)
