"""The book's citations: which entry of the bibliography (``book/references.bib``) stands behind each source
report, optimizer, network and dataset, and the MyST role that cites them.

Chapters cite with ``{cite:t}`key``` (“Wu and Wu (2023)”) or ``{cite:p}`key``` (“(Wu and Wu, 2023)”) in their
text, and generated tables with :func:`cite`. A test checks that every key named here is in the
bibliography and that every registered optimizer and network has one.
"""

from __future__ import annotations

from typing import Iterable

#: the bibliography, relative to the repository root (``_config.yml``'s ``bibtex_bibfiles``)
BIBLIOGRAPHY = "book/references.bib"

#: source report (file-name prefix in the seeds) → its entry
REPORTS = {"000": "report000", "001": "report001", "002": "report002", "003": "report003", "004": "report004"}

#: registry name → the papers (or report) that define the optimizer
OPTIMIZERS = {
    "sgd": ("robbins1951", "polyak1964", "sutskever2013"),
    "adam": ("kingma2015",),
    "adamw": ("loshchilov2019",),
    "nadam": ("dozat2016",),
    "amsgrad": ("reddi2018",),
    "padam": ("chen2020",),
    "radam": ("liu2020",),
    "adabelief": ("zhuang2020",),
    "lookahead": ("zhang2019",),
    "adam_scheduled_betas": ("report004",),
    "adagrad": ("duchi2011",),
    "rmsprop": ("tieleman2012",),
    "atmo": ("landro2021",),
    "padam_sgd": ("landro2021", "chen2020"),
    "adasgd": ("report002", "yao2021"),
    "adahessian": ("yao2021",),
    "svrg": ("johnson2013",),
    "storm": ("cutkosky2019",),
}

#: network → the papers that define it
MODELS = {
    "resnet18": ("he2016", "ioffe2015"),
    "resnet34": ("he2016", "ioffe2015"),
    "resnet50": ("he2016", "ioffe2015"),
    "resnet101": ("he2016", "ioffe2015"),
    "vgg16": ("simonyan2015", "ioffe2015"),
    "wideresnet": ("zagoruyko2016",),
    "lenet5": ("lecun1998",),
    "mlp": ("rumelhart1986",),
}

#: dataset → its source
DATASETS = {
    "digits": ("alpaydin1998", "pedregosa2011"),
    "mnist": ("lecun1998",),
    "fashion_mnist": ("xiao2017",),
    "cifar10": ("krizhevsky2009",),
    "cifar100": ("krizhevsky2009",),
}

#: methods and tools the book uses
METHODS = {
    "pytorch": ("paszke2019",),
    "scikit-learn": ("pedregosa2011",),
    "metainit": ("dauphin2019",),
    "performance profiles": ("dolan2002", "dahl2023"),
    "bootstrap": ("efron1979",),
    "welch": ("welch1947",),
    "bonferroni": ("dunn1961",),
    "equivalence": ("schuirmann1987",),
    "colours": ("okabe2008",),
}


def cite(keys: Iterable[str], textual: bool = False) -> str:
    """The MyST role citing ``keys``: parenthetical ``(A, 2020; B, 2021)``, or ``A (2020)`` with ``textual``."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise ValueError("cite needs at least one bibliography key")
    return f"{{cite:{'t' if textual else 'p'}}}`{','.join(keys)}`"


def cite_report(report: str, textual: bool = False) -> str:
    """The role citing source report ``report`` ("000" … "004")."""
    if report not in REPORTS:
        raise ValueError(f"unknown report {report!r}; the book's reports: {', '.join(REPORTS)}")
    return cite([REPORTS[report]], textual)


def all_keys() -> set[str]:
    """Every key this module names."""
    tables = (REPORTS, OPTIMIZERS, MODELS, DATASETS, METHODS)
    return {key for table in tables for value in table.values() for key in ((value,) if isinstance(value, str) else value)}
