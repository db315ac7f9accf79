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

from . import executors, store
from .data import DatasetUnavailableError
from .studies import optimizer_comparison

#: notebook name → (source under notebooks/, executed copy in the book tree); the intro runs last
#: because it reads the compute totals of every study's records
NOTEBOOKS = {
    "study1_optimizers": ("notebooks/study1_optimizers.md", "book/studies/study1_optimizers.ipynb"),
    "intro": ("notebooks/intro.md", "book/intro.ipynb"),
}
PROFILE_KEYS = ("description", "notebooks", "executor")
PROFILE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

#: checks of a notebook's parameter values, run for every notebook before any of them executes
VALIDATORS: dict[str, Callable[..., Any]] = {
    "study1_optimizers": optimizer_comparison.validate_parameters,
}


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
    try:  # the backend of every sweep (optbench.executors); $OPTBENCH_EXECUTOR overrides it
        executors.check_executor_name(content.get("executor"), "executor")
    except ValueError as error:
        raise ProfileError(f"{path}: {error}") from None
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
        if name in VALIDATORS:
            try:
                VALIDATORS[name](values, check_data=check_data)
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
    import jupytext
    import papermill

    root = Path(root).resolve()
    parameters = load_profile(profile, root)
    names = list(NOTEBOOKS) if not only else only
    unknown = sorted(set(names) - set(NOTEBOOKS))
    if unknown:
        raise ProfileError(f"unknown notebook(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(NOTEBOOKS)}")
    os.environ.setdefault("OPTBENCH_RESULTS_DIR", str(root / "results"))
    executor = (yaml.safe_load(profile_path(profile, root).read_text()) or {}).get("executor")
    if executor and not os.environ.get(executors.EXECUTOR_VARIABLE):  # the kernel inherits the environment
        os.environ[executors.EXECUTOR_VARIABLE] = executor
    try:  # the variables the kernel's sweeps read, checked before it starts
        executors.check_environment()
        store.check_environment()
    except ValueError as error:
        raise ProfileError(str(error)) from None
    seconds = {}
    for name in names:
        source, target = (root / part for part in NOTEBOOKS[name])
        target.parent.mkdir(parents=True, exist_ok=True)
        log(f"executing {source.relative_to(root)} with profile {profile!r} -> {target.relative_to(root)}")
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as directory:
            unexecuted = Path(directory) / f"{name}.ipynb"
            jupytext.write(jupytext.read(source), unexecuted)
            partial = target.with_suffix(".partial.ipynb")
            papermill.execute_notebook(
                str(unexecuted), str(partial), parameters=parameters[name], cwd=str(root), kernel_name="python3",
                progress_bar=False, log_output=True,
            )
        hide_injected_parameters(partial)
        partial.replace(target)
        seconds[name] = time.perf_counter() - started
        log(f"  {name}: {seconds[name]:.1f} s")
    return seconds
