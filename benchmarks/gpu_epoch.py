"""Seconds per epoch of ResNet-18 on 32×32 images at batch 128 in optbench's loop, fp32 and bf16, on a GPU.

Each setting trains ``--epochs`` epochs through :func:`optbench.training.train_epoch` (the epoch of
:func:`optbench.training.train`: dataset resident on the GPU as uint8, crop and flip on the GPU, channels_last,
SGD with momentum) after one warm-up epoch (cuDNN's algorithm choice, compilation with ``--compile``), and
prints the median epoch as the loop records it (CUDA events on a GPU) and as the host's clock sees it, next to the
≈ 12 s per epoch that common PyTorch CIFAR-10 scripts (DataLoader, per-image PIL transforms, ResNet-18,
batch 128) report on a comparable GPU. An epoch is 50,000 images (CIFAR-10's training set): CIFAR-10
itself if it is under ``$OPTBENCH_DATA_DIR``, else random CIFAR-shaped uint8 images (the seconds of an
epoch do not depend on the pixel values). Evaluation of the 10,000 test images is timed separately.

Usage (a few minutes on one GPU): ``python benchmarks/gpu_epoch.py`` ``[--compile] [--cudnn-benchmark]``;
``--device cpu --examples 512 --width 0.125 --epochs 1`` runs the same code on a CPU as a smoke check.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from optbench import data, training
from optbench.config import RunConfig

COMMON_SCRIPTS_SECONDS_PER_EPOCH = 12.0
CIFAR10_TRAIN, CIFAR10_TEST = 50_000, 10_000


def cifar_shaped(device: torch.device, num_examples: int) -> tuple[data.ImageData, str]:
    try:
        dataset = data.load_dataset("cifar10", download=False)
        description = "CIFAR-10"
    except data.DatasetUnavailableError:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (CIFAR10_TRAIN + CIFAR10_TEST, 3, 32, 32), dtype=torch.uint8, generator=generator)
        labels = torch.randint(0, 10, (CIFAR10_TRAIN + CIFAR10_TEST,), generator=generator)
        dataset = data.ImageData("random", images[:CIFAR10_TRAIN], labels[:CIFAR10_TRAIN], images[CIFAR10_TRAIN:],
                                 labels[CIFAR10_TRAIN:], 10, (0.5, 0.5, 0.5), (0.29, 0.29, 0.29))
        description = "random CIFAR-shaped uint8 images (CIFAR-10 not found)"
    subset = data.ImageData(dataset.name, dataset.train_images[:num_examples], dataset.train_labels[:num_examples],
                            dataset.test_images, dataset.test_labels, dataset.num_classes, dataset.mean, dataset.std)
    return subset.to(device), f"{description}, {len(subset.train_labels):,} training and {len(subset.test_labels):,} test images"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_setting(dataset, device, precision, compile_model, width, epochs, augment):
    """(median recorded seconds, median host seconds, evaluation seconds) of one precision/compile setting."""
    config = RunConfig(optimizer="sgd", num_epochs=epochs + 1, model="resnet18", model_options={"width": width},
                       batch_size=128, augment=augment, hyperparameters={"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
                       precision=precision, compile_model=compile_model)
    training.check_device_settings(config, device)
    state = training.new_run(config, device, dataset)
    recorded, host = [], []
    for epoch in range(epochs + 1):
        synchronize(device)
        started = time.perf_counter()
        _, _, seconds = training.train_epoch(state, epoch)
        synchronize(device)
        if epoch > 0:  # epoch 0 warms up
            recorded.append(seconds)
            host.append(time.perf_counter() - started)
    synchronize(device)
    started = time.perf_counter()
    training.evaluate(state.model, state.eval_images, state.eval_labels, state.to_inputs, precision)
    synchronize(device)
    return statistics.median(recorded), statistics.median(host), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per setting, after one warm-up epoch")
    parser.add_argument("--examples", type=int, default=CIFAR10_TRAIN, help="training images per epoch")
    parser.add_argument("--width", type=float, default=1.0, help="ResNet-18 width multiplier (1: the real network)")
    parser.add_argument("--no-augment", action="store_true", help="leave out the pad-4 crop + flip")
    parser.add_argument("--compile", action="store_true", help="also time compile_model=True (compiles for a minute or two)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN pick convolution algorithms by timing them")
    args = parser.parse_args()
    device = training.resolve_device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    dataset, description = cifar_shaped(device, args.examples)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}; ResNet-18 (width {args.width:g}) on {description}; batch 128; "
          f"augmentation {'off' if args.no_augment else 'pad-4 crop + flip'}; cudnn.benchmark {args.cudnn_benchmark}; "
          f"median of {args.epochs} epoch(s) after one warm-up")
    settings = [(precision, False) for precision in ("fp32", "bf16")]
    if args.compile:
        settings += [(precision, True) for precision in ("fp32", "bf16")]
    header = "| precision | compiled | s/epoch recorded | s/epoch host clock | images/s | speed-up over ≈12 s/epoch | evaluation s |"
    rows = []
    for precision, compile_model in settings:
        recorded, host, evaluation = time_setting(dataset, device, precision, compile_model, args.width, args.epochs, not args.no_augment)
        per_full_epoch = recorded * CIFAR10_TRAIN / args.examples
        rows.append(f"| {precision} | {'yes' if compile_model else 'no'} | {recorded:.2f} | {host:.2f} | "
                    f"{args.examples / recorded:,.0f} | {COMMON_SCRIPTS_SECONDS_PER_EPOCH / per_full_epoch:.2f}× |"
                    f" {evaluation:.2f} |")
        print(f"  done: {precision}, compiled={compile_model}", flush=True)
    print()
    print(header)
    print("|" + "|".join("---" for _ in header.strip("| ").split(" | ")) + "|")
    print("\n".join(rows))
    if args.examples != CIFAR10_TRAIN:
        print(f"\n(the comparison scales each epoch to {CIFAR10_TRAIN:,} images)")


if __name__ == "__main__":
    main()
