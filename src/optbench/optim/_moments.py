"""Bookkeeping shared by the Adam-family optimizers (Padam, AdaBelief, AdamScheduledBetas).

These optimizers keep the same per-parameter state (a step count, a first moment ``exp_avg``, a second
moment and, with AMSGrad, its running maximum) and differ only in how they update it. This module holds
the part that is the same, so that each optimizer's module is left with its own update rule:

* checking a parameter group's common hyperparameters (``check_group_hyperparameters``);
* in ``step``, collecting a group's parameters that have gradients together with their lazily created
  state, as the parallel lists that the ``torch._foreach_*`` updates take (``gather_moment_buffers``);
* the multi-tensor arithmetic that the foreach ops lack: writing into reused parameter-sized work buffers
  on CPU (``work_buffers``, ``add_into``, ``sub_into``, ``sqrt_into``) and fractional powers by repeated
  square roots (``power_``). The mixed optimizers (:mod:`.atmo`) and AdaHessian use them too.

The state keys of the second moment and its maximum are the caller's, so that each optimizer keeps the
names its checkpoints were saved with (Padam: ``exp_avg_sq``, AdaBelief: ``exp_avg_var``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import torch

from .registry import check_common_hyperparameters

COMMON_HYPERPARAMETERS = ("lr", "betas", "eps", "weight_decay")


def betas_as_tuple(betas: Sequence[float]) -> Sequence[float]:
    """``betas`` as a tuple if given as a list (a config file gives a list; the registry and the state
    dict keep betas as a tuple)."""
    return tuple(betas) if isinstance(betas, list) else betas


def check_group_hyperparameters(defaults: Mapping[str, Any], param_group: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``param_group`` (the optimizer's ``defaults`` overridden by the group's own), after
    checking its lr, betas, eps and weight_decay (``ValueError`` naming the bad one).

    Meant for ``add_param_group`` before torch appends the group, so a bad group leaves the optimizer
    unchanged.
    """
    settings = {**defaults, **param_group}
    check_common_hyperparameters({key: settings[key] for key in COMMON_HYPERPARAMETERS})
    return settings


@dataclass
class MomentBuffers:
    """One parameter group's parameters that have gradients and their state, as parallel lists."""

    params: list[torch.Tensor] = field(default_factory=list)
    grads: list[torch.Tensor] = field(default_factory=list)
    exp_avgs: list[torch.Tensor] = field(default_factory=list)
    second_moments: list[torch.Tensor] = field(default_factory=list)
    # empty when the caller keeps no AMSGrad maximum
    max_second_moments: list[torch.Tensor] = field(default_factory=list)
    # each parameter's step count, already counting the current step (so the first step is 1)
    steps: list[int] = field(default_factory=list)
    # each parameter's whole state, for entries particular to one optimizer (e.g. running products)
    states: list[dict[str, Any]] = field(default_factory=list)


def gather_moment_buffers(
    optimizer: torch.optim.Optimizer,
    group: Mapping[str, Any],
    *,
    optimizer_name: str,
    second_moment_key: str,
    max_second_moment_key: Optional[str] = None,
    running_products: Optional[Mapping[str, float]] = None,
) -> MomentBuffers:
    """Advance the state of ``group``'s parameters that have gradients by one step and return their buffers.

    A parameter without state gets ``step = 0``, a ``1.0`` for each key of ``running_products`` and zero
    buffers ``exp_avg`` and ``second_moment_key``. With ``max_second_moment_key`` (None: no AMSGrad
    maximum), that zero buffer is created when first missing, so amsgrad can be switched on for a group
    that already has state. Then ``step`` is increased by 1 and each running product is multiplied by its
    factor. Raises ``RuntimeError("<optimizer_name> does not support sparse gradients")`` for a sparse
    gradient. The returned tensors are the state's own (updating them in place updates the state).
    """
    running_products = running_products or {}
    buffers = MomentBuffers()
    for param in group["params"]:
        if param.grad is None:
            continue
        if param.grad.is_sparse:
            raise RuntimeError(f"{optimizer_name} does not support sparse gradients")
        state = optimizer.state[param]
        if not state:
            state["step"] = 0
            for key in running_products:
                state[key] = 1.0
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state[second_moment_key] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if max_second_moment_key is not None and max_second_moment_key not in state:
            state[max_second_moment_key] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["step"] += 1
        for key, factor in running_products.items():
            state[key] *= factor
        buffers.params.append(param)
        buffers.grads.append(param.grad)
        buffers.exp_avgs.append(state["exp_avg"])
        buffers.second_moments.append(state[second_moment_key])
        if max_second_moment_key is not None:
            buffers.max_second_moments.append(state[max_second_moment_key])
        buffers.steps.append(state["step"])
        buffers.states.append(state)
    return buffers


def work_buffers(cache: dict, params: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """Parameter-sized scratch tensors kept across steps on CPU, or None elsewhere.

    Fresh CPU memory costs page faults at every step (on ResNet-18 an allocating foreach add takes about 3×
    the time of an in-place one); CUDA's caching allocator makes temporaries free, and there one foreach op
    beats a per-tensor loop of ``out=`` calls.
    """
    if not all(p.device.type == "cpu" for p in params):
        return None
    return [cache[p] if p in cache else cache.setdefault(p, torch.empty_like(p)) for p in params]


def add_into(buffers, tensors, others, alpha: float) -> list[torch.Tensor]:
    """tensors + alpha·others, written into ``buffers`` when given (no foreach op takes an output)."""
    if buffers is None:
        return torch._foreach_add(tensors, others, alpha=alpha)
    for out, tensor, other in zip(buffers, tensors, others):
        torch.add(tensor, other, alpha=alpha, out=out)
    return buffers


def sub_into(buffers, tensors, others) -> list[torch.Tensor]:
    """tensors − others, written into ``buffers`` when given (``buffers`` may be ``tensors`` itself)."""
    if buffers is None:
        return torch._foreach_sub(tensors, others)
    for out, tensor, other in zip(buffers, tensors, others):
        torch.sub(tensor, other, out=out)
    return buffers


def sqrt_into(buffers, tensors) -> list[torch.Tensor]:
    """Elementwise square roots, written into ``buffers`` when given."""
    if buffers is None:
        return torch._foreach_sqrt(tensors)
    for out, tensor in zip(buffers, tensors):
        torch.sqrt(tensor, out=out)
    return buffers


def square_root_count(exponent: float) -> int | None:
    """k when x^exponent is k square roots (exponent = 2^-k, k = 0..4), else None (a general power)."""
    for count in range(5):
        if exponent == 0.5**count:
            return count
    return None


def power_(tensors: list[torch.Tensor], exponent: float) -> None:
    """x ← x^exponent in place; 1/2, 1/4, 1/8, 1/16 by repeated square roots, several times cheaper than pow."""
    count = square_root_count(exponent)
    if count is None:
        torch._foreach_pow_(tensors, exponent)
    else:
        for _ in range(count):
            torch._foreach_sqrt_(tensors)
