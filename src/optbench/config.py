"""A run configuration: everything that determines a run's result, with a stable id."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import data, models, optim
from .checks import check_finite

SCHEDULERS = ("none", "multistep", "cosine")
INITS = ("default", "metainit")
#: "bf16" runs forward passes under torch.autocast to bfloat16 (CUDA, or the CPU's own autocast)
PRECISIONS = ("fp32", "bf16")
_SCHEDULER_OPTIONS = {"none": (), "multistep": ("milestones", "gamma"), "cosine": ("eta_min",)}


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text (and equal hashes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


@dataclass(frozen=True)
class RunConfig:
    """One training run. ``hyperparameters`` are completed with the optimizer's registered defaults.

    ``validation_fraction`` > 0 holds out that stratified fraction of the training set (a fixed split,
    the same for every seed) and evaluates on it instead of the test set, for hyperparameter selection.
    ``max_train_examples`` trains on a fixed subset (the same for every seed), for quick profiles.
    ``num_folds`` and ``fold`` (both or neither) train on every part of a stratified ``num_folds``-fold split
    of the training examples but part ``fold`` (counted from 0), and evaluate on that held-out part instead
    of the test set, for cross-validation; the split is fixed, the same for every seed, and taken after
    ``max_train_examples``. ``metainit_steps`` sets MetaInit's steps with ``init="metainit"`` (None: the
    default of :func:`optbench.metainit.metainit`). These three enter the run id only when set, so the ids of
    other runs do not change.

    ``precision`` "bf16" runs every forward pass (training, evaluation, SVRG's full gradient) under
    ``torch.autocast`` to bfloat16 on the run's device, the loss in float32. On a CPU it is allowed and
    uses the CPU's autocast (so a bf16 profile can be checked anywhere), though it runs slower than fp32
    on CPUs without bfloat16 instructions. ``compile_model`` compiles the model with ``torch.compile`` (on a CPU this needs a C++
    compiler; not with optimizers that backpropagate through their gradients, such as AdaHessian). Both
    change a run's numbers, so both are part of the configuration. Left unset (None) in code, both take the
    build's options (:func:`build_options`: ``$OPTBENCH_PRECISION``, ``$OPTBENCH_COMPILE_MODEL``, which a
    profile's top-level ``precision`` and ``compile_model`` keys set), so one switch applies to every run of
    every chapter; compilation then skips the optimizers that cannot be compiled. A configuration read from a
    dict (:meth:`from_dict`: a stored record, a worker's task) is complete as it is: an absent late setting
    has its default there, whatever the build's options.

    The id hashes :meth:`to_dict`. Settings added after records existed (:data:`LATE_SETTINGS`) appear in
    it only when they differ from their default, so every configuration made before they were added keeps
    its id, and its stored records and checkpoints stay valid.
    """

    optimizer: str
    num_epochs: int
    dataset: str = "digits"
    image_size: int | None = None
    model: str = "resnet18"
    model_options: dict = field(default_factory=dict)
    hyperparameters: dict = field(default_factory=dict)
    scheduler: str = "none"
    scheduler_options: dict = field(default_factory=dict)
    batch_size: int = 128
    seed: int = 0
    augment: bool = False
    validation_fraction: float = 0.0
    max_train_examples: int | None = None
    init: str = "default"
    num_folds: int | None = None
    fold: int | None = None
    metainit_steps: int | None = None
    precision: str | None = None
    compile_model: bool | None = None

    def __post_init__(self):
        options = build_options()
        if self.precision is None:
            object.__setattr__(self, "precision", options["precision"])
        if self.compile_model is None:
            object.__setattr__(self, "compile_model", options["compile_model"] and not _needs_double_backward(self))
        self.validate()
        resolved = optim.resolve_hyperparameters(self.optimizer, **self.hyperparameters)
        object.__setattr__(self, "hyperparameters", _jsonable(resolved))
        object.__setattr__(self, "model_options", _jsonable(dict(self.model_options)))
        object.__setattr__(self, "scheduler_options", _jsonable(dict(self.scheduler_options)))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value and what is allowed."""
        data.check_dataset_name(self.dataset)
        models.check_model_options(self.model, dict(self.model_options))
        _positive_int("num_epochs", self.num_epochs)
        _positive_int("batch_size", self.batch_size)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"invalid seed {self.seed!r}: the seed must be an integer >= 0")
        if self.image_size is not None and (not isinstance(self.image_size, int) or isinstance(self.image_size, bool) or self.image_size < 4):
            raise ValueError(f"invalid image_size {self.image_size!r}: give an integer >= 4, or None for the dataset's own size")
        if self.max_train_examples is not None:
            _positive_int("max_train_examples", self.max_train_examples)
        if not isinstance(self.validation_fraction, (int, float)) or not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"invalid validation_fraction {self.validation_fraction!r}: it must lie in [0, 1)")
        if not isinstance(self.augment, bool):
            raise ValueError(f"invalid augment {self.augment!r}: it must be true or false")
        self._validate_fold()
        if self.precision not in PRECISIONS:
            raise ValueError(f"invalid precision {self.precision!r}: allowed {', '.join(PRECISIONS)}")
        if not isinstance(self.compile_model, bool):
            raise ValueError(f"invalid compile_model {self.compile_model!r}: it must be true or false")
        if self.init not in INITS:
            raise ValueError(f"invalid init {self.init!r}: allowed {', '.join(INITS)}")
        if self.metainit_steps is not None:
            _positive_int("metainit_steps", self.metainit_steps)
            if self.init != "metainit":
                raise ValueError(f"invalid metainit_steps {self.metainit_steps!r} with init {self.init!r}: MetaInit's steps "
                                 "need init 'metainit'; leave metainit_steps unset")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; available: {', '.join(SCHEDULERS)}")
        unknown = sorted(set(self.scheduler_options) - set(_SCHEDULER_OPTIONS[self.scheduler]))
        if unknown:
            allowed = ", ".join(_SCHEDULER_OPTIONS[self.scheduler]) or "none"
            raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for scheduler {self.scheduler!r}; allowed: {allowed}")
        if self.scheduler == "multistep":
            milestones = self.scheduler_options.get("milestones")
            if not isinstance(milestones, (list, tuple)) or not all(isinstance(m, int) and m > 0 for m in milestones):
                raise ValueError(f"invalid milestones {milestones!r}: multistep needs a list of positive epoch numbers")
        if self.scheduler != "none" and "lr" not in optim.resolve_hyperparameters(self.optimizer, **self.hyperparameters):
            raise ValueError(f"invalid scheduler {self.scheduler!r} for optimizer {self.optimizer!r}: it has no lr to schedule; use scheduler 'none'")
        # building the optimizer on a dummy tensor runs its own checks (p ranges, mixing weights, ...)
        import torch

        optimizer = optim.make_optimizer(self.optimizer, [torch.nn.Parameter(torch.zeros(1))], **self.hyperparameters)
        if self.compile_model and getattr(optimizer, "create_graph", False):
            raise ValueError(
                f"invalid compile_model True for optimizer {self.optimizer!r}: it backpropagates through its "
                "gradients (Hessian-vector products), which torch.compile does not support; use compile_model false"
            )
        # what no check above covers (a width of inf is > 0): every number of a run is finite
        for item in fields(self):
            check_finite(item.name, getattr(self, item.name))

    def _validate_fold(self) -> None:
        if self.num_folds is None and self.fold is None:
            return
        if not isinstance(self.num_folds, int) or isinstance(self.num_folds, bool) or self.num_folds < 2:
            raise ValueError(f"invalid num_folds {self.num_folds!r}: cross-validation needs an integer number of folds >= 2")
        if not isinstance(self.fold, int) or isinstance(self.fold, bool) or not 0 <= self.fold < self.num_folds:
            raise ValueError(f"invalid fold {self.fold!r}: give the held-out fold, an integer from 0 to {self.num_folds - 1}")
        if self.validation_fraction:
            raise ValueError(f"invalid validation_fraction {self.validation_fraction!r} with num_folds {self.num_folds}: a run "
                             "holds out either a fold or a validation fraction; set validation_fraction to 0")

    def to_dict(self) -> dict:
        """The settings as JSON-ready values, without late settings that have their default (see the class)."""
        values = _jsonable(asdict(self))
        for name, default in LATE_SETTINGS.items():
            if values[name] == default:
                del values[name]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown run setting(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(known))}")
        return cls(**{**LATE_SETTINGS, **values})

    @property
    def run_id(self) -> str:
        """``<optimizer>-<12 hex digits of the configuration's hash>``: equal configurations, equal ids."""
        digest = hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()
        return f"{self.optimizer}-{digest[:12]}"


#: settings added after the first records, with their defaults: left out of :meth:`RunConfig.to_dict`
#: (and so of the hashed configuration) while they have these values, so that existing run ids never change.
#: A setting added later joins this table with the default that reproduces the old behaviour.
LATE_SETTINGS: dict[str, Any] = {"precision": "fp32", "compile_model": False, "num_folds": None, "fold": None, "metainit_steps": None}


#: the build's options: environment variables that set a late setting of every run made in code
BUILD_OPTION_VARIABLES = {"precision": "OPTBENCH_PRECISION", "compile_model": "OPTBENCH_COMPILE_MODEL"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def build_options() -> dict[str, Any]:
    """``precision`` and ``compile_model`` of the build, from their environment variables (fp32 and False when
    unset); ``ValueError`` naming a bad value and what is allowed."""
    precision = os.environ.get(BUILD_OPTION_VARIABLES["precision"]) or LATE_SETTINGS["precision"]
    if precision not in PRECISIONS:
        raise ValueError(f"invalid {BUILD_OPTION_VARIABLES['precision']} {precision!r}: allowed {', '.join(PRECISIONS)}")
    compile_text = os.environ.get(BUILD_OPTION_VARIABLES["compile_model"], "").strip().lower()
    if compile_text not in _TRUE + _FALSE:
        raise ValueError(f"invalid {BUILD_OPTION_VARIABLES['compile_model']} {compile_text!r}: allowed "
                         f"{', '.join(repr(text) for text in _TRUE)} or {', '.join(repr(text) for text in _FALSE[1:])}")
    return {"precision": precision, "compile_model": compile_text in _TRUE}


def _needs_double_backward(config: "RunConfig") -> bool:
    import torch

    try:
        optimizer = optim.make_optimizer(config.optimizer, [torch.nn.Parameter(torch.zeros(1))], **config.hyperparameters)
    except (ValueError, TypeError):
        return False  # validate() names the bad value
    return bool(getattr(optimizer, "create_graph", False))


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"invalid {name} {value!r}: {name} must be an integer > 0")
