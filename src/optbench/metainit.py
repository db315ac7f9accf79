"""MetaInit (Dauphin & Schoenholz, "MetaInit: Initializing learning by learning to initialize", NeurIPS 2019).

MetaInit rescales the weight tensors of a freshly initialized network so that training starts where the
loss looks locally linear. It measures that with the gradient quotient over all N parameters,

    GQ = (1/N)·Σ_i |(g − Hg)_i / (g_i + ε·sgn(g_i)) − 1|,   sgn(0) = +1,

where g − Hg is the first-order Taylor expansion of the gradient after a unit gradient step, g(θ − g), and
Hg comes from a double backward. It then runs sign-gradient descent with momentum on the norm of each
weight tensor W with dim ≥ 2 (biases and norm-layer scales stay as they are), on random N(0, 1) inputs
with random labels, the model in eval mode:

    n = ‖W‖,  s = sign(⟨W, ∂GQ/∂W⟩ / n),  memory ← momentum·memory − lr·s,  W ← W·(n + memory)/n.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def gradient_quotient(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    eps: float = 1e-5,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> torch.Tensor:
    """The gradient quotient of ``loss_fn(model(inputs), targets)`` over the parameters that require grad.

    Returns a scalar that stays differentiable with respect to the parameters (MetaInit descends on it).
    The model's train/eval mode is the caller's business.
    """
    if not eps > 0.0:
        raise ValueError(f"invalid eps {eps!r}: eps must be > 0")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("gradient_quotient needs a model with parameters that require grad")
    loss = loss_fn(model(inputs), targets)
    gradients = torch.autograd.grad(loss, params, create_graph=True)
    # Hg = ∂(½‖g‖²)/∂θ: one more backward through the gradient graph
    half_squared_norm = sum((gradient * gradient).sum() for gradient in gradients) / 2
    hessian_gradients = torch.autograd.grad(half_squared_norm, params, create_graph=True)
    total = 0.0
    for gradient, hessian_gradient in zip(gradients, hessian_gradients):
        # damping with the sign of g (sgn 0 = +1) keeps the denominator away from 0 without flipping its sign
        damping = eps * (2.0 * (gradient >= 0).to(gradient.dtype) - 1.0).detach()
        quotient = (gradient - hessian_gradient) / (gradient + damping) - 1.0
        total = total + quotient.abs().sum()
    return total / sum(p.numel() for p in params)


def metainit(
    model: nn.Module,
    input_shape: Sequence[int],
    num_classes: int,
    steps: int = 200,
    lr: float = 0.1,
    momentum: float = 0.9,
    eps: float = 1e-5,
    batch_size: int = 32,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> list[float]:
    """Rescale ``model``'s weight tensors (dim ≥ 2) in place by MetaInit; return GQ at each of the ``steps``.

    ``input_shape`` is the shape of one example (e.g. ``(3, 32, 32)``); each step draws a fresh batch of
    ``batch_size`` N(0, 1) inputs and uniform random labels in ``[0, num_classes)`` from ``generator`` (or a
    CPU generator seeded with ``seed``; the global generator when both are None). Only norms change:
    every weight tensor keeps its direction, every other parameter its value. The model runs in eval mode
    and every module's train/eval mode is restored afterwards. Report 003 used 200 steps, lr 0.1,
    momentum 0.9, eps 1e-5 (the paper 500 steps).
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"invalid steps {steps!r}: steps must be an integer >= 0")
    if not lr > 0.0:
        raise ValueError(f"invalid lr {lr!r}: lr must be > 0")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"invalid momentum {momentum!r}: momentum must lie in [0, 1)")
    if not eps > 0.0:
        raise ValueError(f"invalid eps {eps!r}: eps must be > 0")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"invalid batch_size {batch_size!r}: batch_size must be an integer >= 1")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"invalid num_classes {num_classes!r}: num_classes must be an integer >= 1")
    input_shape = tuple(int(size) for size in input_shape)
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(seed)

    reference = next(model.parameters())
    weights = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    memories = [0.0] * len(weights)
    modes = {module: module.training for module in model.modules()}
    history: list[float] = []
    model.eval()
    try:
        for _ in range(steps):
            inputs = torch.randn((batch_size, *input_shape), generator=generator)
            targets = torch.randint(0, num_classes, (batch_size,), generator=generator)
            inputs = inputs.to(device=reference.device, dtype=reference.dtype)
            targets = targets.to(device=reference.device)
            quotient = gradient_quotient(model, inputs, targets, eps, loss_fn)
            history.append(float(quotient.detach()))
            if not weights:
                continue
            quotient_gradients = torch.autograd.grad(quotient, weights)
            with torch.no_grad():
                for index, (weight, quotient_gradient) in enumerate(zip(weights, quotient_gradients)):
                    norm = float(weight.norm())
                    if norm == 0.0:
                        continue  # a zero tensor has no direction to keep
                    slope = float((weight * quotient_gradient).sum()) / norm  # ∂GQ/∂n along W's direction
                    sign = float((slope > 0.0) - (slope < 0.0))
                    memories[index] = momentum * memories[index] - lr * sign
                    # where the paper's update takes the norm through zero it flips the tensor's sign; we keep
                    # the direction and give the tensor the same norm |n + memory|
                    new_norm = abs(norm + memories[index])
                    if new_norm > 0.0:
                        weight.mul_(new_norm / norm)
    finally:
        for module, training in modes.items():
            module.train(training)
    return history


#: the schema of stored gradient-quotient traces (:func:`measure_gradient_quotient`)
TRACE_SCHEMA = 1


def measure_gradient_quotient(config, store=None, device=None):
    """The gradient quotient along MetaInit as the run of ``config`` (``init="metainit"``) applies it.

    Builds ``config``'s network as its run does (same seed, so the same initial weights and the same random
    batches) and runs :func:`metainit` with its defaults. Returns a frame with ``step`` and
    ``gradient_quotient``: step 0 is the quotient at the initial weights, step s the one after s updates; the
    last row, after the last update, is measured on one more random batch. Loaded from ``store``
    (``measurements/``) when there, else measured and stored.
    """
    import hashlib

    import pandas as pd

    from .config import canonical_json
    from .store import ResultsStore, load_measurement, save_measurement
    from .training import build_model, configure_threads, prepare_data, resolve_device

    config.validate()
    store = store if store is not None else ResultsStore()
    if config.init != "metainit":
        raise ValueError(f"invalid init {config.init!r} for the gradient-quotient trace: give the configuration of a run with init 'metainit'")
    steps = {} if config.metainit_steps is None else {"steps": config.metainit_steps}
    content = {"schema": TRACE_SCHEMA, "model": config.model, "model_options": config.model_options, "dataset": config.dataset,
               "image_size": config.image_size, "seed": config.seed, **steps}
    key = "gradient-quotient-" + hashlib.sha256(canonical_json(content).encode()).hexdigest()[:16]
    path = store.root / "measurements" / f"{key}.json"
    columns = ["step", "gradient_quotient"]
    stored = load_measurement(path, TRACE_SCHEMA, columns)
    if stored is not None:
        return stored
    configure_threads()
    device = resolve_device(device)
    dataset = prepare_data(config, device)[0]
    # as training.start_run: the seed, then the network, then MetaInit from the same random stream
    torch.manual_seed(config.seed)
    model = build_model(config, dataset, device)
    shape = (dataset.in_channels, dataset.image_size, dataset.image_size)
    history = metainit(model, shape, dataset.num_classes, **steps)
    model.eval()
    reference = next(model.parameters())
    inputs = torch.randn((32, *shape)).to(device=reference.device, dtype=reference.dtype)
    targets = torch.randint(0, dataset.num_classes, (32,)).to(reference.device)
    after = float(gradient_quotient(model, inputs, targets).detach())
    rows = [{"step": step, "gradient_quotient": value} for step, value in enumerate([*history, after])]
    save_measurement(path, rows, TRACE_SCHEMA, {"device": str(device), "torch": torch.__version__})
    return pd.DataFrame(rows, columns=columns)
