"""Each of our optimizers beside an independent oracle, for the book's verification appendix.

:func:`verification_table` runs every optimizer that this package implements (not torch.optim's own) for
100 steps on one small deterministic problem, through the same protocol as the training loop
(:mod:`optbench.protocol`: epoch hooks, SVRG snapshots, closures, Hessian graphs), and runs an oracle
beside it from the same start on the same batches:

* where the test-only package ``torch-optimizer`` (0.3.0, the ``test`` extra) has a valid class, that class
  with the settings that make it the same algorithm (AdaHessian with ``hessian_power=1``; AdaBelief without
  rectification or AMSGrad; Lookahead, see the row's oracle text); ``pytorch-optimizer``'s PAdam and
  AdaHessian are not valid oracles and are not used;
* otherwise a plain-tensor transcription, written here from the equations of the paper or of the authors'
  code (cited in each row), that shares no code with :mod:`optbench.optim`: gradients come from
  :func:`torch.func.grad`, Hessian-vector products from :func:`torch.func.jvp` (forward over reverse, where
  our optimizers use a double backward).

The problem: a 3×3 convolution (2→3 channels) and a linear layer on 64 random 2×5×5 images with two
classes, cross-entropy, batches of 8, 10 steps an epoch, all in float64. The difference after n steps is
max|θ_ours − θ_oracle| / max|θ_oracle| over all parameters. The stochastic Hutchinson probes of AdaHessian
and AdaSGD are the same on both sides (the oracle is handed ours). Fused steps (``fused=True``) are not
run here (they compile for seconds to minutes); tests check them against the foreach steps.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable
from unittest import mock

import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from .optim import make_optimizer
from .protocol import call_epoch_hook, optimizer_step, take_snapshot_if_needed

DTYPE = torch.float64
REPORTED_STEPS = (1, 10, 100)
NUM_STEPS = max(REPORTED_STEPS)
STEPS_PER_EPOCH = 10
NUM_EPOCHS = NUM_STEPS // STEPS_PER_EPOCH
NUM_EXAMPLES, BATCH_SIZE = 64, 8

Snapshots = dict[int, torch.Tensor]  # step → all parameters, flattened


# ---------------------------------------------------------------------------------------------- the problem
class _TinyConvNet(nn.Module):
    """A 4-D convolution kernel (AdaHessian averages its diagonal spatially), a matrix and two biases."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.linear = nn.Linear(3 * 3 * 3, 2)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.tanh(self.conv(inputs)).flatten(1))


class Problem:
    """The fixed data, batches and starting point shared by an optimizer and its oracle."""

    def __init__(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(NUM_EXAMPLES, 2, 5, 5, generator=generator, dtype=DTYPE)
        self.labels = torch.randint(0, 2, (NUM_EXAMPLES,), generator=generator)
        # one batch more than steps: Lookahead's oracle takes one step ahead
        self.batches = [torch.randperm(NUM_EXAMPLES, generator=generator)[:BATCH_SIZE]
                        for _ in range(NUM_STEPS + 1)]
        with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
            torch.manual_seed(seed)
            self._template = _TinyConvNet().to(DTYPE)
        self._names = [name for name, _ in self._template.named_parameters()]

    def model(self) -> nn.Module:
        return copy.deepcopy(self._template)

    def start(self) -> list[torch.Tensor]:
        return [param.detach().clone() for param in self._template.parameters()]

    def loss(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(self.inputs[batch]), self.labels[batch])

    # the oracles' side: plain tensors, gradients by torch.func
    def _functional_loss(self, thetas: list[torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        outputs = functional_call(self._template, dict(zip(self._names, thetas)), (self.inputs[batch],))
        return nn.functional.cross_entropy(outputs, self.labels[batch])

    def gradient(self, thetas: list[torch.Tensor], batch: torch.Tensor) -> list[torch.Tensor]:
        return list(grad(self._functional_loss)(thetas, batch))

    def hessian_vector_product(self, thetas, batch, probes) -> list[torch.Tensor]:
        _, product = jvp(lambda point: grad(self._functional_loss)(point, batch), (thetas,), (probes,))
        return list(product)

    def full_batch(self) -> torch.Tensor:
        return torch.arange(NUM_EXAMPLES)


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def relative_difference(ours: torch.Tensor, oracle: torch.Tensor) -> float:
    """max|ours − oracle| / max|oracle| (the scale of the parameters, so near-zero entries do not dominate)."""
    return float((ours - oracle).abs().max() / oracle.abs().max())


# ---------------------------------------------------------------------------------------------- our side
def record_probes(optimizer) -> list[list[torch.Tensor]]:
    """Spy on a Hutchinson optimizer (AdaHessian, AdaSGD): the list returned gets a copy of each draw."""
    drawn: list[list[torch.Tensor]] = []
    draw = optimizer.rademacher_probes

    def recorded(params):
        probes = draw(params)
        drawn.append([z.clone() for z in probes])
        return probes

    optimizer.rademacher_probes = recorded
    return drawn


def run_ours(name: str, hyperparameters: dict, problem: Problem, *, with_probes: bool = False,
             inner_steps_first: int = 0) -> tuple[Snapshots, list | None]:
    """Our registered optimizer through the training loop's protocol: the parameters after each reported
    step, and (``with_probes``) the Hutchinson probes of each step, for the oracle.

    ``inner_steps_first`` steps a wrapper's inner optimizer alone before the run (Lookahead against
    torch-optimizer's).
    """
    model = problem.model()
    optimizer = make_optimizer(name, model.parameters(), **hyperparameters)
    probes = record_probes(optimizer) if with_probes else None
    for step in range(inner_steps_first):
        optimizer_step(optimizer.optimizer, lambda: problem.loss(model, problem.batches[step]), model)

    def full_gradient() -> None:
        problem.loss(model, problem.full_batch()).backward()

    snapshots = {}
    for step in range(NUM_STEPS):
        if step % STEPS_PER_EPOCH == 0:
            call_epoch_hook(optimizer, step // STEPS_PER_EPOCH, NUM_EPOCHS)
            take_snapshot_if_needed(optimizer, full_gradient)
        batch = problem.batches[step + inner_steps_first]
        optimizer_step(optimizer, lambda: problem.loss(model, batch), model)
        if step + 1 in REPORTED_STEPS:
            snapshots[step + 1] = _flat(model.parameters())
    return snapshots, probes


# ---------------------------------------------------------------------------------------------- oracles
def _run_torch_optimizer(problem: Problem, build: Callable, *, create_graph: bool = False, probes=None,
                         steps_first: int = 0) -> Snapshots:
    """A torch-optimizer class on the same batches; ``probes`` replace its Rademacher draws step by step;
    ``steps_first`` extra steps come first and are not counted."""
    model = problem.model()
    optimizer = build(model.parameters())
    snapshots = {}
    for step in range(steps_first + NUM_STEPS):
        optimizer.zero_grad()
        problem.loss(model, problem.batches[step]).backward(create_graph=create_graph)
        if probes is None:
            optimizer.step()
        else:
            # its probe is 2·randint_like(p, high=2) − 1, one call per parameter: give it ours
            queue = [(z + 1) / 2 for z in probes[step]]
            with mock.patch.object(torch, "randint_like", lambda *args, **kwargs: queue.pop(0)):
                optimizer.step()
        counted = step + 1 - steps_first
        if counted in REPORTED_STEPS:
            snapshots[counted] = _flat(model.parameters())
    return snapshots


def _transcription(problem: Problem, update: Callable, *, state: dict) -> Snapshots:
    """Run ``update(thetas, state, step, epoch, batch) → thetas`` (step from 1) for every step."""
    thetas = problem.start()
    snapshots = {}
    for index in range(NUM_STEPS):
        thetas = update(thetas, state, index + 1, index // STEPS_PER_EPOCH, problem.batches[index])
        if index + 1 in REPORTED_STEPS:
            snapshots[index + 1] = _flat(thetas)
    return snapshots


def _zeros(problem: Problem) -> list[torch.Tensor]:
    return [torch.zeros_like(t) for t in problem.start()]


def padam_oracle(problem: Problem, lr, betas, eps, weight_decay, p) -> Snapshots:
    """Chen & Gu, uclaml/Padam ``Padam.py`` with AMSGrad: m/(sqrt(v̂)+eps)^(2p), step lr·sqrt(bc2)/bc1."""
    beta1, beta2 = betas

    def update(thetas, state, step, epoch, batch):
        new = []
        for i, (theta, g) in enumerate(zip(thetas, problem.gradient(thetas, batch))):
            g = g + weight_decay * theta
            state["m"][i] = beta1 * state["m"][i] + (1 - beta1) * g
            state["v"][i] = beta2 * state["v"][i] + (1 - beta2) * g * g
            state["v_max"][i] = torch.maximum(state["v_max"][i], state["v"][i])
            step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
            new.append(theta - step_size * state["m"][i] / (state["v_max"][i].sqrt() + eps) ** (2 * p))
        return new

    return _transcription(problem, update, state={"m": _zeros(problem), "v": _zeros(problem),
                                                  "v_max": _zeros(problem)})


def mixed_oracle(problem: Problem, lr, momentum, betas, eps, weight_decay, weights: Callable[[int], tuple],
                 p: float | None = None) -> Snapshots:
    """The authors' mixes (nicolalandro/Padam ``MAS/``): θ ← θ − (λ_S·lr + λ_A·η_A)·(λ_S·buf + λ_A·d_A).

    ``p`` None: AdamSGDWeighted (ATMO), d_A = m/(sqrt(v)/sqrt(bc2) + eps), η_A = lr/bc1; else
    PadamSGDWeighted, d_A = m/(sqrt(v)+eps)^(2p), η_A = lr·sqrt(bc2)/bc1. ``weights(epoch)`` = (λ_S, λ_A).
    """
    beta1, beta2 = betas

    def update(thetas, state, step, epoch, batch):
        sgd_weight, adam_weight = weights(epoch)
        new = []
        for i, (theta, g) in enumerate(zip(thetas, problem.gradient(thetas, batch))):
            g = g + weight_decay * theta
            state["m"][i] = beta1 * state["m"][i] + (1 - beta1) * g
            state["v"][i] = beta2 * state["v"][i] + (1 - beta2) * g * g
            if p is None:
                direction = state["m"][i] / (state["v"][i].sqrt() / math.sqrt(1 - beta2**step) + eps)
                adaptive_step = lr / (1 - beta1**step)
            else:
                direction = state["m"][i] / (state["v"][i].sqrt() + eps) ** (2 * p)
                adaptive_step = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
            state["buf"][i] = g if step == 1 else momentum * state["buf"][i] + g
            merged_lr = sgd_weight * lr + adam_weight * adaptive_step
            new.append(theta - merged_lr * (sgd_weight * state["buf"][i] + adam_weight * direction))
        return new

    return _transcription(problem, update, state={"m": _zeros(problem), "v": _zeros(problem),
                                                  "buf": _zeros(problem)})


def _hutchinson_diagonal(problem: Problem, thetas, batch, probes) -> list[torch.Tensor]:
    """|Hz|, averaged over the spatial dims of 4-D kernels (Yao et al., amirgholami/adahessian)."""
    diagonals = []
    for product in problem.hessian_vector_product(thetas, batch, probes):
        diagonal = product.abs()
        diagonals.append(diagonal.mean(dim=(2, 3), keepdim=True) if diagonal.dim() == 4 else diagonal)
    return diagonals


def adasgd_oracle(problem: Problem, probes, lr, momentum, betas, eps, weight_decay, hessian_power,
                  weights: Callable[[int], tuple]) -> Snapshots:
    """Report 002's Algorithm 4: AdaHessian's step Δ_A mixed with SGD momentum as ATMO mixes Adam.

    Δ_A = lr·(m/bc1/((sqrt(v)/sqrt(bc2))^k + eps) + wd·θ) (the official AdaHessian step), η_A = lr/bc1,
    d_A = Δ_A/η_A; SGD: buf ← μ·buf + g + wd·θ; θ ← θ − (λ_S·lr + λ_A·η_A)·(λ_S·buf + λ_A·d_A).
    """
    beta1, beta2 = betas

    def update(thetas, state, step, epoch, batch):
        sgd_weight, adam_weight = weights(epoch)
        gradients = problem.gradient(thetas, batch)
        diagonals = _hutchinson_diagonal(problem, thetas, batch, probes[step - 1]) if adam_weight else None
        new = []
        for i, (theta, g) in enumerate(zip(thetas, gradients)):
            decayed = g + weight_decay * theta
            state["buf"][i] = decayed if step == 1 else momentum * state["buf"][i] + decayed
            adaptive_step, direction = 0.0, torch.zeros_like(theta)
            if adam_weight:
                state["m"][i] = beta1 * state["m"][i] + (1 - beta1) * g
                state["v"][i] = beta2 * state["v"][i] + (1 - beta2) * diagonals[i] ** 2
                denominator = (state["v"][i].sqrt() / math.sqrt(1 - beta2**step)) ** hessian_power + eps
                adahessian_step = lr * (state["m"][i] / (1 - beta1**step) / denominator + weight_decay * theta)
                adaptive_step = lr / (1 - beta1**step)
                direction = adahessian_step / adaptive_step
            merged_lr = sgd_weight * lr + adam_weight * adaptive_step
            new.append(theta - merged_lr * (sgd_weight * state["buf"][i] + adam_weight * direction))
        return new

    return _transcription(problem, update, state={"m": _zeros(problem), "v": _zeros(problem),
                                                  "buf": _zeros(problem)})


def scheduled_betas_oracle(problem: Problem, lr, betas, eps, weight_decay) -> Snapshots:
    """Report 004: Adam with β·e^(−epoch), bias-corrected by the running products of the betas used."""

    def update(thetas, state, step, epoch, batch):
        beta1, beta2 = betas[0] * math.exp(-epoch), betas[1] * math.exp(-epoch)
        state["product1"] *= beta1
        state["product2"] *= beta2
        new = []
        for i, (theta, g) in enumerate(zip(thetas, problem.gradient(thetas, batch))):
            g = g + weight_decay * theta
            state["m"][i] = beta1 * state["m"][i] + (1 - beta1) * g
            state["v"][i] = beta2 * state["v"][i] + (1 - beta2) * g * g
            m_hat = state["m"][i] / (1 - state["product1"])
            v_hat = state["v"][i] / (1 - state["product2"])
            new.append(theta - lr * m_hat / (v_hat.sqrt() + eps))
        return new

    return _transcription(problem, update, state={"m": _zeros(problem), "v": _zeros(problem),
                                                  "product1": 1.0, "product2": 1.0})


def svrg_oracle(problem: Problem, lr, momentum, weight_decay) -> Snapshots:
    """Johnson & Zhang: at each epoch x̃ ← θ, μ = ∇F(x̃); v = ∇f_B(θ) − ∇f_B(x̃) + μ + wd·θ, heavy ball."""

    def update(thetas, state, step, epoch, batch):
        if (step - 1) % STEPS_PER_EPOCH == 0:
            state["snapshot"] = [t.clone() for t in thetas]
            state["mean_gradient"] = problem.gradient(thetas, problem.full_batch())
        at_theta = problem.gradient(thetas, batch)
        at_snapshot = problem.gradient(state["snapshot"], batch)
        new = []
        for i, theta in enumerate(thetas):
            direction = at_theta[i] - at_snapshot[i] + state["mean_gradient"][i] + weight_decay * theta
            state["buf"][i] = direction if step == 1 or momentum == 0 else momentum * state["buf"][i] + direction
            new.append(theta - lr * state["buf"][i])
        return new

    return _transcription(problem, update, state={"buf": _zeros(problem)})


def storm_oracle(problem: Problem, k, w, c) -> Snapshots:
    """Cutkosky & Orabona, Algorithm 1, per coordinate: η_t = k/(w + Σ_{i≤t} g_i²)^(1/3), θ ← θ − η_t·d_t,
    d_{t+1} = g_{t+1} + (1 − min(1, c·η_t²))·(d_t − ∇f(θ_t, ξ_{t+1})), d_1 = g_1."""

    def update(thetas, state, step, epoch, batch):
        gradients = problem.gradient(thetas, batch)
        if step > 1:
            at_previous = problem.gradient(state["previous"], batch)
            for i, g in enumerate(gradients):
                momentum_weight = torch.clamp(c * state["step_size"][i] ** 2, max=1.0)
                state["d"][i] = g + (1 - momentum_weight) * (state["d"][i] - at_previous[i])
        else:
            state["d"] = [g.clone() for g in gradients]
        state["previous"] = [t.clone() for t in thetas]
        new = []
        for i, (theta, g) in enumerate(zip(thetas, gradients)):
            state["sum"][i] = state["sum"][i] + g * g
            state["step_size"][i] = k / (w + state["sum"][i]) ** (1 / 3)
            new.append(theta - state["step_size"][i] * state["d"][i])
        return new

    return _transcription(problem, update, state={"sum": _zeros(problem), "step_size": _zeros(problem)})


# ---------------------------------------------------------------------------------------------- the checks
@dataclass(frozen=True)
class Check:
    """One row: our optimizer ``name`` with ``hyperparameters`` against ``oracle(problem, probes)``."""

    label: str
    name: str
    hyperparameters: dict
    oracle_description: str
    oracle: Callable[[Problem, list], Snapshots]
    deviations: str
    uses_probes: bool = False
    inner_steps_first: int = 0


def _constant(sgd_weight: float, adam_weight: float) -> Callable[[int], tuple]:
    return lambda epoch: (sgd_weight, adam_weight)


def _dynamic(horizon: int) -> Callable[[int], tuple]:
    """λ_A = max(0, 1 − epoch/horizon), λ_S = 1 − λ_A (the authors' MASScheduler from 1 to 0)."""
    return lambda epoch: (1 - max(0.0, 1 - epoch / horizon), max(0.0, 1 - epoch / horizon))


def _checks() -> list[Check]:
    import torch_optimizer  # the test extra: see verification_table's docstring

    padam = dict(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=5e-4, p=0.125)
    atmo = dict(lr=0.01, momentum=0.95, betas=(0.9, 0.999), eps=1e-8, weight_decay=5e-4)
    padam_sgd = dict(lr=0.01, momentum=0.9, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.025)
    adahessian = dict(lr=0.15, betas=(0.9, 0.999), eps=1e-4, weight_decay=5e-4, hessian_power=1.0)
    adasgd = dict(lr=0.1, momentum=0.95, betas=(0.9, 0.999), eps=1e-4, weight_decay=5e-4, hessian_power=1.0)
    adabelief = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=5e-4)
    scheduled = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=5e-4)
    svrg = dict(lr=0.05, momentum=0.9, weight_decay=5e-4)
    storm = dict(k=0.1, w=0.1, c=100.0)
    return [
        Check("Padam (p = 1/8)", "padam", {**padam, "amsgrad": True},
              "transcription of uclaml/Padam (Padam.py)", lambda problem, probes: padam_oracle(problem, **padam),
              "none"),
        Check("ATMO (weights 1/2, 1/2)", "atmo", atmo,
              "transcription of nicolalandro/Padam AdamSGDWeighted",
              lambda problem, probes: mixed_oracle(problem, **atmo, weights=_constant(0.5, 0.5)), "none"),
        Check("Dynamic ATMO (E = 5 epochs)", "atmo", {**atmo, "dynamic_weights": True, "dynamic_epochs": 5},
              "transcription of AdamSGDWeighted + MASScheduler",
              lambda problem, probes: mixed_oracle(problem, **atmo, weights=_dynamic(5)),
              "the Adam state stands still once λ_A = 0 (it no longer enters the step)"),
        Check("PADAM-SGD (p = 1/8)", "padam_sgd", {**padam_sgd, "p": 0.125},
              "transcription of nicolalandro/Padam PadamSGDWeighted",
              lambda problem, probes: mixed_oracle(problem, **padam_sgd, weights=_constant(0.5, 0.5), p=0.125),
              "none"),
        Check("AdaHessian", "adahessian", {**adahessian, "seed": 0},
              "torch_optimizer.Adahessian (hessian_power=1), handed our probes",
              lambda problem, probes: _run_torch_optimizer(
                  problem, lambda params: torch_optimizer.Adahessian(params, **adahessian),
                  create_graph=True, probes=probes),
              "tensors neither ≤ 2-D nor 4-D keep an elementwise D (the official code has no case for them)",
              uses_probes=True),
        Check("AdaSGD (dynamic, E = 10 epochs)", "adasgd", {**adasgd, "seed": 0},
              "transcription of report 002's Algorithm 4 (Hz by torch.func.jvp)",
              lambda problem, probes: adasgd_oracle(problem, probes, **adasgd, weights=_dynamic(NUM_EPOCHS)),
              "no public code: η_A = lr/bc1 as in ATMO's Adam branch, d_A = AdaHessian's step/η_A",
              uses_probes=True),
        Check("AdaBelief", "adabelief", adabelief,
              "torch_optimizer.AdaBelief (rectify, AMSGrad and decoupled decay off)",
              lambda problem, probes: _run_torch_optimizer(problem, lambda params: torch_optimizer.AdaBelief(
                  params, **adabelief, amsgrad=False, weight_decouple=False, fixed_decay=False, rectify=False)),
              "no rectification; AMSGrad as adabelief-pytorch ≥ 0.1 (0.0.5 and torch-optimizer add eps to the max)"),
        Check("Adam with scheduled betas", "adam_scheduled_betas", scheduled,
              "transcription of report 004 (β·e^(−epoch))",
              lambda problem, probes: scheduled_betas_oracle(problem, **scheduled),
              "epoch (report's text) rather than step (authors' code); exact bias correction, no 0.99 cap"),
        Check("Lookahead (Adam, k = 5, α = 0.5)", "lookahead", {"inner": "adam", "lr": 0.01, "k": 5, "alpha": 0.5},
              "torch_optimizer.Lookahead around torch.optim.Adam, one step ahead",
              lambda problem, probes: _run_torch_optimizer(
                  problem, lambda params: torch_optimizer.Lookahead(torch.optim.Adam(params, lr=0.01), k=5,
                                                                    alpha=0.5),
                  steps_first=1),
              "φ = θ₀ and syncs after steps k, 2k, … (paper); torch-optimizer's φ starts after its step 1, so "
              "ours starts after one inner Adam step",
              inner_steps_first=1),
        Check("SVRG (momentum 0.9)", "svrg", svrg,
              "transcription of Johnson & Zhang 2013, snapshot every epoch",
              lambda problem, probes: svrg_oracle(problem, **svrg), "none"),
        Check("STORM", "storm", storm,
              "transcription of Cutkosky & Orabona's Algorithm 1, per coordinate",
              lambda problem, probes: storm_oracle(problem, **storm),
              "the official TF code takes a_t from the current η_t, clips d and starts Σg² at 1e-6; ours "
              "follows the paper"),
    ]


def verification_table(names: Iterable[str] | None = None) -> pd.DataFrame:
    """Every optimizer of this package beside an independent oracle: the verification appendix's table.

    One row per check (our optimizer and settings): ``optimizer``, ``registry name``, ``oracle`` (what
    the parameters are compared with), ``after 1 step``, ``after 10 steps``, ``after 100 steps`` (the
    largest relative difference of the parameters, max|θ_ours − θ_oracle| / max|θ_oracle|), ``moved``
    (max|θ_100 − θ_0|, so that a small difference means something) and ``documented deviations`` (where
    ours departs on purpose from the authors' code; each optimizer's docstring says more). The problem,
    the oracles and the definition are in the module docstring. Deterministic; a few seconds on one CPU.

    ``names`` (registry names) keeps only those rows; ``ValueError`` for a name without a row. Needs
    ``torch-optimizer`` (the ``test`` extra, which ``make`` installs): ``ImportError`` otherwise.
    """
    with warnings.catch_warnings():
        # torch-optimizer's import and AdaHessian's create_graph backward warn; neither concerns the table
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch.jit.script` is deprecated")
        warnings.filterwarnings("ignore", category=UserWarning, message=r"Using backward\(\) with create_graph")
        try:
            checks = _checks()
        except ImportError as error:
            raise ImportError(
                "verification_table needs torch-optimizer 0.3.0, a test dependency of optbench: "
                "pip install 'optbench[test]' (make test and make book install it)"
            ) from error
        if names is not None:
            names = list(names)
            known = sorted({check.name for check in checks})
            unknown = [name for name in names if name not in known]
            if unknown:
                raise ValueError(f"no verification for {', '.join(map(repr, unknown))}; available: {', '.join(known)}")
            checks = [check for check in checks if check.name in names]
        return _table(checks)


def _table(checks: list[Check]) -> pd.DataFrame:
    problem = Problem()
    start = _flat(problem.start())
    rows = []
    for check in checks:
        ours, probes = run_ours(check.name, check.hyperparameters, problem, with_probes=check.uses_probes,
                                inner_steps_first=check.inner_steps_first)
        oracle = check.oracle(problem, probes)
        row = {"optimizer": check.label, "registry name": check.name, "oracle": check.oracle_description}
        for steps in REPORTED_STEPS:
            row[f"after {steps} step{'s' if steps > 1 else ''}"] = relative_difference(ours[steps], oracle[steps])
        row["moved"] = float((oracle[NUM_STEPS] - start).abs().max())
        row["documented deviations"] = check.deviations
        rows.append(row)
    return pd.DataFrame(rows)


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`verification_table` as text for the book: differences in scientific notation, the distance moved
    with three significant digits, registry names as code."""
    shown = table.copy()
    for column in ("after 1 step", "after 10 steps", "after 100 steps"):
        shown[column] = [f"{value:.1e}" for value in table[column]]
    shown["moved"] = [f"{value:.3g}" for value in table["moved"]]
    shown["registry name"] = [f"`{name}`" for name in table["registry name"]]
    return shown


def deviations_text(table: pd.DataFrame) -> str:
    """The documented deviations of :func:`verification_table`'s rows as a Markdown list (rows without one left out)."""
    rows = table[table["documented deviations"].str.strip().str.lower() != "none"]
    return "\n".join(f"- **{optimizer}** (`{name}`): {deviation}."
                     for optimizer, name, deviation in zip(rows["optimizer"], rows["registry name"], rows["documented deviations"])) + "\n"
