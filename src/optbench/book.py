"""The book's notebooks and their parameters: profiles, command-line overrides, and headless execution.

A profile is a YAML file (``profiles/<name>.yaml``) holding, per notebook, values of its ``parameters``
cell; ``-p NAME VALUE`` and ``-f FILE`` (as papermill takes them) override them for the notebooks being
executed. Every notebook's parameters are checked in full (unknown notebooks or names, text where a number
belongs, non-finite numbers, values the studies reject, the environment) before any notebook runs, so bad
input never starts training. :mod:`optbench.execution` runs each notebook; :mod:`optbench.plan` says what
a build needs and what the store holds.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import yaml

from . import executors, store
from .config import BUILD_OPTION_VARIABLES, PRECISIONS, build_options
from .checks import check_not_number_as_text
from .data import DatasetUnavailableError
from . import chapter_results
from .progress import PROGRESS_FILE_VARIABLE, ProgressRelay
from .studies import STUDIES

#: notebooks of the book that are not studies: they run after the studies, whose records and hand-overs
#: (:mod:`optbench.chapter_results`) they read
PAGES = {name: (f"notebooks/{name}.md", f"book/{name}.ipynb")
         for name in ("methods", "intro", "summary", "reproducibility", "verification")}
#: notebook name → (source under notebooks/, executed copy in the book tree): the registered studies, then the pages
NOTEBOOKS = {**{name: (study.source, study.executed) for name, study in STUDIES.items()}, **PAGES}
#: a profile's build options: top-level keys that become environment variables of the build (unless set
#: already: the environment wins) and so reach every chapter's runs and sweeps
BUILD_OPTIONS = {"executor": executors.EXECUTOR_VARIABLE, **BUILD_OPTION_VARIABLES}
PROFILE_KEYS = ("description", "notebooks", *BUILD_OPTIONS)
PROFILE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
RESULTS_VARIABLE = "OPTBENCH_RESULTS_DIR"


class ProfileError(ValueError):
    """A profile or parameter override that names unknown notebooks or parameters, or holds values the studies reject."""


# ---- YAML ------------------------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a mapping may not repeat a key (PyYAML would keep the last silently)."""


def _construct_unique_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    first_line = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            seen = first_line.get(key)
        except TypeError:  # an unhashable key: the base constructor reports it
            continue
        if seen is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen}); each key may appear once", key_node.start_mark)
        first_line[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_yaml(text: str, where: str) -> Any:
    """``text`` parsed as YAML (safe, duplicate keys refused); :class:`ProfileError` naming ``where`` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"{where}{line}: not valid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ProfileError(f"{where}: not valid YAML: {error}") from None


# ---- values ----------------------------------------------------------------------------------------------

def check_yaml_values(values: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Raise ``ValueError`` for text that spells a number where the parameter's default is not text (YAML 1.1
    reads ``1e-3`` as text), naming the spelling that works."""
    for name, value in values.items():
        if not isinstance(defaults.get(name), str):
            check_not_number_as_text(name, value)


# ---- profiles --------------------------------------------------------------------------------------------

def check_root(root: Path) -> None:
    """Raise :class:`ProfileError` unless ``root`` is a repository root: ``profiles/`` and every notebook's source."""
    if not (root / "profiles").is_dir():
        what = "does not exist" if not root.exists() else "has no profiles/ directory"
        raise ProfileError(f"the root {str(root)!r} {what}: give the repository root, which holds profiles/ and notebooks/ (--root)")
    missing = [source for source, _ in NOTEBOOKS.values() if not (root / source).is_file()]
    if missing:
        raise ProfileError(f"the root {str(root)!r} lacks {', '.join(missing)}: give the repository root, which holds "
                           "profiles/ and notebooks/ (--root)")


def profile_path(profile: str, root: Path) -> Path:
    """``profiles/<profile>.yaml`` under ``root``; profile names are plain names, never paths."""
    if not isinstance(profile, str) or not PROFILE_NAME.match(profile):
        raise ProfileError(f"invalid profile name {profile!r}: use letters, digits, '_' and '-' only (a file in profiles/)")
    check_root(root)
    path = root / "profiles" / f"{profile}.yaml"
    if not path.is_file():
        available = sorted(item.stem for item in (root / "profiles").glob("*.yaml"))
        listed = ", ".join(available) or f"none (no YAML file in {root / 'profiles'})"
        raise ProfileError(f"unknown profile {profile!r}; available: {listed}")
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


def read_profile(profile: str, root: Path) -> dict[str, dict[str, Any]]:
    """The per-notebook sections of a profile file, after checking its shape (not yet its values)."""
    sections = profile_content(profile, root)["notebooks"] or {}
    return {name: dict(sections.get(name) or {}) for name in NOTEBOOKS}


def profile_content(profile: str, root: Path) -> dict[str, Any]:
    """A profile file's content, after checking its shape and its build options (not yet the notebooks' values)."""
    path = profile_path(profile, root)
    content = read_yaml(path.read_text(), str(path))
    if content is None:
        raise ProfileError(f"{path}: the profile is empty; it must set 'notebooks:', a mapping from notebook name to "
                           f"parameters (notebooks: {', '.join(NOTEBOOKS)})")
    if not isinstance(content, dict):
        raise ProfileError(f"{path}: a profile must be a mapping with keys {', '.join(PROFILE_KEYS)}, not a {type(content).__name__}")
    unknown = sorted(set(content) - set(PROFILE_KEYS), key=str)
    if unknown:
        raise ProfileError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(PROFILE_KEYS)}")
    try:  # the backend of every sweep (optbench.executors); $OPTBENCH_EXECUTOR overrides it
        executors.check_executor_name(content.get("executor"), "executor")
    except ValueError as error:
        raise ProfileError(f"{path}: {error}") from None
    if content.get("precision") is not None and content["precision"] not in PRECISIONS:
        raise ProfileError(f"{path}: invalid precision {content['precision']!r}: allowed {', '.join(PRECISIONS)}")
    if content.get("compile_model") is not None and not isinstance(content["compile_model"], bool):
        raise ProfileError(f"{path}: invalid compile_model {content['compile_model']!r}: it must be true or false")
    if "notebooks" not in content:
        raise ProfileError(f"{path}: the profile has no 'notebooks:' key, so it would run every notebook with its built-in "
                           f"settings; give a mapping from notebook name to parameters (notebooks: {', '.join(NOTEBOOKS)})")
    sections = content["notebooks"] or {}
    if not isinstance(sections, dict):
        raise ProfileError(f"{path}: notebooks {sections!r} is a {type(sections).__name__}; it must be a mapping from notebook "
                           f"name to its parameters, like 'notebooks: {{study1_optimizers: {{num_epochs: 2}}}}'")
    unknown = sorted(set(sections) - set(NOTEBOOKS), key=str)
    if unknown:
        raise ProfileError(f"{path}: unknown notebook(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(NOTEBOOKS)}")
    for name, section in sections.items():
        if section is not None and not isinstance(section, dict):
            raise ProfileError(f"{path}: notebooks.{name} {section!r} is a {type(section).__name__}; it must be a mapping "
                               "from parameter name to value, like '{num_epochs: 2}'")
    return content


def read_overrides(pairs: list[tuple[str, str]] = (), files: list[str] = ()) -> dict[str, Any]:
    """Parameters given on the command line: each ``-f`` file (a YAML mapping), then each ``-p NAME VALUE``.

    Values are YAML, as papermill reads ``-y`` and its parameter files (``[0, 1]`` is a list, ``0.1`` a
    number, ``1.0e-3`` a number but ``1e-3`` text); later ones win, as in papermill.
    """
    overrides: dict[str, Any] = {}
    for file in files:
        path = Path(file)
        try:
            text = path.read_text()
        except OSError as error:
            raise ProfileError(f"cannot read the parameter file {file!r} (-f): {error.strerror or error}") from None
        content = read_yaml(text, f"parameter file {file}")
        if not isinstance(content, dict):
            raise ProfileError(f"parameter file {file} (-f) holds a {type(content).__name__}; it must be a mapping from "
                               "parameter name to value, like 'num_epochs: 3'")
        overrides.update({str(key): value for key, value in content.items()})
    for name, text in pairs:
        overrides[name] = read_yaml(text, f"-p {name} {text!r}")
    if "profile" in overrides:
        raise ProfileError(f"the parameter 'profile' ({overrides['profile']!r}) is set by --profile, not by -p or -f")
    return overrides


def assign_overrides(overrides: dict[str, Any], notebooks: list[str], allowed: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per notebook being executed, the overrides that are its parameters; each must be a parameter of one of them.

    ``allowed`` maps every notebook to its parameters' defaults.
    """
    assigned = {name: {} for name in notebooks}
    for key, value in overrides.items():
        takers = [name for name in notebooks if key in allowed[name] and key != "profile"]
        if not takers:
            owners = [name for name in NOTEBOOKS if key in allowed[name] and key != "profile"]
            settable = sorted({parameter for name in notebooks for parameter in allowed[name]} - {"profile"})
            listed = f"allowed: {', '.join(settable)}" if settable else f"{' and '.join(notebooks)} take(s) no parameter but the profile"
            if owners:
                raise ProfileError(f"parameter {key!r} belongs to notebook(s) {', '.join(owners)}, not to the one(s) being "
                                   f"executed ({', '.join(notebooks)}); add --notebook {owners[0]}, or drop it ({listed})")
            raise ProfileError(f"unknown parameter {key!r} for notebook(s) {', '.join(notebooks)}; {listed}")
        for name in takers:
            assigned[name][key] = value
    return assigned


def load_profile(profile: str, root: Path, check_data: bool = True, overrides: dict[str, Any] | None = None,
                 notebooks: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per notebook, every parameter's final value (defaults, then the profile, then ``overrides``), all checked.

    ``overrides`` (from :func:`read_overrides`) apply to ``notebooks`` (default: all), each one to those that
    have it. Every notebook is checked, not only those being executed. With ``check_data`` the datasets must
    be on disk or downloadable too (checked without writing anything).
    """
    root = Path(root)
    sections = read_profile(profile, root)
    path = profile_path(profile, root)
    notebooks = list(NOTEBOOKS) if not notebooks else list(notebooks)
    unknown = sorted(set(notebooks) - set(NOTEBOOKS))
    if unknown:
        raise ProfileError(f"unknown notebook(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(NOTEBOOKS)}")
    allowed = {name: notebook_parameters(root / source) for name, (source, _) in NOTEBOOKS.items()}
    assigned = assign_overrides(overrides or {}, notebooks, allowed)
    parameters = {}
    for name in NOTEBOOKS:
        section = sections[name]
        unknown = sorted(set(section) - set(allowed[name]) | ({"profile"} & set(section)), key=str)
        if unknown:
            settable = ", ".join(sorted(set(allowed[name]) - {"profile"})) or "none"
            raise ProfileError(f"{path}: unknown parameter(s) {', '.join(map(repr, unknown))} for notebook {name!r}; allowed: {settable}")
        values = {**allowed[name], **section, **assigned.get(name, {}), "profile": profile}
        where = f"{path}: notebook {name!r}" + (f" with {', '.join(f'{key}={value!r}' for key, value in assigned[name].items())}"
                                                if assigned.get(name) else "")
        try:
            check_yaml_values(values, allowed[name])
            if name in STUDIES:
                STUDIES[name].validate(values, check_data=check_data)
        except (ValueError, TypeError, DatasetUnavailableError) as error:
            raise ProfileError(f"{where}: {error}") from None
        parameters[name] = values
    return parameters


def check_environment() -> None:
    """Check the environment variables the notebooks' kernels read, before any kernel starts."""
    from .training import check_environment as check_training_environment

    try:
        check_training_environment()
        executors.check_environment()  # the backend of the kernels' sweeps
        store.check_environment()  # the results directory
        build_options()  # precision and compilation of every run
    except ValueError as error:
        raise ProfileError(str(error)) from None


@contextlib.contextmanager
def profile_environment(profile: str, root: Path) -> Iterator[dict[str, str]]:
    """Within the block, the environment variables of the profile's build options (:data:`BUILD_OPTIONS`)
    that are not set already are set, so that this process and the kernels it starts build every run with
    them; yields those set. On leaving, the environment is as it was (whatever the block set too), so a
    later profile in the same process starts from the same environment.

    Checking, planning and executing a profile run inside it and so see the same configurations.
    """
    content = profile_content(profile, root)
    with mock.patch.dict(os.environ):
        applied = {}
        for key, variable in BUILD_OPTIONS.items():
            value = content.get(key)
            if value is not None and not os.environ.get(variable):
                applied[variable] = os.environ[variable] = str(value).lower() if isinstance(value, bool) else str(value)
        yield applied


def results_directory(root: Path) -> Path:
    """Where the build keeps its records: ``$OPTBENCH_RESULTS_DIR`` if set (:func:`check_environment` refuses an
    empty value), else ``<root>/results``."""
    configured = os.environ.get(RESULTS_VARIABLE)
    return Path(configured).resolve() if configured else Path(root).resolve() / "results"


# ---- execution -------------------------------------------------------------------------------------------

def execute_notebooks(profile: str, root: Path | str = ".", only: list[str] | None = None, log: Callable[[str], None] = print,
                      overrides: dict[str, Any] | None = None, output: Path | str | None = None) -> dict[str, float]:
    """Execute the notebooks (all, or those in ``only``) with ``profile`` and ``overrides``; return seconds per notebook.

    Everything is checked first. ``output`` (one notebook only) writes the executed notebook there instead
    of into the book tree. A failing cell raises :class:`~optbench.execution.ChapterFailed`, Ctrl-C
    :class:`~optbench.execution.Interrupted`; both leave the book tree as it was.
    """
    from . import execution, plan

    root = Path(root).resolve()
    names = list(NOTEBOOKS) if not only else list(dict.fromkeys(only))
    if output is not None and len(names) != 1:
        raise ProfileError(f"--output {str(output)!r} names one executed notebook; give exactly one --notebook "
                           f"(got {len(names)}: {', '.join(names)})")
    # the variables set here (build options, results, progress file, output folder) are for the kernels; none outlives the call
    check_environment()
    with profile_environment(profile, root):
        parameters = load_profile(profile, root, overrides=overrides, notebooks=names)
        results = results_directory(root)
        # the kernels inherit it: a relative or empty value would put records under the kernel's working directory
        os.environ[RESULTS_VARIABLE] = str(results)
        for line in plan.plan_lines(profile, parameters, names, results):
            log(line)
        log_path = execution.new_log_path(root)
        seconds = {}
        with tempfile.TemporaryDirectory() as progress_directory:
            progress_file = Path(progress_directory) / "progress.log"
            # the kernels inherit it: their bars reach this terminal, not the executed notebooks
            os.environ[PROGRESS_FILE_VARIABLE] = str(progress_file)
            with ProgressRelay(progress_file):
                for name in names:
                    source, target = (root / part for part in NOTEBOOKS[name])
                    if output is not None:
                        target = Path(output).resolve()
                        target = target / f"{name}.ipynb" if target.is_dir() else target
                    log(f"executing {source.relative_to(root)} with profile {profile!r} -> {_shown(target, root)}")
                    started = time.perf_counter()
                    # the chapter writes its records' CSV beside it, and hands over to the summary only inside the book
                    os.environ[chapter_results.OUTPUT_DIR_VARIABLE] = str(target.parent)
                    execution.execute_notebook(name, source, target, parameters[name], cwd=root, log_path=log_path)
                    seconds[name] = time.perf_counter() - started
                    log(f"  {name}: {seconds[name]:.1f} s")
    return seconds


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


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
