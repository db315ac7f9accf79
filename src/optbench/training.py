"""Train one configuration and return its record: per-epoch metrics, status and provenance."""

from __future__ import annotations

import datetime
import functools
import math
import os
import platform
import subprocess
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from .progress import progress_bar

from . import __version__, checkpoints, data, models, optim, protocol
from .config import RunConfig, canonical_json

#: the held-out validation split and the training subset are the same for every seed
SPLIT_SEED = 0
EVALUATION_BATCH_SIZE = 1000


def configure_threads() -> None:
    """Apply ``$OPTBENCH_NUM_THREADS`` to torch's CPU thread pool (small networks often run fastest on one)."""
    check_environment()
    requested = os.environ.get("OPTBENCH_NUM_THREADS")
    if requested:
        torch.set_num_threads(int(requested))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.lru_cache(maxsize=2)
def _cached_dataset(name: str, image_size: int | None, device: str) -> data.ImageData:
    return data.load_dataset(name, image_size=image_size, device=device)


def prepare_data(config: RunConfig, device: torch.device) -> tuple[data.ImageData, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dataset, train images, train labels, evaluation images, evaluation labels) of a configuration."""
    dataset = _cached_dataset(config.dataset, config.image_size, str(device))
    train_images, train_labels = dataset.train_images, dataset.train_labels
    eval_images, eval_labels = dataset.test_images, dataset.test_labels
    if config.validation_fraction > 0:
        train_index, validation_index = data.validation_split(train_labels, config.validation_fraction, SPLIT_SEED)
        train_index, validation_index = train_index.to(train_images.device), validation_index.to(train_images.device)
        eval_images, eval_labels = train_images[validation_index], train_labels[validation_index]
        train_images, train_labels = train_images[train_index], train_labels[train_index]
    if config.max_train_examples is not None and config.max_train_examples < len(train_labels):
        subset = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
        subset = subset[: config.max_train_examples].sort().values.to(train_images.device)
        train_images, train_labels = train_images[subset], train_labels[subset]
    if config.num_folds is not None:
        train_index, held_out_index = data.stratified_fold(train_labels, config.num_folds, config.fold, SPLIT_SEED)
        train_index, held_out_index = train_index.to(train_images.device), held_out_index.to(train_images.device)
        eval_images, eval_labels = train_images[held_out_index], train_labels[held_out_index]
        train_images, train_labels = train_images[train_index], train_labels[train_index]
    return dataset, train_images, train_labels, eval_images, eval_labels


def build_model(config: RunConfig, dataset: data.ImageData, device: torch.device) -> torch.nn.Module:
    model = models.make_model(config.model, dataset.in_channels, dataset.image_size, dataset.num_classes, **config.model_options)
    return model.to(device)


def build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer):
    if config.scheduler != "none" and not all("lr" in group for group in optimizer.param_groups):
        raise ValueError(
            f"invalid scheduler {config.scheduler!r} for optimizer {config.optimizer!r}: it has no learning rate "
            "'lr' to schedule; allowed: scheduler 'none'"
        )
    if config.scheduler == "multistep":
        options = {"gamma": 0.1, **config.scheduler_options}
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(options["milestones"]), gamma=options["gamma"])
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.num_epochs, eta_min=config.scheduler_options.get("eta_min", 0.0)
        )
    return None


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mean, std) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) on a whole split."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    with torch.no_grad():
        for start in range(0, len(labels), EVALUATION_BATCH_SIZE):
            inputs = data.normalize(images[start : start + EVALUATION_BATCH_SIZE], mean, std)
            targets = labels[start : start + EVALUATION_BATCH_SIZE]
            logits = model(inputs)
            total_loss += F.cross_entropy(logits, targets, reduction="sum").double()
            correct += (logits.argmax(dim=1) == targets).sum()
    model.train(was_training)
    return total_loss.item() / len(labels), correct.item() / len(labels)


def full_gradient_function(model, optimizer, images, labels, mean, std, batch_size):
    """A function leaving the mean training-set gradient in ``p.grad`` (train mode, BatchNorm statistics frozen)."""

    def full_gradient() -> None:
        optimizer.zero_grad(set_to_none=True)
        with protocol.frozen_batchnorm_statistics(model):
            for start in range(0, len(labels), batch_size):
                inputs = data.normalize(images[start : start + batch_size], mean, std)
                targets = labels[start : start + batch_size]
                loss = F.cross_entropy(model(inputs), targets, reduction="sum") / len(labels)
                loss.backward()

    return full_gradient


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a torch device that exists here (None: CUDA if available, else the CPU)."""
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"invalid device {device!r}: use 'cpu', 'cuda' or 'cuda:<index>'") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r} is not available: this machine has no CUDA device; use 'cpu'")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"invalid device {device!r}: this machine has cuda:0 to cuda:{count - 1}")
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r} is not available here; use 'cpu'")
    elif resolved.type != "cpu":
        raise ValueError(f"unsupported device {device!r}: use 'cpu', 'cuda' or 'cuda:<index>'")
    return resolved


def check_environment() -> None:
    """Check the environment variables a run reads (before anything is trained or written)."""
    requested = os.environ.get("OPTBENCH_NUM_THREADS")
    if requested and (not requested.isdigit() or int(requested) < 1):
        raise ValueError(f"invalid OPTBENCH_NUM_THREADS {requested!r}: it must be an integer >= 1")


def preflight(configs, device: torch.device | str | None = None) -> None:
    """Raise now what training ``configs`` would raise later: environment, device, data, model shapes.

    Validates every configuration, loads each dataset split they use (naming a missing dataset and how to
    supply it) and builds each model on the meta device (no memory), so that a sweep fails before its
    first run rather than hours into it.
    """
    configs = list(configs)
    for config in configs:
        config.validate()
    if not configs:
        return
    check_environment()
    device = resolve_device(device)
    shapes, built = {}, set()
    for config in configs:
        key = (config.dataset, config.image_size, config.validation_fraction, config.max_train_examples, config.num_folds, config.fold)
        if key not in shapes:
            dataset = prepare_data(config, device)[0]
            shapes[key] = (dataset.in_channels, dataset.image_size, dataset.num_classes)
        # a scheduler needs a learning rate to act on (STORM has none)
        build_scheduler(config, optim.make_optimizer(config.optimizer, [torch.nn.Parameter(torch.zeros(1))], **config.hyperparameters))
        model_key = (config.model, canonical_json(config.model_options), shapes[key])
        if model_key not in built:
            with torch.device("meta"):
                models.make_model(config.model, *shapes[key], **config.model_options)
            built.add(model_key)


def start_run(config: RunConfig, dataset: data.ImageData, device: torch.device):
    """A fresh run's (model, optimizer, scheduler, data generator), seeded by ``config.seed``."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_model(config, dataset, device)
    if config.init == "metainit":
        from .metainit import metainit

        steps = {} if config.metainit_steps is None else {"steps": config.metainit_steps}
        metainit(model, (dataset.in_channels, dataset.image_size, dataset.image_size), dataset.num_classes, **steps)
    optimizer = optim.make_optimizer(config.optimizer, model.parameters(), **config.hyperparameters)
    scheduler = build_scheduler(config, optimizer)
    return model, optimizer, scheduler, generator


def train(
    config: RunConfig,
    device: torch.device | str | None = None,
    progress: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int | None = 1,
    on_epoch_end: Callable[[dict], None] | None = None,
    before_step: Callable[[int, int, torch.nn.Module, torch.optim.Optimizer], None] | None = None,
) -> dict:
    """Train ``config`` and return its record (not yet sealed or saved).

    With ``checkpoint_path``, the run's whole state is written there (atomically, see
    :mod:`optbench.checkpoints`) after every ``checkpoint_every``-th epoch but the last, and a run that
    finds a checkpoint of its configuration there resumes from it; on the CPU the resumed run's metrics
    equal an uninterrupted run's. The checkpoint is left in place: the caller deletes it once the record
    is saved (:func:`optbench.runs.run` does). ``on_epoch_end(row)`` is called with each epoch's metrics,
    after that epoch's checkpoint. ``before_step(epoch, step, model, optimizer)`` is called before each
    training step (epoch and step counted from 0, after SVRG's snapshot), to measure the iterate; it must
    leave the parameters, the optimizer's state and the data generator as it found them.

    An epoch whose training or test loss is not finite ends the run with status ``"diverged"`` and its
    ``diverged_epoch``; its non-finite metrics are NaN here (null in the stored JSON).
    """
    config.validate()
    checkpoints.check_checkpoint_every(checkpoint_every)
    configure_threads()
    device = resolve_device(device)
    dataset, train_images, train_labels, eval_images, eval_labels = prepare_data(config, device)
    model, optimizer, scheduler, generator = start_run(config, dataset, device)

    epochs: list[dict] = []
    grad_evals, elapsed, resumed_from = 0, 0.0, None
    checkpoint = checkpoints.load_checkpoint(Path(checkpoint_path), config) if checkpoint_path is not None else None
    if checkpoint is not None:
        try:
            epochs, grad_evals, elapsed = checkpoints.restore_checkpoint(checkpoint, model, optimizer, scheduler, generator, device)
            resumed_from = len(epochs)
        except Exception as error:  # a state that does not fit this code: start over from clean objects
            warnings.warn(
                f"ignoring checkpoint {checkpoint_path}: it does not fit the run ({error}); the run starts from scratch",
                checkpoints.CheckpointWarning, stacklevel=2,
            )
            epochs, grad_evals, elapsed = [], 0, 0.0
            model, optimizer, scheduler, generator = start_run(config, dataset, device)
        del checkpoint
    full_gradient = full_gradient_function(
        model, optimizer, train_images, train_labels, dataset.mean, dataset.std, EVALUATION_BATCH_SIZE
    )

    status, diverged_epoch = "finished", None
    start_epoch = len(epochs)
    bar = progress_bar(range(start_epoch, config.num_epochs), desc=config.run_id, leave=False, disable=not progress,
               initial=start_epoch, total=config.num_epochs)
    for epoch in bar:
        model.train()
        started = time.perf_counter()
        protocol.call_epoch_hook(optimizer, epoch, config.num_epochs)
        if protocol.take_snapshot_if_needed(optimizer, full_gradient):
            grad_evals += len(train_labels)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for step, index in enumerate(data.batch_indices(len(train_labels), config.batch_size, generator)):
            if before_step is not None:
                before_step(epoch, step, model, optimizer)
            index = index.to(device)
            images = train_images[index]
            if config.augment:
                images = data.augment(images, generator)
            inputs, targets = data.normalize(images, dataset.mean, dataset.std), train_labels[index]
            outputs = {}

            def compute_loss():
                outputs["logits"] = model(inputs)
                return F.cross_entropy(outputs["logits"], targets)

            # the first evaluation's logits are the ones the step's loss was computed from
            loss = protocol.optimizer_step(optimizer, compute_loss, model)
            grad_evals += len(index) * protocol.gradient_evaluations_per_step(optimizer)
            loss_sum += loss.double() * len(index)
            correct += (outputs["logits"].detach().argmax(dim=1) == targets).sum()
        seconds = time.perf_counter() - started
        elapsed += seconds
        train_loss = loss_sum.item() / len(train_labels)
        current_lr = optimizer.param_groups[0].get("lr", float("nan"))
        if scheduler is not None:
            scheduler.step()
        if not math.isfinite(train_loss):
            test_loss, test_accuracy = float("nan"), float("nan")
        else:
            test_loss, test_accuracy = evaluate(model, eval_images, eval_labels, dataset.mean, dataset.std)
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            status, diverged_epoch = "diverged", epoch + 1
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_accuracy": correct.item() / len(train_labels),
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "test_error": 1.0 - test_accuracy,
            "seconds": seconds,
            "elapsed_seconds": elapsed,
            "grad_evals": grad_evals,
            "lr": float(current_lr),
        }
        epochs.append(row)
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{test_accuracy:.3f}")
        due = checkpoint_every is not None and (epoch + 1) % checkpoint_every == 0
        if checkpoint_path is not None and due and status == "finished" and epoch + 1 < config.num_epochs:
            checkpoints.save_checkpoint(
                Path(checkpoint_path), config, model, optimizer, scheduler, generator, epochs, grad_evals, elapsed, device
            )
        if on_epoch_end is not None:
            on_epoch_end(dict(row))
        if status == "diverged":
            break
    bar.close()
    return {
        "id": config.run_id,
        "config": config.to_dict(),
        "status": status,
        "diverged_epoch": diverged_epoch,
        "epochs": epochs,
        "provenance": {**provenance(device), "resumed_from_epoch": resumed_from},
    }


def provenance(device: torch.device) -> dict:
    """Where and with what a record was computed."""
    return {
        "optbench_version": __version__,
        "git_commit": _git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "num_threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
