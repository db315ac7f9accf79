"""Train one configuration and return its record: per-epoch metrics, status and provenance.

:func:`train` is four steps: :func:`set_up` (data on the device, model, optimizer, a checkpoint to resume
from), then per epoch :func:`train_epoch`, :func:`evaluate_epoch` and :func:`checkpoint_if_due`.

On a CUDA device the dataset stays on the GPU as uint8 and each batch is gathered, augmented and
normalized there (every random number of an epoch is drawn up front on the CPU, so the draws are the
same on every device); the model and its inputs are channels_last, and an epoch's seconds are measured
with CUDA events. None of this happens on the CPU, whose records it leaves unchanged. ``precision``
and ``compile_model`` (:class:`~optbench.config.RunConfig`) apply on every device.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
import os
import platform
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from .progress import progress_bar

from . import __version__, checkpoints, data, models, optim, protocol
from .config import RunConfig, canonical_json
from .records import evaluation_split
from .optim.fused import COMPILERS, cpp_compiler

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


def input_memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA (what cuDNN's fastest convolutions take), plain NCHW elsewhere."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def build_model(config: RunConfig, dataset: data.ImageData, device: torch.device) -> torch.nn.Module:
    model = models.make_model(config.model, dataset.in_channels, dataset.image_size, dataset.num_classes, **config.model_options)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def precision_context(device: torch.device, precision: str):
    """The context of a forward pass: bfloat16 autocast on ``device`` for "bf16", nothing for "fp32"."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_device_settings(config: RunConfig, device: torch.device) -> None:
    """Raise ``ValueError`` if ``config``'s precision or compilation cannot run on ``device``."""
    if config.precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"invalid precision 'bf16' on {torch.cuda.get_device_name(device)}: it has no bfloat16 support; use precision fp32")
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"invalid precision 'bf16' on device {str(device)!r}: bf16 runs on 'cpu' and 'cuda'; use precision fp32")
    if config.compile_model and device.type == "cpu" and cpp_compiler() is None:
        raise ValueError(
            "invalid compile_model True on the CPU: torch.compile needs a C++ compiler for CPU kernels and none of "
            f"$CXX, {', '.join(COMPILERS)} was found; install one or use compile_model false"
        )


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


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, to_inputs: data.Normalization,
             precision: str = "fp32") -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) on a whole split."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    with torch.no_grad():
        for start in range(0, len(labels), EVALUATION_BATCH_SIZE):
            inputs = to_inputs(images[start : start + EVALUATION_BATCH_SIZE])
            targets = labels[start : start + EVALUATION_BATCH_SIZE]
            with precision_context(images.device, precision):
                logits = model(inputs)
            total_loss += F.cross_entropy(logits.float(), targets, reduction="sum").double()
            correct += (logits.argmax(dim=1) == targets).sum()
    model.train(was_training)
    return total_loss.item() / len(labels), correct.item() / len(labels)


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

    Validates every configuration and what it asks of the device (bf16, a compiler for ``compile_model``),
    loads each dataset split they use (naming a missing dataset and how to supply it) and builds each
    model on the meta device (no memory), so that a sweep fails before its first run rather than hours
    into it.
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
        check_device_settings(config, device)
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
    if config.compile_model:
        model.compile()  # in place: parameters and state_dict keys stay those of the plain model
    optimizer = optim.make_optimizer(config.optimizer, model.parameters(), **config.hyperparameters)
    scheduler = build_scheduler(config, optimizer)
    return model, optimizer, scheduler, generator


@dataclass
class RunState:
    """A run in progress: its data on the device, what trains, and the epochs done so far."""

    config: RunConfig
    device: torch.device
    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    #: uint8 batch → the model's float inputs
    to_inputs: data.Normalization
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    #: shuffling and augmentation draws (the CPU's, on every device)
    generator: torch.Generator
    epochs: list[dict] = field(default_factory=list)
    grad_evals: int = 0
    elapsed_seconds: float = 0.0
    resumed_from: int | None = None


def new_run(config: RunConfig, device: torch.device, dataset: data.ImageData | None = None) -> RunState:
    """A fresh run of ``config`` on ``device``, seeded by ``config.seed``.

    ``dataset`` None trains on the configuration's dataset (its validation split and subset applied);
    an :class:`~optbench.data.ImageData` on ``device`` is used as it is (benchmarks on synthetic data).
    """
    if dataset is None:
        dataset, train_images, train_labels, eval_images, eval_labels = prepare_data(config, device)
    else:
        train_images, train_labels = dataset.train_images, dataset.train_labels
        eval_images, eval_labels = dataset.test_images, dataset.test_labels
    to_inputs = data.Normalization(dataset.mean, dataset.std, device, input_memory_format(device))
    model, optimizer, scheduler, generator = start_run(config, dataset, device)
    return RunState(config, device, train_images, train_labels, eval_images, eval_labels, to_inputs,
                    model, optimizer, scheduler, generator)


def set_up(config: RunConfig, device: torch.device | str | None = None, checkpoint_path: str | os.PathLike | None = None) -> RunState:
    """Check ``config`` against the device, then start it afresh or from its checkpoint at ``checkpoint_path``."""
    config.validate()
    configure_threads()
    device = resolve_device(device)
    check_device_settings(config, device)
    state = new_run(config, device)
    checkpoint = checkpoints.load_checkpoint(Path(checkpoint_path), config) if checkpoint_path is not None else None
    if checkpoint is None:
        return state
    try:
        state.epochs, state.grad_evals, state.elapsed_seconds = checkpoints.restore_checkpoint(
            checkpoint, state.model, state.optimizer, state.scheduler, state.generator, device
        )
        state.resumed_from = len(state.epochs)
    except Exception as error:  # a state that does not fit this code: start over from clean objects
        warnings.warn(
            f"ignoring checkpoint {checkpoint_path}: it does not fit the run ({error}); the run starts from scratch",
            checkpoints.CheckpointWarning, stacklevel=3,
        )
        state = new_run(config, device)
    return state


class EpochTimer:
    """Seconds of an epoch's work: CUDA events on a GPU (measured on the device, with no host
    synchronization inside the epoch), the host's ``perf_counter`` elsewhere."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> "EpochTimer":
        if self.device.type == "cuda":
            self._start, self._end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._started = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.device.type == "cuda":
            self._end.record()
            self._end.synchronize()
            self.seconds = self._start.elapsed_time(self._end) / 1000.0
        else:
            self.seconds = time.perf_counter() - self._started


def full_gradient(state: RunState) -> None:
    """Leave the mean training-set gradient in ``p.grad`` (train mode, BatchNorm statistics frozen)."""
    model, images, labels = state.model, state.train_images, state.train_labels
    state.optimizer.zero_grad(set_to_none=True)
    with protocol.frozen_batchnorm_statistics(model):
        for start in range(0, len(labels), EVALUATION_BATCH_SIZE):
            inputs = state.to_inputs(images[start : start + EVALUATION_BATCH_SIZE])
            targets = labels[start : start + EVALUATION_BATCH_SIZE]
            with precision_context(state.device, state.config.precision):
                logits = model(inputs)
            loss = F.cross_entropy(logits.float(), targets, reduction="sum") / len(labels)
            loss.backward()


def batch_inputs(state: RunState, batch: data.Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(model inputs, targets) of one batch: gathered, augmented as drawn, normalized."""
    # index_select: the same gather as indexing, without advanced indexing's per-call overhead
    images = state.train_images.index_select(0, batch.index)
    if batch.offsets is not None:
        images = data.crop_and_flip(images, batch.offsets, batch.flips)
    return state.to_inputs(images), state.train_labels.index_select(0, batch.index)


def train_epoch(state: RunState, epoch: int, before_step=None) -> tuple[float, float, float]:
    """Train epoch ``epoch`` (0-based); return its (mean training loss, training accuracy, seconds).

    The loss and accuracy are those of each batch at the parameters before its step; ``state.grad_evals``
    and ``state.elapsed_seconds`` grow by the epoch's. ``before_step(epoch, step, model, optimizer)``, if
    given, is called before each step (see :func:`train`).
    """
    config, model, optimizer = state.config, state.model, state.optimizer
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=state.device)
    correct = torch.zeros((), dtype=torch.int64, device=state.device)
    with EpochTimer(state.device) as timer:
        protocol.call_epoch_hook(optimizer, epoch, config.num_epochs)
        if protocol.take_snapshot_if_needed(optimizer, lambda: full_gradient(state)):
            state.grad_evals += len(state.train_labels)
        batches = data.epoch_batches(len(state.train_labels), config.batch_size, state.generator, config.augment, state.device)
        for step, batch in enumerate(batches):
            if before_step is not None:
                before_step(epoch, step, model, optimizer)
            inputs, targets = batch_inputs(state, batch)
            outputs = {}

            def compute_loss():
                with precision_context(state.device, config.precision):
                    outputs["logits"] = model(inputs)
                return F.cross_entropy(outputs["logits"].float(), targets)

            # the first evaluation's logits are the ones the step's loss was computed from
            loss = protocol.optimizer_step(optimizer, compute_loss, model)
            state.grad_evals += len(batch.index) * protocol.gradient_evaluations_per_step(optimizer)
            loss_sum += loss.double() * len(batch.index)
            correct += (outputs["logits"].detach().argmax(dim=1) == targets).sum()
    state.elapsed_seconds += timer.seconds
    return loss_sum.item() / len(state.train_labels), correct.item() / len(state.train_labels), timer.seconds


def evaluate_epoch(state: RunState, epoch: int, train_loss: float, train_accuracy: float, seconds: float) -> dict:
    """Step the scheduler, evaluate, and append (and return) epoch ``epoch``'s row of metrics.

    The evaluation metrics are named by the split evaluated (:func:`optbench.records.evaluation_split`): ``test_*``, or
    ``validation_*`` for a run holding out part of its training split. A non-finite training loss skips the
    evaluation (its metrics are NaN).
    """
    current_lr = state.optimizer.param_groups[0].get("lr", float("nan"))
    if state.scheduler is not None:
        state.scheduler.step()
    if not math.isfinite(train_loss):
        eval_loss, eval_accuracy = float("nan"), float("nan")
    else:
        eval_loss, eval_accuracy = evaluate(state.model, state.eval_images, state.eval_labels, state.to_inputs, state.config.precision)
    split = evaluation_split(state.config.to_dict())
    row = {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "train_accuracy": train_accuracy,
        f"{split}_loss": eval_loss,
        f"{split}_accuracy": eval_accuracy,
        f"{split}_error": 1.0 - eval_accuracy,
        "seconds": seconds,
        "elapsed_seconds": state.elapsed_seconds,
        "grad_evals": state.grad_evals,
        "lr": float(current_lr),
    }
    state.epochs.append(row)
    return row


def checkpoint_if_due(state: RunState, checkpoint_path, checkpoint_every: int | None, epoch: int) -> None:
    """Save the run's state after every ``checkpoint_every``-th epoch but the last (the record follows it)."""
    due = checkpoint_every is not None and (epoch + 1) % checkpoint_every == 0
    if checkpoint_path is not None and due and epoch + 1 < state.config.num_epochs:
        checkpoints.save_checkpoint(
            Path(checkpoint_path), state.config, state.model, state.optimizer, state.scheduler, state.generator,
            state.epochs, state.grad_evals, state.elapsed_seconds, state.device,
        )


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
    checkpoints.check_checkpoint_every(checkpoint_every)
    state = set_up(config, device, checkpoint_path)
    status, diverged_epoch = "finished", None
    start_epoch = len(state.epochs)
    bar = progress_bar(range(start_epoch, config.num_epochs), desc=config.run_id, leave=False, disable=not progress,
               initial=start_epoch, total=config.num_epochs)
    split = evaluation_split(config.to_dict())
    for epoch in bar:
        row = evaluate_epoch(state, epoch, *train_epoch(state, epoch, before_step))
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row[f'{split}_accuracy']:.3f}")
        if not (math.isfinite(row["train_loss"]) and math.isfinite(row[f"{split}_loss"])):
            status, diverged_epoch = "diverged", epoch + 1
        else:
            checkpoint_if_due(state, checkpoint_path, checkpoint_every, epoch)
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
        "epochs": state.epochs,
        "provenance": {**provenance(state.device), "resumed_from_epoch": state.resumed_from},
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
