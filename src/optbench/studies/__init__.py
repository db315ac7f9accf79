"""The studies of the book, registered in one place that the executor, the command line and the tests read.

A study is one module of this package and one notebook, ``notebooks/<name>.md``. Its module defines

- ``Settings``, a dataclass of the notebook's parameters (without ``profile``): its defaults equal the
  notebook's ``parameters`` cell (a test checks), and it raises ``ValueError`` naming a bad value;
- the groups of runs it trains, built from ``Settings`` (so every configuration is checked before
  anything trains);
- its claims, each decided by :mod:`optbench.verdicts`;
- ``STUDY = Study(...)``, listed in :data:`STUDIES` below.

The notebook ends by handing its claims, workloads and runs to the summary and the appendices
(:func:`optbench.chapter_results.hand_over`).

Adding a chapter touches this list, the new module and notebook, ``_toc.yml`` and its profiles' sections;
the executor, the command line and the book tests find it here. ``CONTRIBUTING.md`` gives the chapter
conventions, with study 1 (:mod:`.optimizer_comparison`) as the worked example.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from ..config import RunConfig


@dataclass(frozen=True)
class Study:
    """What the book needs to know of a study chapter."""

    #: the notebook's name: ``notebooks/<name>.md``, executed into ``book/studies/<name>.ipynb``
    name: str
    #: the prefix of the chapter's labels (``fig-<prefix>-...``, ``tbl-<prefix>-...``, glued ``<prefix>-...``)
    prefix: str
    title: str
    #: the source reports it reproduces (file-name prefixes in the seeds: "000", "004", ...)
    reports: tuple[str, ...]
    #: the question the chapter answers, for the book's table of chapters
    question: str
    settings: type
    #: every configuration the chapter trains that is known before training (runs chosen by a selection
    #: step are not), for validation and for the plan of a build
    planned_runs: Callable[[Any], list[RunConfig]]
    #: labels of the figures and tables the chapter must show, and the ids of the claims it decides
    figures: tuple[str, ...]
    tables: tuple[str, ...]
    claims: tuple[str, ...]

    @property
    def claims_table(self) -> str:
        """The label of the chapter's claim table."""
        return f"tbl-{self.prefix}-claims"

    @property
    def source(self) -> str:
        return f"notebooks/{self.name}.md"

    @property
    def executed(self) -> str:
        return f"book/studies/{self.name}.ipynb"

    def settings_from(self, parameters: dict) -> Any:
        """The study's ``Settings`` from notebook parameters (``profile`` and unknown names are the profile loader's concern)."""
        names = {item.name for item in dataclasses.fields(self.settings)}
        return self.settings(**{key: value for key, value in parameters.items() if key in names})

    def validate(self, parameters: dict, check_data: bool = True) -> None:
        """Raise ``ValueError`` (or :class:`~optbench.data.DatasetUnavailableError`) for parameters the study rejects.

        Every number must be finite; then it builds the settings and every planned configuration; with ``check_data`` the datasets must be on
        disk or downloadable too.
        """
        from .. import data
        from ..checks import check_finite

        for name, value in parameters.items():
            check_finite(name, value)
        settings = self.settings_from(parameters)
        configs = self.planned_runs(settings)
        if check_data:
            for dataset in sorted({config.dataset for config in configs}):
                data.ensure_available(dataset)


def _registered() -> dict[str, Study]:
    from . import hybrid_second_order, optimizer_comparison, padam_partial_adaptivity, variance_reduction

    studies = (optimizer_comparison.STUDY, padam_partial_adaptivity.STUDY, hybrid_second_order.STUDY, variance_reduction.STUDY)
    return {study.name: study for study in studies}


#: every study chapter, in the book's order
STUDIES: dict[str, Study] = _registered()


def study(name: str) -> Study:
    """The registered study ``name``; ``ValueError`` listing the known ones otherwise."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; available: {', '.join(STUDIES)}")
    return STUDIES[name]
