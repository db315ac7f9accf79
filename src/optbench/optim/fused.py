"""Fused updates: a whole Padam, ATMO or PADAM-SGD step compiled by ``torch.compile`` into one pass.

With ``fused=True`` (the flag torch.optim's Adam has for the same purpose) these optimizers hand each step
to a kernel that reads every state tensor once and writes each result once. Their foreach updates cannot
do that: each ``torch._foreach_*`` op is a pass over parameter-sized memory, and the updates need 9–12
passes where torch's foreach Adam needs 7, and a large model's step is bound by memory traffic
(``benchmarks/optimizer_step.py`` times both paths against torch's foreach and fused Adam). The
arithmetic is the same as the foreach path's (the state dict too, so a run can switch between the two),
and one step agrees with it to float32 rounding, not bit for bit. Over a training run such differences
can grow (a ReLU or a max-pool that flips changes the next gradient by a finite amount), as with any
change of rounding, which is why ``fused`` enters a run's configuration when given.

Costs and requirements:

* the first step compiles (about a minute for ResNet-18 on 2 CPU cores, seconds for small networks);
  inductor keeps the kernels in its on-disk cache, so later processes start faster. A network of other
  shapes compiles again; after torch's recompile limit (8) steps fall back to uncompiled code.
* on CPU inductor needs a C++ compiler (``$CXX``, ``g++``, ``c++`` or ``clang++``): without one,
  :func:`check_fused` refuses ``fused=True`` when the optimizer is built, before any training starts.
* every parameter of a group must have the same device and floating dtype.

Per-step numbers (step sizes, mixing weights, p) enter as tensor arguments, so changing them between
steps (bias corrections, schedulers) does not recompile.
"""

from __future__ import annotations

import functools
import os
import shutil
from typing import Callable

import torch

from ._moments import square_root_count

COMPILERS = ("g++", "c++", "clang++")


def cpp_compiler() -> str | None:
    """The C++ compiler inductor would find for CPU kernels (``$CXX`` first), or None."""
    candidates = ([os.environ["CXX"]] if os.environ.get("CXX") else []) + list(COMPILERS)
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def check_fused(fused, param_group: dict) -> None:
    """Check ``fused`` for ``param_group`` before ``add_param_group`` appends it.

    ``ValueError`` unless ``fused`` is a bool, or if a fused group mixes devices or dtypes;
    ``RuntimeError`` if CPU parameters have no C++ compiler to compile for. An iterator in
    ``param_group["params"]`` is replaced by a list (as torch's ``add_param_group`` does), so that the
    check does not spend it.
    """
    if not isinstance(fused, bool):
        raise ValueError(f"invalid fused {fused!r}: fused must be True or False")
    if isinstance(param_group["params"], torch.Tensor):
        params = [param_group["params"]]
    else:
        params = param_group["params"] = list(param_group["params"])
    if not fused or not params:
        return
    mismatch = _mixed_devices_or_dtypes(params)
    if mismatch:
        raise ValueError(mismatch)
    if any(p.device.type == "cpu" for p in params) and cpp_compiler() is None:
        raise RuntimeError(
            "fused=True compiles the update with torch.compile, which needs a C++ compiler for CPU "
            f"parameters; none of $CXX, {', '.join(COMPILERS)} was found. Install one or use fused=False"
        )


def _partial_power(base: torch.Tensor, exponent: torch.Tensor, square_roots: int | None) -> torch.Tensor:
    if square_roots is None:
        return base.pow(exponent)
    for _ in range(square_roots):
        base = base.sqrt()
    return base


def _adaptive_direction(decayed, exp_avg, exp_avg_sq, max_exp_avg_sq, scalars, square_roots):
    """m ← β1·m + (1−β1)·d, v ← β2·v + (1−β2)·d², v̂ ← max(v̂, v); return m / (sqrt(v̂) + eps)^exponent.

    ``scalars`` = (1−β1, β2, 1−β2, eps, exponent, ...); ``max_exp_avg_sq`` None: no AMSGrad maximum.
    """
    exp_avg.lerp_(decayed, scalars[0])
    exp_avg_sq.mul_(scalars[1]).add_(decayed * decayed * scalars[2])
    second_moment = exp_avg_sq
    if max_exp_avg_sq is not None:
        max_exp_avg_sq.copy_(torch.maximum(max_exp_avg_sq, exp_avg_sq))
        second_moment = max_exp_avg_sq
    return exp_avg / _partial_power(second_moment.sqrt() + scalars[3], scalars[4], square_roots)


def _padam_kernel(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step_sizes, scalars, *,
                  square_roots: int | None, weight_decay: bool):
    """θ ← θ + step_size_i · m/(sqrt(v̂)+eps)^(2p); scalars = (1−β1, β2, 1−β2, eps, 2p, wd)."""
    for index, param in enumerate(params):
        decayed = grads[index] + param * scalars[5] if weight_decay else grads[index]
        maximum = max_exp_avg_sqs[index] if max_exp_avg_sqs else None
        direction = _adaptive_direction(decayed, exp_avgs[index], exp_avg_sqs[index], maximum, scalars, square_roots)
        param.add_(direction * step_sizes[index])


def _mixed_kernel(params, grads, momentum_averages, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, scalars, *,
                  square_roots: int | None):
    """An ATMO or PADAM-SGD step (see :mod:`.atmo`) with the adaptive branch on (λ_A > 0):

    a ← a + (1−μ)·(d − a);  θ ← θ + c_S·a + c_A·m/(sqrt(v̂)+eps)^(2p), with
    scalars = (1−β1, β2, 1−β2, eps, 2p, wd, 1−μ, c_S, c_A). ATMO passes eps·sqrt(bc2) as eps, p = 1/2 and its
    sqrt(bc2) inside c_A, which is its m/(sqrt(v̂)/sqrt(bc2) + eps).
    """
    for index, param in enumerate(params):
        decayed = grads[index] + param * scalars[5]
        momentum_averages[index].lerp_(decayed, scalars[6])
        maximum = max_exp_avg_sqs[index] if max_exp_avg_sqs else None
        direction = _adaptive_direction(decayed, exp_avgs[index], exp_avg_sqs[index], maximum, scalars, square_roots)
        param.add_(momentum_averages[index] * scalars[7] + direction * scalars[8])


@functools.cache
def _compiled(kernel: Callable) -> Callable:
    # dynamic=False: one model's shapes never change, and static shapes give the simplest kernels
    return torch.compile(kernel, fullgraph=True, dynamic=False)


def _scalar_tensor(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _mixed_devices_or_dtypes(params: list[torch.Tensor]) -> str | None:
    """What stops one kernel from taking ``params`` (not one device and one floating dtype), or None."""
    first = params[0]
    for param in params:
        if param.device != first.device or param.dtype != first.dtype or not param.is_floating_point():
            return (
                f"fused=True needs every parameter of a group on one device with one floating dtype; "
                f"found {first.dtype} on {first.device} and {param.dtype} on {param.device}"
            )
    return None


def _check_uniform(params: list[torch.Tensor]) -> None:
    # parameters moved after the optimizer was built are only seen here
    mismatch = _mixed_devices_or_dtypes(params)
    if mismatch:
        raise RuntimeError(mismatch)


def padam_update(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step_sizes: list[float], *,
                 beta1: float, beta2: float, eps: float, exponent: float, weight_decay: float) -> None:
    """One fused Padam update in place (``max_exp_avg_sqs`` empty: no AMSGrad maximum)."""
    _check_uniform(params)
    like = params[0]
    scalars = _scalar_tensor([1.0 - beta1, beta2, 1.0 - beta2, eps, exponent, weight_decay], like)
    _compiled(_padam_kernel)(
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, _scalar_tensor(step_sizes, like), scalars,
        square_roots=square_root_count(exponent), weight_decay=weight_decay != 0,
    )


def mixed_update(params, grads, momentum_averages, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, momentum: float,
                 beta1: float, beta2: float, eps: float, exponent: float, weight_decay: float,
                 sgd_coefficient: float, adam_coefficient: float) -> None:
    """One fused ATMO/PADAM-SGD update in place, λ_A > 0 (``max_exp_avg_sqs`` empty: no max).

    ``eps`` and ``adam_coefficient`` are the step's (:meth:`~.atmo.MomentMixedOptimizer.adaptive_form`):
    they change every step without recompiling.
    """
    _check_uniform(params)
    scalars = _scalar_tensor(
        [1.0 - beta1, beta2, 1.0 - beta2, eps, exponent, weight_decay, 1.0 - momentum, sgd_coefficient,
         adam_coefficient],
        params[0],
    )
    _compiled(_mixed_kernel)(
        params, grads, momentum_averages, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, scalars,
        square_roots=square_root_count(exponent),
    )

