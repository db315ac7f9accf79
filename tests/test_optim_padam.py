"""Padam against its equations, against torch.optim.Adam(amsgrad) at p = 1/2 and SGD momentum as p → 0."""

from __future__ import annotations

import math

import pytest
import torch

from optbench.optim import default_hyperparameters, make_optimizer
from optbench.optim.padam import Padam
from optbench.protocol import call_epoch_hook, optimizer_step

from optim_helpers import DTYPE, round_trip, run_with_gradients, softplus_loss, softplus_problem


def gradient_sequence(shape, steps, seed=0):
    """Gradients whose scale drops by 30x after two steps, so that the AMSGrad max v̂ differs from v."""
    generator = torch.Generator().manual_seed(seed)
    scales = [3.0, 2.0] + [0.1] * (steps - 2)
    return [scale * torch.randn(shape, generator=generator, dtype=DTYPE) for scale in scales]


def padam_reference(theta, grads, lr, betas, eps, weight_decay, p, amsgrad):
    """Padam's equations on plain tensors; the parameter after every step."""
    beta1, beta2 = betas
    theta = theta.clone()
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    v_max = torch.zeros_like(theta)
    trajectory = []
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = torch.maximum(v_max, v)
        v_hat = v_max if amsgrad else v
        theta = theta - lr * math.sqrt(1 - beta2**t) / (1 - beta1**t) * m / (v_hat.sqrt() + eps) ** (2 * p)
        trajectory.append(theta.clone())
    return trajectory


@pytest.mark.parametrize(
    "p, amsgrad, fused",
    [(p, amsgrad, False) for p in (0.125, 0.25, 0.5) for amsgrad in (True, False)]
    # fused: square roots (2p = 1/4, 1), a general power (2p = 0.6), with and without the max
    + [(0.125, True, True), (0.5, False, True), (0.3, True, True)],
)
def test_first_steps_match_the_equations(p, amsgrad, fused):
    settings = dict(lr=0.1, betas=(0.9, 0.99), eps=1e-3, weight_decay=0.05, p=p, amsgrad=amsgrad)
    shapes = [(3,), (2, 4)]
    inits = [torch.randn(shape, generator=torch.Generator().manual_seed(10 + i), dtype=DTYPE)
             for i, shape in enumerate(shapes)]
    grads = [gradient_sequence(shape, 6, seed=i) for i, shape in enumerate(shapes)]
    params = [init.clone().requires_grad_() for init in inits]
    frozen = torch.randn(5, dtype=DTYPE).requires_grad_()  # never gets a gradient: must stay put
    frozen_before = frozen.detach().clone()
    optimizer = Padam([*params, frozen], fused=fused, **settings)

    trajectory = run_with_gradients(optimizer, params, zip(*grads))

    for index, (init, param_grads) in enumerate(zip(inits, grads)):
        expected = padam_reference(init, param_grads, **settings)
        for step, expected_theta in enumerate(expected):
            torch.testing.assert_close(trajectory[step][index], expected_theta, rtol=1e-12, atol=1e-14)
    assert torch.equal(frozen.detach(), frozen_before)
    # the loss gradient is left as it was (weight decay is added to a copy)
    torch.testing.assert_close(params[0].grad, grads[0][-1], rtol=0, atol=0)
    # the max matters in this sequence, so the test would see a missing or misplaced AMSGrad max
    with_max = padam_reference(inits[0], grads[0], **{**settings, "amsgrad": True})
    without_max = padam_reference(inits[0], grads[0], **{**settings, "amsgrad": False})
    assert (with_max[-1] - without_max[-1]).abs().max() > 1e-4


def loss_function(theta, data):
    return softplus_loss(theta, data, quartic_weight=0.1)


def problem(seed=0):
    return softplus_problem(seed, dimension=5, num_examples=20)


def trajectory_of(optimizer, theta, data, steps):
    trajectory = []
    for _ in range(steps):
        optimizer_step(optimizer, lambda: loss_function(theta, data))
        trajectory.append(theta.detach().clone())
    return trajectory


@pytest.mark.parametrize("eps, rtol", [(0.0, 1e-12), (1e-8, 1e-5)])
def test_p_one_half_is_amsgrad(eps, rtol):
    """p = 1/2 is Adam with the AMSGrad max; the only difference is where eps enters.

    Padam divides by sqrt(v̂) + eps and scales the step by sqrt(1 − β2^t); torch's Adam divides by
    sqrt(v̂)/sqrt(1 − β2^t) + eps, i.e. Padam's eps is torch's eps·sqrt(1 − β2^t). With eps = 0 they
    agree to rounding; with eps = 1e-8 and gradients of order 0.1–1 the relative gap is at most about
    eps/(|g|·sqrt(1 − β2)) ≈ 3e-6 per step.
    """
    init, data = problem()
    settings = dict(lr=0.01, betas=(0.9, 0.999), eps=eps, weight_decay=1e-2)
    theta_padam = init.clone().requires_grad_()
    theta_adam = init.clone().requires_grad_()
    padam = Padam([theta_padam], p=0.5, amsgrad=True, **settings)
    adam = torch.optim.Adam([theta_adam], amsgrad=True, **settings)

    padam_path = trajectory_of(padam, theta_padam, data, 25)
    adam_path = trajectory_of(adam, theta_adam, data, 25)

    for ours, theirs in zip(padam_path, adam_path):
        torch.testing.assert_close(ours, theirs, rtol=rtol, atol=rtol * 1e-2)
    assert (padam_path[-1] - init).abs().max() > 0.05  # it moved: the comparison is not vacuous


def test_small_p_is_sgd_with_ema_momentum():
    """As p → 0 the denominator tends to 1 and Padam is momentum SGD.

    With β2 = 0 the factor sqrt(1 − β2^t) is 1, and Padam's EMA momentum m = (1 − β1)·buf, where buf is
    torch SGD's buffer buf ← β1·buf + g. So Padam(lr, β1, p → 0) is SGD(momentum β1) with the learning
    rate lr·(1 − β1)/(1 − β1^t) at step t (→ lr·(1 − β1): Padam lr 0.1 ≈ SGD lr 0.01). At p = 1e-9 the
    denominator is 1 up to 2p·|log(|g| + eps)| ≈ 1e-8.
    """
    init, data = problem(seed=1)
    lr, beta1 = 0.1, 0.9
    theta_padam = init.clone().requires_grad_()
    theta_sgd = init.clone().requires_grad_()
    padam = Padam([theta_padam], lr=lr, betas=(beta1, 0.0), eps=1e-8, weight_decay=1e-3, p=1e-9)
    sgd = torch.optim.SGD([theta_sgd], lr=lr, momentum=beta1, weight_decay=1e-3)

    for t in range(1, 31):
        optimizer_step(padam, lambda: loss_function(theta_padam, data))
        sgd.param_groups[0]["lr"] = lr * (1 - beta1) / (1 - beta1**t)
        optimizer_step(sgd, lambda: loss_function(theta_sgd, data))
        torch.testing.assert_close(theta_padam.detach(), theta_sgd.detach(), rtol=1e-6, atol=1e-9)
    assert sgd.param_groups[0]["lr"] == pytest.approx(lr * (1 - beta1), rel=0.05)

    # p = 1/8 is far from that limit on the same problem, so the tolerance above is meaningful
    theta_padam8 = init.clone().requires_grad_()
    padam8 = Padam([theta_padam8], lr=lr, betas=(beta1, 0.0), eps=1e-8, weight_decay=1e-3, p=0.125)
    trajectory_of(padam8, theta_padam8, data, 30)
    assert (theta_padam8.detach() - theta_sgd.detach()).abs().max() > 1e-3


def test_schedule_moves_p_linearly_and_lr_geometrically():
    theta = torch.zeros(2, dtype=DTYPE, requires_grad=True)
    optimizer = Padam([theta], lr=0.001, p=0.25, p_final=0.0625, lr_final=0.1)
    num_epochs = 5
    for epoch in range(num_epochs):
        call_epoch_hook(optimizer, epoch, num_epochs)
        fraction = epoch / (num_epochs - 1)
        group = optimizer.param_groups[0]
        assert group["p"] == pytest.approx(0.25 + (0.0625 - 0.25) * fraction, rel=1e-12)
        assert group["lr"] == pytest.approx(0.001 * 100**fraction, rel=1e-12)
    # calling the hook again for the same epoch changes nothing
    call_epoch_hook(optimizer, num_epochs - 1, num_epochs)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1, rel=1e-12)
    assert optimizer.param_groups[0]["p"] == pytest.approx(0.0625, rel=1e-12)


def test_schedule_keeps_the_factors_of_an_lr_scheduler():
    theta = torch.zeros(2, dtype=DTYPE, requires_grad=True)
    optimizer = Padam([theta], lr=0.01, lr_final=0.16)  # ×2 per epoch over 5 epochs
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2], gamma=0.1)
    lrs = []
    for epoch in range(5):
        call_epoch_hook(optimizer, epoch, 5)
        lrs.append(optimizer.param_groups[0]["lr"])
        theta.grad = torch.ones(2, dtype=DTYPE)
        optimizer.step()
        scheduler.step()
    expected = [0.01, 0.02, 0.004, 0.008, 0.016]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert optimizer.param_groups[0]["p"] == 0.125  # no p_final: p untouched


def test_without_schedule_the_hook_changes_nothing():
    theta = torch.zeros(2, dtype=DTYPE, requires_grad=True)
    optimizer = Padam([theta])
    before = dict(optimizer.param_groups[0])
    call_epoch_hook(optimizer, 3, 10)
    assert optimizer.param_groups[0] == before


def test_state_dict_round_trip_restores_moments_and_schedule():
    init, data = problem(seed=2)
    settings = dict(lr=0.002, p=0.25, p_final=0.0625, lr_final=0.05, weight_decay=1e-3)
    num_epochs, steps_per_epoch, interrupt = 6, 3, 3

    def train(optimizer, theta, epochs):
        for epoch in epochs:
            call_epoch_hook(optimizer, epoch, num_epochs)
            for _ in range(steps_per_epoch):
                optimizer_step(optimizer, lambda: loss_function(theta, data))

    theta_full = init.clone().requires_grad_()
    full = Padam([theta_full], **settings)
    train(full, theta_full, range(num_epochs))

    theta_first = init.clone().requires_grad_()
    first = Padam([theta_first], **settings)
    train(first, theta_first, range(interrupt))
    checkpoint = round_trip({"theta": theta_first.detach(), "optimizer": first.state_dict()})

    theta_resumed = checkpoint["theta"].clone().requires_grad_()
    resumed = Padam([theta_resumed])  # default hyperparameters: everything must come from the checkpoint
    resumed.load_state_dict(checkpoint["optimizer"])
    assert resumed.param_groups[0]["p"] == first.param_groups[0]["p"]
    train(resumed, theta_resumed, range(interrupt, num_epochs))

    assert torch.equal(theta_resumed.detach(), theta_full.detach())
    assert resumed.param_groups[0]["p"] == pytest.approx(0.0625)
    assert resumed.param_groups[0]["lr"] == pytest.approx(0.05)


@pytest.mark.parametrize(
    "hyperparameters, message",
    [
        ({"p": 0.0}, "invalid p 0.0"),
        ({"p": 0.6}, "invalid p 0.6"),
        ({"p": -0.125}, "invalid p -0.125"),
        ({"p_final": 0.75}, "invalid p_final 0.75"),
        ({"p_final": 0.0}, "invalid p_final 0.0"),
        ({"lr_final": 0.0}, "invalid lr_final 0.0"),
        ({"lr_final": -0.1}, "invalid lr_final -0.1"),
        ({"lr": -0.1}, "invalid lr -0.1"),
        ({"eps": -1e-8}, "invalid eps -1e-08"),
        ({"weight_decay": -5e-4}, r"invalid weight_decay -0.0005"),
        ({"betas": (1.0, 0.999)}, r"invalid betas\[0\] 1.0"),
        ({"betas": (0.9, -0.1)}, r"invalid betas\[1\] -0.1"),
        ({"betas": 0.9}, r"invalid betas 0.9"),
    ],
)
def test_invalid_hyperparameters_raise(hyperparameters, message):
    with pytest.raises(ValueError, match=message):
        Padam([torch.zeros(2, dtype=DTYPE, requires_grad=True)], **hyperparameters)
    with pytest.raises(ValueError, match=message):
        make_optimizer("padam", [torch.zeros(2, dtype=DTYPE, requires_grad=True)], **hyperparameters)


def test_a_bad_parameter_group_is_rejected_and_leaves_the_optimizer_as_it_was():
    optimizer = Padam([torch.zeros(2, dtype=DTYPE, requires_grad=True)])
    with pytest.raises(ValueError, match="invalid p 0.75"):
        optimizer.add_param_group({"params": [torch.zeros(3, dtype=DTYPE, requires_grad=True)], "p": 0.75})
    assert len(optimizer.param_groups) == 1
    optimizer.add_param_group({"params": [torch.zeros(3, dtype=DTYPE, requires_grad=True)], "p": 0.25, "lr": 0.5})
    group = optimizer.param_groups[1]
    assert (group["p"], group["p_start"], group["lr_start"], group["amsgrad"]) == (0.25, 0.25, 0.5, True)


def test_p_range_is_in_the_message():
    with pytest.raises(ValueError, match=r"\(0, 1/2\]"):
        Padam([torch.zeros(2, dtype=DTYPE, requires_grad=True)], p=0.7)


def test_registry_builds_padam_with_its_defaults():
    expected = {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 5e-4, "p": 0.125,
                "amsgrad": True, "p_final": None, "lr_final": None}
    assert default_hyperparameters("padam") == expected
    optimizer = make_optimizer("padam", [torch.zeros(2, dtype=DTYPE, requires_grad=True)])
    assert isinstance(optimizer, Padam)
    group = optimizer.param_groups[0]
    assert {key: group[key] for key in expected} == expected

    params = [torch.zeros(2, dtype=DTYPE, requires_grad=True)]
    scheduled = make_optimizer("padam", params, p=0.25, p_final=0.0625, lr_final=0.5)
    assert (scheduled.param_groups[0]["p"], scheduled.param_groups[0]["p_final"]) == (0.25, 0.0625)
    assert scheduled.param_groups[0]["lr_final"] == 0.5
