"""STORM against its per-coordinate equations, its gradient-evaluation count, checkpoints, validation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from optbench.optim import make_optimizer
from optbench.optim.storm import STORM
from optbench.protocol import gradient_evaluations_per_step, optimizer_step

from optim_helpers import DTYPE, LeastSquares, batch_loss, flat_parameters, plain_gradient, round_trip

NUM_EXAMPLES, DIMENSION, BATCH_SIZE = 120, 6, 8
PROBLEM = LeastSquares(NUM_EXAMPLES, DIMENSION, noise=0.5)


def batches(num_batches: int, seed: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randperm(NUM_EXAMPLES, generator=generator)[:BATCH_SIZE] for _ in range(num_batches)]


def test_steps_match_the_per_coordinate_equations():
    inputs, targets = PROBLEM.data()
    model = PROBLEM.linear_model()
    k, w, c = 0.3, 0.1, 10.0
    optimizer = STORM(model.parameters(), k=k, w=w, c=c)
    design = torch.cat([inputs, torch.ones(NUM_EXAMPLES, 1, dtype=DTYPE)], dim=1)  # (weight, bias)

    theta = flat_parameters(model).clone()
    previous = direction = step_size = None
    sum_squares = torch.zeros_like(theta)
    momentum_weights = []
    for batch in batches(5):
        optimizer_step(optimizer, lambda: batch_loss(model, inputs[batch], targets[batch]), model)
        gradient = plain_gradient(design[batch], targets[batch], theta)
        if direction is None:
            direction = gradient
        else:
            momentum_weight = torch.clamp(c * step_size**2, max=1.0)  # a_t = min(1, c·η_{t−1}²)
            momentum_weights.append(momentum_weight)
            direction = gradient + (1 - momentum_weight) * (
                direction - plain_gradient(design[batch], targets[batch], previous)
            )
        sum_squares = sum_squares + gradient**2
        step_size = k / (w + sum_squares) ** (1 / 3)
        previous, theta = theta, theta - step_size * direction
        torch.testing.assert_close(flat_parameters(model), theta, rtol=1e-12, atol=1e-13)
    # the test means something only if the correction term is active somewhere and clipped somewhere
    momentum_weights = torch.cat(momentum_weights)
    assert (momentum_weights < 0.9).any() and (momentum_weights == 1.0).any()


def test_large_c_reduces_to_per_coordinate_adaptive_sgd():
    """With a = 1 at every step the recursion forgets d: d_t = g_t, no second gradient needed in the update."""
    inputs, targets = PROBLEM.data()
    model = PROBLEM.linear_model()
    optimizer = STORM(model.parameters(), k=0.1, w=0.1, c=1e12)
    reference = PROBLEM.linear_model()
    sum_squares = [torch.zeros_like(p) for p in reference.parameters()]
    for batch in batches(4):
        optimizer_step(optimizer, lambda: batch_loss(model, inputs[batch], targets[batch]), model)
        reference.zero_grad()
        batch_loss(reference, inputs[batch], targets[batch]).backward()
        with torch.no_grad():
            for p, total in zip(reference.parameters(), sum_squares):
                total += p.grad**2
                p -= 0.1 / (0.1 + total) ** (1 / 3) * p.grad
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-13)


def test_gradient_evaluations_of_the_latest_step():
    inputs, targets = PROBLEM.data()
    model = PROBLEM.linear_model()
    optimizer = make_optimizer("storm", model.parameters())
    assert isinstance(optimizer, STORM)
    assert optimizer.defaults == {"k": 0.1, "w": 0.1, "c": 100.0}
    closure_calls = []
    counts = []
    for batch in batches(3):
        def compute_loss():
            closure_calls.append(1)
            return batch_loss(model, inputs[batch], targets[batch])

        optimizer_step(optimizer, compute_loss, model)
        counts.append(gradient_evaluations_per_step(optimizer))
    # the first step has no previous iterate to correct: one batch gradient; later steps two
    assert counts == [1, 2, 2]
    assert len(closure_calls) == sum(counts)


def test_second_step_without_closure_raises():
    inputs, targets = PROBLEM.data()
    model = PROBLEM.linear_model()
    optimizer = STORM(model.parameters())
    batch_loss(model, inputs[:8], targets[:8]).backward()
    optimizer.step()  # the first step needs no closure
    optimizer.zero_grad()
    batch_loss(model, inputs[8:16], targets[8:16]).backward()
    with pytest.raises(RuntimeError, match="closure"):
        optimizer.step()


def test_closure_pass_leaves_batchnorm_statistics_alone():
    inputs, targets = PROBLEM.data()
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(DIMENSION, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1)).double()
    optimizer = STORM(model.parameters())
    for batch in batches(3):
        expected_model = copy.deepcopy(model)
        expected_model(inputs[batch])  # one train-mode pass at the current iterate
        optimizer_step(optimizer, lambda: batch_loss(model, inputs[batch], targets[batch]), model)
        for (name, value), expected in zip(model[1].named_buffers(), expected_model[1].buffers()):
            assert torch.equal(value, expected), name


def test_state_dict_round_trip_continues_identically():
    inputs, targets = PROBLEM.data()
    model = PROBLEM.linear_model()
    optimizer = STORM(model.parameters(), k=0.3, w=0.1, c=3.0)
    all_batches = batches(8)

    def train(optimizer, model, batch_list):
        for batch in batch_list:
            optimizer_step(optimizer, lambda: batch_loss(model, inputs[batch], targets[batch]), model)

    train(optimizer, model, all_batches[:4])
    checkpoint = round_trip({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    resumed_model = PROBLEM.linear_model(seed=99)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = STORM(resumed_model.parameters(), k=0.3, w=0.1, c=3.0)
    resumed.load_state_dict(checkpoint["optimizer"])
    assert gradient_evaluations_per_step(resumed) == 2

    train(optimizer, model, all_batches[4:])
    train(resumed, resumed_model, all_batches[4:])
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(p, q)


def test_storm_decreases_a_least_squares_loss():
    inputs, targets = PROBLEM.data()
    design = torch.cat([inputs, torch.ones(NUM_EXAMPLES, 1, dtype=DTYPE)], dim=1)
    solution = torch.linalg.lstsq(design, targets.unsqueeze(1)).solution.squeeze(1)
    optimum = float(0.5 * ((design @ solution - targets) ** 2).mean())
    model = PROBLEM.linear_model()
    optimizer = STORM(model.parameters())
    with torch.no_grad():
        initial_gap = float(batch_loss(model, inputs, targets)) - optimum
    for batch in batches(150):
        optimizer_step(optimizer, lambda: batch_loss(model, inputs[batch], targets[batch]), model)
    with torch.no_grad():
        final_gap = float(batch_loss(model, inputs, targets)) - optimum
    assert initial_gap > 1.0
    assert final_gap < 0.01 * initial_gap


@pytest.mark.parametrize(
    "hyperparameters, name",
    [({"k": -0.1}, "k"), ({"k": 0.0}, "k"), ({"w": -1.0}, "w"), ({"w": 0.0}, "w"), ({"c": -1.0}, "c")],
)
def test_invalid_hyperparameters_raise_naming_the_parameter(hyperparameters, name):
    model = PROBLEM.linear_model()
    with pytest.raises(ValueError, match=f"invalid {name} "):
        STORM(model.parameters(), **hyperparameters)
    with pytest.raises(ValueError, match=f"invalid {name} "):
        make_optimizer("storm", model.parameters(), **hyperparameters)


def test_lr_is_not_a_storm_hyperparameter():
    with pytest.raises(ValueError, match="lr"):
        make_optimizer("storm", PROBLEM.linear_model().parameters(), lr=0.1)


def test_training_loop_counts_one_gradient_on_the_first_step_and_two_afterwards():
    from optbench.config import RunConfig
    from optbench.training import train

    num_examples, num_epochs, batch_size = 100, 2, 32
    config = RunConfig(
        optimizer="storm", num_epochs=num_epochs, dataset="digits", model="mlp", model_options={"hidden_sizes": [16]},
        batch_size=batch_size, max_train_examples=num_examples,
    )
    record = train(config, device="cpu", progress=False)
    assert record["status"] == "finished"
    # 2 per example per step, except the very first batch (a full one of 32), which needs no correction
    assert [epoch["grad_evals"] for epoch in record["epochs"]] == [
        2 * num_examples * (epoch + 1) - batch_size for epoch in range(num_epochs)
    ]
