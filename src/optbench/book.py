"""Execute the chapter notebooks headless with papermill, with the parameters of a profile.

A profile is a YAML file (``profiles/<name>.yaml``) holding, per notebook, the values of its
``parameters`` cell. Every profile is checked in full (unknown notebooks or keys, and values the
studies reject) before any notebook runs, so bad input never starts training.
"""

from __future__ import annotations

import ast
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from .data import DatasetUnavailableError
from .progress import PROGRESS_FILE_VARIABLE, ProgressRelay
from .studies import STUDIES

#: notebooks of the book that are not studies: they run after the studies, whose records and hand-overs
#: (:mod:`optbench.chapter_results`) they read
PAGES = {name: (f"notebooks/{name}.md", f"book/{name}.ipynb")
         for name in ("methods", "intro", "summary", "reproducibility", "verification")}
#: notebook name → (source under notebooks/, executed copy in the book tree): the registered studies, then the pages
NOTEBOOKS = {**{name: (study.source, study.executed) for name, study in STUDIES.items()}, **PAGES}
PROFILE_KEYS = ("description", "notebooks")
PROFILE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class ProfileError(ValueError):
    """A profile that names unknown notebooks or parameters, or holds values the studies reject."""


def profile_path(profile: str, root: Path) -> Path:
    """``profiles/<profile>.yaml`` under ``root``; profile names are plain names, never paths."""
    if not PROFILE_NAME.match(profile):
        raise ProfileError(f"invalid profile name {profile!r}: use letters, digits, '_' and '-' only (a file in profiles/)")
    path = root / "profiles" / f"{profile}.yaml"
    if not path.is_file():
        available = sorted(item.stem for item in (root / "profiles").glob("*.yaml"))
        raise ProfileError(f"unknown profile {profile!r}; available: {', '.join(available)}")
    return path


def notebook_parameters(source: Path) -> dict[str, Any]:
    """The names and default values of a MyST notebook's ``parameters`` cell (papermill's inspection)."""
    import jupytext
    import papermill

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"{source.stem}.ipynb"
        jupytext.write(jupytext.read(source), path)
        # papermill reports each default as its source text; the parameters cell holds literals only
        return {name: ast.literal_eval(info["default"]) for name, info in papermill.inspect_notebook(str(path)).items()}


def load_profile(profile: str, root: Path, check_data: bool = True) -> dict[str, dict[str, Any]]:
    """Per notebook, the parameters a profile sets (plus ``profile``), after checking all of them.

    With ``check_data`` the datasets must be on disk or downloadable too (what a build needs).
    """
    path = profile_path(profile, root)
    try:
        with open(path) as stream:
            content = yaml.safe_load(stream) or {}
    except yaml.YAMLError as error:
        raise ProfileError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(content, dict):
        raise ProfileError(f"{path}: a profile must be a mapping with keys {', '.join(PROFILE_KEYS)}")
    unknown = sorted(set(content) - set(PROFILE_KEYS))
    if unknown:
        raise ProfileError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(PROFILE_KEYS)}")
    sections = content.get("notebooks") or {}
    unknown = sorted(set(sections) - set(NOTEBOOKS))
    if unknown:
        raise ProfileError(f"{path}: unknown notebook(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(NOTEBOOKS)}")
    parameters = {}
    for name, (source, _) in NOTEBOOKS.items():
        section = sections.get(name) or {}
        allowed = notebook_parameters(root / source)
        unknown = sorted(set(section) - set(allowed) | ({"profile"} & set(section)))
        if unknown:
            settable = ", ".join(sorted(set(allowed) - {"profile"}))
            raise ProfileError(f"{path}: unknown parameter(s) {', '.join(map(repr, unknown))} for notebook {name!r}; allowed: {settable}")
        values = {**{key: value for key, value in allowed.items()}, **section, "profile": profile}
        if name in STUDIES:
            try:
                STUDIES[name].validate(values, check_data=check_data)
            except (ValueError, TypeError, DatasetUnavailableError) as error:
                raise ProfileError(f"{path}: notebook {name!r}: {error}") from None
        parameters[name] = {**section, "profile": profile}
    return parameters


def hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` so the HTML does not show it."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(notebook, path)


def execute_notebooks(profile: str, root: Path | str = ".", only: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, float]:
    """Execute the notebooks (all, or those in ``only``) with ``profile``; return seconds per notebook."""
    root = Path(root).resolve()
    parameters = load_profile(profile, root)
    names = list(NOTEBOOKS) if not only else only
    unknown = sorted(set(names) - set(NOTEBOOKS))
    if unknown:
        raise ProfileError(f"unknown notebook(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(NOTEBOOKS)}")
    os.environ.setdefault("OPTBENCH_RESULTS_DIR", str(root / "results"))
    seconds = {}
    with tempfile.TemporaryDirectory() as progress_directory:
        progress_file = Path(progress_directory) / "progress.log"
        # the kernels inherit it: their bars reach this terminal, not the executed notebooks
        os.environ[PROGRESS_FILE_VARIABLE] = str(progress_file)
        try:
            with ProgressRelay(progress_file):
                for name in names:
                    seconds[name] = _execute_one(name, profile, root, parameters[name], log)
        finally:
            os.environ.pop(PROGRESS_FILE_VARIABLE, None)
    return seconds


def _execute_one(name: str, profile: str, root: Path, parameters: dict, log: Callable[[str], None]) -> float:
    """Execute notebook ``name`` into the book tree with ``parameters``; return its seconds."""
    import jupytext
    import papermill

    source, target = (root / part for part in NOTEBOOKS[name])
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"executing {source.relative_to(root)} with profile {profile!r} -> {target.relative_to(root)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        unexecuted = Path(directory) / f"{name}.ipynb"
        jupytext.write(jupytext.read(source), unexecuted)
        partial = target.with_suffix(".partial.ipynb")
        papermill.execute_notebook(
            str(unexecuted), str(partial), parameters=parameters, cwd=str(root), kernel_name="python3",
            progress_bar=False, log_output=False,
        )
    hide_injected_parameters(partial)
    partial.replace(target)
    seconds = time.perf_counter() - started
    log(f"  {name}: {seconds:.1f} s")
    return seconds


def chapter_table():
    """The book's study chapters as a numbered table (for the introduction), read from the study registry."""
    import pandas as pd

    from .report import show_table

    from .references import cite_report

    frame = pd.DataFrame({
        "chapter": [f"{{ref}}`{name.split('_')[0]}`" for name in STUDIES],
        "reproduces": [("report " if len(study.reports) == 1 else "reports ") + " and ".join(f"{report} {cite_report(report)}" for report in study.reports)
                       for study in STUDIES.values()],
        "question": [study.question for study in STUDIES.values()],
    })
    return show_table(frame, "The study chapters of this book.", "tbl-chapters", numeric_columns=[])


def methods_tables():
    """(networks, optimizers) the registered chapters train at their default settings, as numbered tables
    for the methods page: each network's description, each optimizer's registry description and defaults."""
    import pandas as pd

    from . import models, optim, references, styles
    from .report import show_table

    configs = [config for study in STUDIES.values() for config in study.planned_runs(study.settings())]
    used_models = sorted({config.model for config in configs}, key=models.available_models().index)
    used_optimizers = list(dict.fromkeys(name for name in styles.STYLES if name in {config.optimizer for config in configs}))
    networks = pd.DataFrame({"network": used_models, "what it is": [models.DESCRIPTIONS[name] for name in used_models],
                             "reference": [references.cite(references.MODELS[name]) for name in used_models]})
    optimizers = pd.DataFrame({
        "optimizer": [styles.label(name) for name in used_optimizers],
        "registry name": [f"`{name}`" for name in used_optimizers],
        "what it is": [optim.spec(name).description for name in used_optimizers],
        "defaults": [", ".join(f"{key} {value}" for key, value in optim.default_hyperparameters(name).items()) for name in used_optimizers],
        "reference": [references.cite(references.OPTIMIZERS[name]) for name in used_optimizers],
    })
    return (show_table(networks, "The networks the chapters train.", "tbl-methods-networks", numeric_columns=[]),
            show_table(optimizers, "The optimizers the chapters compare, with the registry's defaults.", "tbl-methods-optimizers",
                       numeric_columns=[]))
