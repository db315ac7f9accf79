"""How noisy a stochastic gradient estimate is at a fixed iterate: the plain minibatch gradient against SVRG's
variance-reduced estimate, measured along a training run.

At parameters θ, for K minibatches B_1, …, B_K drawn without replacement (the same batches for both)

    g_j = ∇f_{B_j}(θ)                          the plain minibatch gradient (SGD's estimate)
    v_j = ∇f_{B_j}(θ) − ∇f_{B_j}(x̃) + μ         SVRG's estimate, x̃ and μ from the optimizer's last snapshot

and the variance of an estimator is the trace of its sample covariance over the batches,

    Var = 1/(K − 1) · Σ_j ‖g_j − ḡ‖²,

so Var_SVRG / Var_SGD < 1 is variance reduction at work (Johnson & Zhang 2013). The correction
∇f_B(θ) − ∇f_B(x̃) cancels the batch's noise only while θ stays near x̃, so each measurement also gives the
iterate's drift from the snapshot, ‖θ − x̃‖ / ‖x̃‖. Defazio & Bottou ("On the
Ineffectiveness of Variance Reduced Optimization for Deep Learning", NeurIPS 2019) measured this ratio on
LeNet and on deep ResNets. Every gradient is taken as in a training step: the model in training mode (BatchNorm
normalizes with the batch's statistics) with the running statistics frozen.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from . import data, protocol
from .checks import check_count
from .config import RunConfig, canonical_json
from .progress import progress_bar
from .store import ResultsStore, load_measurement, save_measurement

MEASUREMENT_SCHEMA = 1
#: the measurement's own batches come from this generator offset from the run's seed, never from the run's
BATCH_SEED_OFFSET = 7919
COLUMNS = ["epoch", "step", "epochs_done", "variance_sgd", "variance_svrg", "ratio", "drift"]


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([tensor.detach().reshape(-1).double() for tensor in tensors])


def _trace_of_covariance(samples: torch.Tensor) -> float:
    # the trace is the sum of the coordinates' unbiased variances
    return float(samples.var(dim=0).sum())


def estimator_variances(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> dict[str, float]:
    """Variances (trace of the sample covariance over ``batches``) of the plain minibatch gradient and of SVRG's
    estimate at the model's current parameters.

    ``optimizer`` is an :class:`~optbench.optim.svrg.SVRG` that has taken its snapshot. The parameters,
    BatchNorm running statistics, the optimizer's state and the model's train/eval mode are left as they were;
    ``p.grad`` is cleared. Returns ``variance_sgd``, ``variance_svrg``, their ``ratio`` (SVRG / SGD) and the
    ``drift`` ‖θ − x̃‖ / ‖x̃‖ of the parameters from the snapshot.
    """
    if len(batches) < 2:
        raise ValueError(f"invalid number of batches {len(batches)}: a variance needs at least 2 batches")
    if not hasattr(optimizer, "variance_reduced_gradient"):
        raise ValueError(f"invalid optimizer {type(optimizer).__name__}: the measurement needs SVRG's variance-reduced estimate")
    was_training = model.training
    model.train()
    plain, reduced = [], []
    try:
        with protocol.frozen_batchnorm_statistics(model):
            for inputs, targets in batches:
                def evaluate() -> torch.Tensor:
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(model(inputs), targets)
                    loss.backward()
                    return loss

                evaluate()
                gradients = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
                plain.append(_flat(gradients))
                # the estimate's parameters are those with a gradient, in the same order
                reduced.append(_flat(optimizer.variance_reduced_gradient(evaluate)))
    finally:
        optimizer.zero_grad(set_to_none=True)
        model.train(was_training)
    variance_sgd = _trace_of_covariance(torch.stack(plain))
    variance_svrg = _trace_of_covariance(torch.stack(reduced))
    ratio = variance_svrg / variance_sgd if variance_sgd > 0 else float("nan")
    params = [p for group in optimizer.param_groups for p in group["params"] if "snapshot" in optimizer.state[p]]
    current, snapshot = _flat(params), _flat([optimizer.state[p]["snapshot"] for p in params])
    scale = float(snapshot.norm())
    drift = float((current - snapshot).norm()) / scale if scale > 0 else float("nan")
    return {"variance_sgd": variance_sgd, "variance_svrg": variance_svrg, "ratio": ratio, "drift": drift}


def measurement_steps(steps_per_epoch: int, points_per_epoch: int) -> list[int]:
    """The steps (counted from 0) of an epoch before which the variance is measured: ``points_per_epoch`` evenly
    spaced ones ending just before the epoch's last step, where the iterate is farthest from the snapshot.
    Step 0 (the iterate is the snapshot, SVRG's variance is 0 by construction) only when an epoch has one step."""
    chosen = {max(0, (point * steps_per_epoch) // points_per_epoch - 1) for point in range(1, points_per_epoch + 1)}
    positive = sorted(step for step in chosen if step > 0)
    return positive or [0]


def measurement_key(config: RunConfig, points_per_epoch: int, num_batches: int) -> str:
    """The store key of a variance measurement along ``config``'s training."""
    content = {"schema": MEASUREMENT_SCHEMA, "run": config.run_id, "points_per_epoch": points_per_epoch, "batches": num_batches}
    return "variance-" + hashlib.sha256(canonical_json(content).encode()).hexdigest()[:16]


def measure_along_training(
    config: RunConfig,
    points_per_epoch: int = 2,
    num_batches: int = 8,
    store: ResultsStore | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Train SVRG configuration ``config`` and measure :func:`estimator_variances` at ``points_per_epoch``
    steps of every epoch (:func:`measurement_steps`) on ``num_batches`` batches of its batch size.

    The measurement's batches (and their augmentation) come from their own generator, so the training is the
    run's own. One row per measurement: ``epoch`` (from 1), ``step``, ``epochs_done`` (epochs of training
    behind the iterate), the two variances, their ratio and the drift from the snapshot. Loaded from ``store`` (``measurements/``) when there,
    else measured and stored; a run that diverges ends the measurement at that epoch.
    """
    from .training import configure_threads, prepare_data, resolve_device, train

    check_count("points_per_epoch", points_per_epoch, 1)
    check_count("num_batches", num_batches, 2)
    config.validate()
    if config.optimizer != "svrg":
        raise ValueError(f"invalid optimizer {config.optimizer!r} for the variance measurement: it measures 'svrg' runs")
    store = store if store is not None else ResultsStore()
    path = store.root / "measurements" / f"{measurement_key(config, points_per_epoch, num_batches)}.json"
    stored = load_measurement(path, MEASUREMENT_SCHEMA, COLUMNS)
    if stored is not None:
        return stored
    configure_threads()
    device = resolve_device(device)
    dataset, train_images, train_labels, _, _ = prepare_data(config, device)
    steps_per_epoch = -(-len(train_labels) // config.batch_size)
    steps = set(measurement_steps(steps_per_epoch, points_per_epoch))
    generator = torch.Generator().manual_seed(config.seed + BATCH_SEED_OFFSET)
    rows = []
    bar = progress_bar(total=config.num_epochs * len(steps), desc=f"variance {config.run_id}", disable=not progress, leave=False)

    def measure(epoch: int, step: int, model, optimizer) -> None:
        if step not in steps:
            return
        order = torch.randperm(len(train_labels), generator=generator)
        batches = []
        for index in order.split(config.batch_size)[:num_batches]:
            index = index.to(device)
            images = train_images[index]
            if config.augment:
                images = data.augment(images, generator)
            batches.append((data.normalize(images, dataset.mean, dataset.std), train_labels[index]))
        if len(batches) < 2:
            raise ValueError(f"invalid batch_size {config.batch_size}: the training set of {len(train_labels)} examples "
                             "holds fewer than 2 batches to measure a variance on")
        rows.append({"epoch": epoch + 1, "step": step, "epochs_done": epoch + step / steps_per_epoch,
                     **estimator_variances(model, optimizer, batches)})
        bar.update(1)

    train(config, device=device, progress=False, before_step=measure)
    bar.close()
    save_measurement(path, rows, MEASUREMENT_SCHEMA, {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__})
    return pd.DataFrame(rows, columns=COLUMNS)
