"""AdaSGD against its equations, its AdaHessian and SGD limits, the dynamic weights, the Hessian schedule and
cost accounting, checkpoints (RNG included), validation."""

from __future__ import annotations

import copy

import pytest
import torch

from optbench.optim import default_hyperparameters, make_optimizer
from optbench.optim.adahessian import AdaHessian
from optbench.optim.adasgd import AdaSGD
from optbench.protocol import call_epoch_hook, gradient_evaluations_per_step, optimizer_step

from optim_helpers import (
    DTYPE,
    classification_loss,
    conv_net,
    count_hessian_vector_products,
    image_batches,
    round_trip,
    train_classifier,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")


def test_adaptive_limit_is_adahessian():
    data = image_batches(6)
    model, reference_model = conv_net(), conv_net()
    common = dict(lr=0.05, betas=(0.9, 0.99), eps=1e-4, weight_decay=0.01, hessian_power=1.0, seed=3)
    ours = AdaSGD(model.parameters(), momentum=0.9, dynamic_weights=False, sgd_weight=0.0, adam_weight=1.0, **common)
    train_classifier(model, ours, data)
    train_classifier(reference_model, AdaHessian(reference_model.parameters(), **common), data)
    for a, b in zip(model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_sgd_limit_is_torch_sgd_and_takes_no_hessian_vector_product(monkeypatch):
    calls = count_hessian_vector_products(monkeypatch)
    data = image_batches(8)
    model, reference_model = conv_net(), conv_net()
    ours = AdaSGD(model.parameters(), lr=0.05, momentum=0.8, weight_decay=0.01, dynamic_weights=False,
                  sgd_weight=1.0, adam_weight=0.0)
    assert ours.create_graph is False and ours.gradient_evaluations_per_step == 1
    train_classifier(model, ours, data)
    reference = torch.optim.SGD(reference_model.parameters(), lr=0.05, momentum=0.8, weight_decay=0.01)
    train_classifier(reference_model, reference, data)
    assert calls == []
    assert gradient_evaluations_per_step(ours) == 1
    for a, b in zip(model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_mixed_steps_match_the_equations():
    """Constant weights 0.4/0.7 on f(θ) = ½θᵀAθ + cᵀθ with θ = (2×2 kernel bank W, bias b), H = A known."""
    generator = torch.Generator().manual_seed(0)
    root = torch.randn(11, 11, generator=generator, dtype=DTYPE)
    hessian, shift = (root + root.T) / 2, torch.randn(11, generator=generator, dtype=DTYPE)
    weight = torch.randn(2, 1, 2, 2, generator=generator, dtype=DTYPE, requires_grad=True)
    bias = torch.randn(3, generator=generator, dtype=DTYPE, requires_grad=True)
    lr, momentum, (beta1, beta2), eps, wd, sgd_weight, adam_weight = 0.05, 0.9, (0.8, 0.95), 1e-3, 0.02, 0.4, 0.7
    optimizer = AdaSGD([weight, bias], lr=lr, momentum=momentum, betas=(beta1, beta2), eps=eps, weight_decay=wd,
                       dynamic_weights=False, sgd_weight=sgd_weight, adam_weight=adam_weight)
    drawn = []
    sample = optimizer.rademacher_probes
    optimizer.rademacher_probes = lambda params: drawn.append(sample(params)) or drawn[-1]

    x = torch.cat([weight.detach().reshape(-1), bias.detach()])
    buffer, m, v = None, torch.zeros(11, dtype=DTYPE), torch.zeros(11, dtype=DTYPE)
    for t in range(1, 5):
        optimizer.zero_grad()
        current = torch.cat([weight.reshape(-1), bias])
        (0.5 * current @ hessian @ current + shift @ current).backward(create_graph=True)
        optimizer.step()

        z = torch.cat([drawn[-1][0].reshape(-1), drawn[-1][1]])
        g = hessian @ x + shift
        hz = (hessian @ z).abs()
        d = torch.cat([hz[:8].reshape(2, 4).mean(dim=1).repeat_interleave(4), hz[8:]])
        sgd_gradient = g + wd * x
        buffer = sgd_gradient.clone() if buffer is None else momentum * buffer + sgd_gradient
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * d**2
        bias_correction1 = 1 - beta1**t
        adahessian_step = lr / bias_correction1
        adahessian_direction = m / ((v / (1 - beta2**t)).sqrt() + eps) + bias_correction1 * wd * x
        merged_lr = sgd_weight * lr + adam_weight * adahessian_step
        x = x - merged_lr * (sgd_weight * buffer + adam_weight * adahessian_direction)
        torch.testing.assert_close(torch.cat([weight.detach().reshape(-1), bias.detach()]), x, rtol=1e-12, atol=1e-14)


def test_dynamic_weights_by_default_and_pure_sgd_after_the_horizon(monkeypatch):
    calls = count_hessian_vector_products(monkeypatch)
    data = image_batches(6)
    model = conv_net()
    optimizer = make_optimizer("adasgd", model.parameters(), dynamic_epochs=2)
    group = optimizer.param_groups[0]
    assert (group["sgd_weight"], group["adam_weight"]) == (0.0, 1.0)
    evaluations = []
    for epoch in range(3):
        call_epoch_hook(optimizer, epoch, 10)
        assert group["adam_weight"] == pytest.approx(max(0.0, 1 - epoch / 2))
        assert optimizer.create_graph is (epoch < 2)
        for inputs, targets in data[2 * epoch: 2 * epoch + 2]:
            optimizer_step(optimizer, lambda: classification_loss(model, inputs, targets), model)
            evaluations.append(gradient_evaluations_per_step(optimizer))
    assert evaluations == [2, 2, 2, 2, 1, 1]
    assert len(calls) == 4


def test_hessian_every_is_counted_by_the_loop(monkeypatch):
    calls = count_hessian_vector_products(monkeypatch)
    model = conv_net()
    optimizer = AdaSGD(model.parameters(), hessian_every=3, dynamic_weights=False)
    counted = 0
    for inputs, targets in image_batches(9):
        optimizer_step(optimizer, lambda: classification_loss(model, inputs, targets), model)
        counted += gradient_evaluations_per_step(optimizer)
    assert len(calls) == 3
    assert counted == 9 + 3


def test_state_dict_round_trip_continues_identically():
    data = image_batches(8)
    model = conv_net()
    optimizer = AdaSGD(model.parameters(), hessian_every=2, dynamic_epochs=4, seed=1)
    call_epoch_hook(optimizer, 1, 10)
    train_classifier(model, optimizer, data[:3])

    resumed_model = copy.deepcopy(model)
    resumed = AdaSGD(resumed_model.parameters(), hessian_every=2, dynamic_epochs=4, seed=2)
    resumed.load_state_dict(round_trip(optimizer.state_dict()))
    assert resumed.param_groups[0]["adam_weight"] == pytest.approx(0.75)
    train_classifier(model, optimizer, data[3:])
    train_classifier(resumed_model, resumed, data[3:])
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_converges_on_a_small_classification_problem():
    model = conv_net()
    optimizer = make_optimizer("adasgd", model.parameters(), lr=0.05)
    inputs, targets = image_batches(1, seed=4)[0]
    initial = classification_loss(model, inputs, targets).item()
    for epoch in range(5):
        call_epoch_hook(optimizer, epoch, 5)
        for _ in range(6):
            optimizer_step(optimizer, lambda: classification_loss(model, inputs, targets), model)
    assert classification_loss(model, inputs, targets).item() < 0.2 * initial


def test_registered_defaults():
    assert default_hyperparameters("adasgd") == {
        "lr": 0.1, "momentum": 0.95, "betas": (0.9, 0.999), "eps": 1e-4, "weight_decay": 5e-4,
        "hessian_power": 1.0, "hessian_every": 1, "dynamic_weights": True, "dynamic_epochs": None,
        "sgd_weight": 0.5, "adam_weight": 0.5,
    }
    optimizer = make_optimizer("adasgd", conv_net().parameters(), seed=8)
    assert isinstance(optimizer, AdaSGD) and optimizer.seed == 8
    assert optimizer.create_graph is True and optimizer.gradient_evaluations_per_step == 2


@pytest.mark.parametrize(
    "hyperparameters, name",
    [
        ({"lr": -0.1}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"eps": -1.0}, "eps"),
        ({"betas": (-0.1, 0.9)}, "betas"),
        ({"hessian_power": 2.0}, "hessian_power"),
        ({"hessian_every": 0}, "hessian_every"),
        ({"sgd_weight": -0.1}, "sgd_weight"),
        ({"dynamic_epochs": 0}, "dynamic_epochs"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_invalid_hyperparameters_raise(hyperparameters, name):
    with pytest.raises(ValueError, match=name):
        AdaSGD(conv_net().parameters(), **hyperparameters)
