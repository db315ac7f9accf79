"""ATMO against its equations, its SGD and Adam limits, the dynamic weight schedule, checkpoints, validation."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from optbench.optim import default_hyperparameters, make_optimizer
from optbench.optim.atmo import ATMO
from optbench.protocol import call_epoch_hook, optimizer_step

from optim_helpers import (
    DTYPE,
    assert_same_parameters,
    regression_batches,
    round_trip,
    run_with_gradients,
    tiny_model,
    train,
)


def reference_adam_sgd_weighted(thetas, grads, *, lr, momentum, betas, eps, weight_decay, sgd_weight,
                                adam_weight, amsgrad=False, weights_per_step=None):
    """The authors' AdamSGDWeighted (nicolalandro/Padam, MAS/adam_sgd_mix.py) transcribed on plain tensors,
    parameter by parameter as that class loops: torch's Adam step mixed with torch's SGD momentum.

    One list of gradients per step; ``weights_per_step`` (optional) gives (λ_S, λ_A) for each step, as the
    authors' MASScheduler sets them. Returns the parameters after each step.
    """
    beta1, beta2 = betas
    thetas = [t.clone() for t in thetas]
    buffers = [None] * len(thetas)
    m = [torch.zeros_like(t) for t in thetas]
    v = [torch.zeros_like(t) for t in thetas]
    v_max = [torch.zeros_like(t) for t in thetas]
    trajectory = []
    for t, step_grads in enumerate(grads, start=1):
        if weights_per_step is not None:
            sgd_weight, adam_weight = weights_per_step[t - 1]
        new = []
        for i, (theta, g) in enumerate(zip(thetas, step_grads)):
            g = g + weight_decay * theta
            # Adam branch: bias corrections as torch.optim.Adam places them
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            v_max[i] = torch.maximum(v_max[i], v[i])
            second = v_max[i] if amsgrad else v[i]
            adam_direction = m[i] / (second.sqrt() / math.sqrt(1 - beta2**t) + eps)
            adam_step = lr / (1 - beta1**t)
            # SGD branch: torch.optim.SGD's buffer, first buf = g
            buffers[i] = g.clone() if buffers[i] is None else momentum * buffers[i] + g
            merged_lr = sgd_weight * lr + adam_weight * adam_step
            new.append(theta - merged_lr * (sgd_weight * buffers[i] + adam_weight * adam_direction))
        thetas = new
        trajectory.append([t.clone() for t in thetas])
    return trajectory


def random_problem(seed=0, steps=4):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (4,), (2, 1, 3, 3)]
    thetas = [torch.randn(s, generator=generator, dtype=DTYPE) for s in shapes]
    grads = [[torch.randn(s, generator=generator, dtype=DTYPE) for s in shapes] for _ in range(steps)]
    return thetas, grads


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
@pytest.mark.parametrize("sgd_weight, adam_weight, amsgrad", [(0.5, 0.5, False), (0.3, 0.9, False), (0.5, 0.5, True)])
def test_first_steps_match_the_authors_update(sgd_weight, adam_weight, amsgrad, fused):
    thetas, grads = random_problem(steps=6)
    # shrinking gradients make v decrease, so the AMSGrad max matters
    grads = [[g / (1 + 3 * k) for g in step_grads] for k, step_grads in enumerate(grads)]
    hyperparameters = dict(lr=0.05, momentum=0.9, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.01,
                           sgd_weight=sgd_weight, adam_weight=adam_weight, amsgrad=amsgrad)
    params = [t.clone().requires_grad_() for t in thetas]
    ours = run_with_gradients(ATMO(params, fused=fused, **hyperparameters), params, grads)
    expected = reference_adam_sgd_weighted(thetas, grads, **hyperparameters)
    for step_ours, step_expected in zip(ours, expected):
        for a, b in zip(step_ours, step_expected):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_sgd_limit_is_torch_sgd_with_momentum():
    model, reference_model = tiny_model(), tiny_model()
    ours = ATMO(model.parameters(), lr=0.05, momentum=0.8, weight_decay=0.01, sgd_weight=1.0, adam_weight=0.0)
    reference = torch.optim.SGD(reference_model.parameters(), lr=0.05, momentum=0.8, weight_decay=0.01)
    data = regression_batches(12)
    train(model, ours, data)
    train(reference_model, reference, data)
    assert_same_parameters(model, reference_model)
    # a branch of weight 0 is skipped entirely
    assert all("exp_avg" in state and state["exp_avg"].abs().sum() == 0 for state in ours.state.values())


def test_sgd_limit_follows_a_momentum_schedule_like_torch_sgd():
    """The buffer is stored as (1−μ)·buf: a scheduler changing μ between steps must not change the maths."""
    model, reference_model = tiny_model(), tiny_model()
    ours = ATMO(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01, sgd_weight=1.0, adam_weight=0.0)
    reference = torch.optim.SGD(reference_model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    schedule = [0.9, 0.9, 0.5, 0.5, 0.2, 0.8, 0.95, 0.95]

    def set_momentum(optimizer):
        return lambda index: optimizer.param_groups[0].update(momentum=schedule[index])

    data = regression_batches(len(schedule))
    train(model, ours, data, before_step=set_momentum(ours))
    train(reference_model, reference, data, before_step=set_momentum(reference))
    assert_same_parameters(model, reference_model)


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
def test_one_step_on_a_linear_loss_is_the_authors_number(fused):
    """θ = 1, loss θ (g = 1), lr 0.01, μ 0.95, weights 1/2, no decay. By hand: m = 0.1, v = 0.001, bc1 = 0.1,
    bc2 = 0.001, so d_A = 0.1/(1 + 1e-8), η_A = 0.1 and θ moves by (0.005 + 0.05)·(0.5 + 0.05) = 0.030250.
    Padam's placement of the bias corrections gives 0.013696 (see test_optim_padam_sgd)."""
    theta = torch.ones((), dtype=DTYPE, requires_grad=True)
    optimizer = ATMO([theta], lr=0.01, momentum=0.95, weight_decay=0.0, sgd_weight=0.5, adam_weight=0.5,
                     fused=fused)
    theta.grad = torch.ones((), dtype=DTYPE)
    optimizer.step()
    assert theta.item() - 1.0 == pytest.approx(-0.030250, abs=5e-7)
    # the transcription gives the same number, so its other checks compare against the right update
    expected = reference_adam_sgd_weighted([torch.ones((), dtype=DTYPE)], [[torch.ones((), dtype=DTYPE)]], lr=0.01,
                                           momentum=0.95, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                           sgd_weight=0.5, adam_weight=0.5)
    torch.testing.assert_close(theta.detach(), expected[0][0], rtol=1e-14, atol=0)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_limit_is_torch_adam(amsgrad):
    """λ_A = 1: the authors' Adam branch is torch.optim.Adam's step, eps included."""
    betas = (0.9, 0.99)
    model, reference_model = tiny_model(), tiny_model()
    ours = ATMO(model.parameters(), lr=0.01, betas=betas, eps=1e-3, weight_decay=0.02, sgd_weight=0.0,
                adam_weight=1.0, amsgrad=amsgrad)
    reference = torch.optim.Adam(reference_model.parameters(), lr=0.01, betas=betas, eps=1e-3, weight_decay=0.02,
                                 amsgrad=amsgrad, foreach=False)
    data = regression_batches(15)
    train(model, ours, data)
    train(reference_model, reference, data)
    assert_same_parameters(model, reference_model)


def test_dynamic_weights_follow_one_minus_epoch_over_horizon():
    model = tiny_model()
    optimizer = ATMO(model.parameters(), dynamic_weights=True)
    group = optimizer.param_groups[0]
    assert (group["sgd_weight"], group["adam_weight"]) == (0.0, 1.0)  # the schedule's start, before any hook
    for epoch in range(12):
        call_epoch_hook(optimizer, epoch, 10)
        expected_adam = max(0.0, 1.0 - epoch / 10)
        assert group["adam_weight"] == pytest.approx(expected_adam, abs=1e-15)
        assert group["sgd_weight"] == pytest.approx(1.0 - expected_adam, abs=1e-15)

    fixed_horizon = ATMO(tiny_model().parameters(), dynamic_weights=True, dynamic_epochs=4)
    weights = []
    for epoch in range(6):
        fixed_horizon.on_epoch_start(epoch, 100)
        weights.append(fixed_horizon.param_groups[0]["adam_weight"])
    assert weights == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0, 0.0])


def test_constant_weights_ignore_the_epoch_hook():
    optimizer = ATMO(tiny_model().parameters(), sgd_weight=0.2, adam_weight=0.7)
    optimizer.on_epoch_start(5, 10)
    assert (optimizer.param_groups[0]["sgd_weight"], optimizer.param_groups[0]["adam_weight"]) == (0.2, 0.7)


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
def test_dynamic_run_matches_the_authors_update_epoch_by_epoch(fused):
    """Three epochs of two steps, E = 2: the weights each step uses are those the authors' MASScheduler
    has set for the current epoch, (0, 1), then (1/2, 1/2), then pure SGD momentum (1, 0)."""
    thetas, grads = random_problem(seed=3, steps=6)
    params = [t.clone().requires_grad_() for t in thetas]
    hyperparameters = dict(lr=0.05, momentum=0.9, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.01)
    optimizer = ATMO(params, dynamic_weights=True, dynamic_epochs=2, fused=fused, **hyperparameters)
    for step, step_grads in enumerate(grads):
        if step % 2 == 0:
            optimizer.on_epoch_start(step // 2, 10)
        for param, g in zip(params, step_grads):
            param.grad = g.clone()
        optimizer.step()
    weights = [(0.0, 1.0)] * 2 + [(0.5, 0.5)] * 2 + [(1.0, 0.0)] * 2
    expected = reference_adam_sgd_weighted(thetas, grads, sgd_weight=None, adam_weight=None,
                                           weights_per_step=weights, **hyperparameters)[-1]
    for param, theta in zip(params, expected):
        torch.testing.assert_close(param.detach(), theta, rtol=1e-12, atol=1e-14)


def test_state_dict_restores_weights_and_continuation():
    data = regression_batches(10)
    model = tiny_model()
    optimizer = ATMO(model.parameters(), dynamic_weights=True)
    call_epoch_hook(optimizer, 3, 10)
    train(model, optimizer, data[:5])

    resumed_model = copy.deepcopy(model)
    resumed = ATMO(resumed_model.parameters(), dynamic_weights=True)
    resumed.load_state_dict(round_trip(optimizer.state_dict()))
    assert resumed.param_groups[0]["adam_weight"] == pytest.approx(0.7)
    assert resumed.param_groups[0]["sgd_weight"] == pytest.approx(0.3)

    train(model, optimizer, data[5:])
    train(resumed_model, resumed, data[5:])
    assert_same_parameters(model, resumed_model, rtol=0, atol=0)


def test_parameters_that_missed_steps_keep_their_own_bias_correction():
    thetas, grads = random_problem(seed=5, steps=3)
    hyperparameters = dict(lr=0.05, momentum=0.9, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.01,
                           sgd_weight=0.5, adam_weight=0.5)
    params = [t.clone().requires_grad_() for t in thetas]
    optimizer = ATMO(params, **hyperparameters)
    params[0].grad = grads[0][0].clone()  # step 1: only the first parameter
    optimizer.step()
    for param, g in zip(params, grads[1]):
        param.grad = g.clone()
    optimizer.step()
    expected_first = reference_adam_sgd_weighted([thetas[0]], [[grads[0][0]], [grads[1][0]]], **hyperparameters)[-1][0]
    expected_second = reference_adam_sgd_weighted([thetas[1]], [[grads[1][1]]], **hyperparameters)[-1][0]
    torch.testing.assert_close(params[0].detach(), expected_first, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(params[1].detach(), expected_second, rtol=1e-12, atol=1e-14)


def test_converges_on_a_regression_problem_through_the_protocol():
    model = tiny_model()
    optimizer = make_optimizer("atmo", model.parameters(), lr=0.05, weight_decay=0.0)
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(64, 4, generator=generator, dtype=DTYPE)
    targets = torch.sin(inputs[:, :2])
    def loss():
        return ((model(inputs) - targets) ** 2).mean()
    initial = loss().item()
    for _ in range(60):
        optimizer_step(optimizer, loss, model)
    assert loss().item() < 0.2 * initial


def test_registered_defaults():
    assert default_hyperparameters("atmo") == {
        "lr": 0.01, "momentum": 0.95, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 5e-4,
        "sgd_weight": 0.5, "adam_weight": 0.5, "dynamic_weights": False, "dynamic_epochs": None,
    }
    optimizer = make_optimizer("atmo", tiny_model().parameters())
    assert isinstance(optimizer, ATMO)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["amsgrad"], group["fused"]) == (0.01, 0.95, False, False)


@pytest.mark.parametrize(
    "hyperparameters, name",
    [
        ({"lr": -0.1}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"eps": -1e-8}, "eps"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"betas": (1.0, 0.999)}, "betas"),
        ({"betas": (0.9, -0.1)}, "betas"),
        ({"sgd_weight": -0.5}, "sgd_weight"),
        ({"adam_weight": -0.5}, "adam_weight"),
        ({"sgd_weight": 0.0, "adam_weight": 0.0}, "adam_weight"),
        ({"dynamic_weights": "yes"}, "dynamic_weights"),
        ({"dynamic_epochs": 0}, "dynamic_epochs"),
        ({"dynamic_epochs": 2.5}, "dynamic_epochs"),
        ({"amsgrad": 1}, "amsgrad"),
    ],
)
def test_invalid_hyperparameters_raise(hyperparameters, name):
    with pytest.raises(ValueError, match=name):
        ATMO(tiny_model().parameters(), **hyperparameters)


def test_the_registry_builds_atmo_with_its_amsgrad_option():
    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = make_optimizer("atmo", [parameter], amsgrad=True)
    parameter.grad = torch.full((3,), 0.5)
    optimizer.step()
    assert optimizer.defaults["amsgrad"] is True and any("max" in key for key in optimizer.state[parameter])
