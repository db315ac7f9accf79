"""The optimizer registry: one name, one factory, one set of defaults.

``make_optimizer("adam", model.parameters(), lr=1e-3)`` builds any optimizer of the studies with
hyperparameter names as in torch.optim (``lr``, ``betas``, ``eps``, ``weight_decay``, ``momentum``).
Unknown names and hyperparameters, and invalid values, raise ``ValueError`` naming the bad value and
what is allowed, before any parameter is touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from ..checks import check_finite


@dataclass(frozen=True)
class OptimizerSpec:
    """How to build one registered optimizer."""

    name: str
    factory: Callable[..., torch.optim.Optimizer]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: hyperparameters accepted besides ``defaults``
    extra_hyperparameters: tuple[str, ...] = ()
    #: for a wrapper (Lookahead): the hyperparameter naming the inner registered optimizer, which receives
    #: and checks every hyperparameter the wrapper does not own
    wraps: str | None = None


_REGISTRY: dict[str, OptimizerSpec] = {}


def register(
    name: str,
    factory: Callable[..., torch.optim.Optimizer],
    defaults: dict[str, Any],
    description: str = "",
    extra_hyperparameters: Iterable[str] = (),
    wraps: str | None = None,
) -> None:
    """Register ``factory(params, **hyperparameters)`` under ``name`` with its default hyperparameters."""
    if name in _REGISTRY:
        raise ValueError(f"optimizer {name!r} is already registered")
    if wraps is not None and wraps not in defaults:
        raise ValueError(f"wrapper {name!r} must have a default for {wraps!r}, the inner optimizer's name")
    _REGISTRY[name] = OptimizerSpec(name, factory, dict(defaults), description, tuple(extra_hyperparameters), wraps)


def available() -> list[str]:
    """Names of every registered optimizer, sorted."""
    return sorted(_REGISTRY)


def spec(name: str) -> OptimizerSpec:
    """The registered spec of ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def default_hyperparameters(name: str) -> dict[str, Any]:
    """A copy of the defaults of optimizer ``name``."""
    return dict(spec(name).defaults)


def resolve_hyperparameters(name: str, **hyperparameters: Any) -> dict[str, Any]:
    """Defaults of ``name`` updated with ``hyperparameters``, after checking names and common values.

    Checks every value that several optimizers share (every number finite; ``lr`` > 0; ``momentum`` and each
    beta in [0, 1); ``dampening`` in [0, 1]; ``eps`` and ``weight_decay`` ≥ 0); the optimizers check their
    own parameters in their constructors (torch.optim's included), which :class:`~optbench.config.RunConfig`
    runs on a dummy tensor before anything trains.
    """
    known = spec(name)
    allowed = set(known.defaults) | set(known.extra_hyperparameters)
    if known.wraps is not None:
        inner = hyperparameters.get(known.wraps, known.defaults[known.wraps])
        if inner == name or inner not in _REGISTRY:
            others = ", ".join(other for other in available() if other != name)
            raise ValueError(f"invalid {known.wraps} {inner!r} for optimizer {name!r}; available: {others}")
        own = {key: value for key, value in hyperparameters.items() if key in allowed}
        forwarded = {key: value for key, value in hyperparameters.items() if key not in allowed}
        # the inner optimizer's completed defaults join the configuration, so equal runs get equal ids
        return {**known.defaults, **own, **resolve_hyperparameters(inner, **forwarded)}
    unknown = sorted(set(hyperparameters) - allowed)
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for optimizer {name!r}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    resolved = {**known.defaults, **hyperparameters}
    try:
        check_common_hyperparameters(resolved)
    except ValueError as error:
        raise ValueError(f"{error} (optimizer {name!r})") from None
    return resolved


#: ranges of hyperparameters that several optimizers share: name → (lowest, highest, highest included, as said)
SHARED_RANGES = {
    "momentum": (0.0, 1.0, False, "in [0, 1)"),
    "dampening": (0.0, 1.0, True, "in [0, 1]"),
    "eps": (0.0, math.inf, False, ">= 0"),
    "weight_decay": (0.0, math.inf, False, ">= 0"),
}


def is_number(value: Any) -> bool:
    """An int or a float (a bool is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_betas(betas) -> None:
    """Raise ``ValueError`` unless ``betas`` is a pair of numbers in [0, 1)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"invalid betas {betas!r}: betas must be a pair (beta1, beta2) in [0, 1)")
    for index, beta in enumerate(betas):
        if not is_number(beta) or not 0.0 <= beta < 1.0:
            raise ValueError(f"invalid betas[{index}] {beta!r}: each beta must lie in [0, 1)")


def check_common_hyperparameters(hyperparameters: dict[str, Any]) -> None:
    """Raise ``ValueError`` for a non-finite number, or an invalid lr, momentum, dampening, eps, weight decay or betas.

    Every optimizer that has one of these gets the same check, before its constructor's own (torch.optim's
    checks among them) runs.
    """
    for key, value in hyperparameters.items():
        check_finite(key, value)
    if "lr" in hyperparameters:
        lr = hyperparameters["lr"]
        if not is_number(lr) or not lr > 0:
            raise ValueError(f"invalid lr {lr!r}: the learning rate must be a number > 0")
    for key, (lowest, highest, highest_included, allowed) in SHARED_RANGES.items():
        if key in hyperparameters:
            value = hyperparameters[key]
            if not is_number(value) or not (lowest <= value and (value <= highest if highest_included else value < highest)):
                raise ValueError(f"invalid {key} {value!r}: {key} must be a number {allowed}")
    if "betas" in hyperparameters:
        check_betas(hyperparameters["betas"])


def make_optimizer(name: str, params, **hyperparameters: Any) -> torch.optim.Optimizer:
    """Build registered optimizer ``name`` over ``params`` with its defaults updated by ``hyperparameters``."""
    resolved = resolve_hyperparameters(name, **hyperparameters)
    if "betas" in resolved:
        resolved["betas"] = tuple(resolved["betas"])
    return spec(name).factory(params, **resolved)

