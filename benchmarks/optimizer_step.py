"""How much an optimizer step costs on ResNet-18 (CIFAR-style, 3×32×32 inputs, 10 classes).

Two tables, all timings interleaved round-robin in one process so that drifts of the machine hit every
entry alike, each the median over ``--repetitions`` rounds:

1. ``optimizer.step()`` alone, on fixed random gradients, for every registered optimizer whose step needs
   neither a gradient graph nor a closure, as a ratio to ``torch.optim.Adam(foreach=True)``; optimizers
   with a ``fused`` option (Padam, ATMO, PADAM-SGD) a second time with ``fused=True``, next to torch's
   ``Adam(fused=True)``.
2. Whole training steps (forward, backward, step) on one random batch, as a ratio to an SGD training step:
   AdaHessian (backward with ``create_graph`` when the optimizer asks for it), with ``hessian_every`` 1 and 4,
   AdaSGD, and SVRG through :func:`optbench.protocol.optimizer_step` (its closure re-evaluates the batch).
   A round times ``--cycle`` consecutive steps, so that steps with and without a Hessian estimate average.

Usage: ``python benchmarks/optimizer_step.py --repetitions 30 --batch-size 32 --threads 2 [--device cuda]``;
``--skip-training --optimizers padam,adabelief`` times only the steps of the optimizers named (and Adam's);
``--skip-fused`` leaves out the fused steps and their compilation.
On a CPU the training table is slow (an AdaHessian step of ResNet-18 takes seconds): use few repetitions
there, or ``--skip-training``. Timings on a loaded machine are noisy; the interleaving keeps ratios usable.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from optbench import optim, protocol

try:
    from optbench.models import make_model
except ImportError:  # the package's model zoo is optional for this script
    make_model = None

STEP_TARGET = 1.3  # first-order optimizer step / Adam step
ADAHESSIAN_TARGET = 2.5  # AdaHessian training step / SGD training step
ADAHESSIAN_EVERY_4_TARGET = 1.5


def build_resnet18(device: torch.device) -> torch.nn.Module:
    if make_model is not None:
        model = make_model("resnet18", in_channels=3, image_size=32, num_classes=10)
    else:
        import torchvision

        model = torchvision.models.resnet18(num_classes=10)
    return model.to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(action: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    action()
    synchronize(device)
    return time.perf_counter() - started


def interleaved_medians(actions: dict[str, Callable[[], None]], repetitions: int, warmup: int,
                        device: torch.device) -> dict[str, float]:
    """Median seconds of each action, measured round-robin (warm-up rounds discarded)."""
    samples: dict[str, list[float]] = {name: [] for name in actions}
    for round_index in range(warmup + repetitions):
        for name, action in actions.items():
            seconds = timed(action, device)
            if round_index >= warmup:
                samples[name].append(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


def plain_step_optimizers() -> list[str]:
    """Registered optimizers whose step works on plain gradients (no graph, no closure, no snapshot)."""
    probe = torch.nn.Parameter(torch.zeros(1))
    names = []
    for name in optim.available():
        optimizer = optim.make_optimizer(name, [probe])
        if getattr(optimizer, "create_graph", False) or getattr(optimizer, "uses_closure", False):
            continue
        if protocol.needs_full_gradient(optimizer):
            continue
        names.append(name)
    return names


def accepts_fused(name: str) -> bool:
    known = optim.spec(name)
    return "fused" in known.defaults or "fused" in known.extra_hyperparameters


def step_table(args, device) -> list[tuple[str, float, float]]:
    model = build_resnet18(device)
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator(device=device).manual_seed(0)
    gradients = [torch.randn(p.shape, generator=generator, device=device) * 1e-3 for p in params]

    optimizers: dict[str, torch.optim.Optimizer] = {
        "torch Adam(foreach)": torch.optim.Adam(params, lr=1e-3, foreach=True),
        # context: the mixed optimizers' defaults carry weight decay, which costs Adam a pass too
        "torch Adam(foreach, wd=5e-4)": torch.optim.Adam(params, lr=1e-3, weight_decay=5e-4, foreach=True),
    }
    if not args.skip_fused:
        # the fair reference for our fused steps: torch's own single-kernel Adam
        optimizers["torch Adam(fused)"] = torch.optim.Adam(params, lr=1e-3, fused=True)
    for name in plain_step_optimizers():
        if args.optimizers is None or name in args.optimizers:
            optimizers[name] = optim.make_optimizer(name, params)
            if accepts_fused(name) and not args.skip_fused:
                # compiled during the warm-up rounds (about a minute each on 2 CPU cores)
                optimizers[f"{name} (fused)"] = optim.make_optimizer(name, params, fused=True)

    def stepper(optimizer):
        def step():
            # every optimizer sees the same gradients; the parameters drift by tiny steps, which is harmless
            for p, g in zip(params, gradients):
                p.grad = g
            optimizer.step()

        return step

    medians = interleaved_medians({name: stepper(opt) for name, opt in optimizers.items()},
                                  args.repetitions, args.warmup, device)
    reference = medians["torch Adam(foreach)"]
    return [(name, seconds, seconds / reference) for name, seconds in medians.items()]


def training_table(args, device) -> tuple[list[tuple[str, float, float]], list[tuple[str, float, float]]]:
    """The whole-step table, and the SGD and AdaHessian steps part by part (forward, backward, step)."""
    generator = torch.Generator(device=device).manual_seed(1)
    inputs = torch.randn(args.batch_size, 3, 32, 32, generator=generator, device=device)
    targets = torch.randint(0, 10, (args.batch_size,), generator=generator, device=device)
    part_samples: dict[str, list[float]] = {}

    def plain_loop(label, model, optimizer):
        """forward, backward (keeping the graph when the optimizer asks), step; each part timed."""

        def record(part: str, seconds: float) -> None:
            part_samples.setdefault(f"{label}: {part}", []).append(seconds / args.cycle)

        def cycle():
            spent = {"forward": 0.0, "backward": 0.0, "step": 0.0}
            for _ in range(args.cycle):
                optimizer.zero_grad(set_to_none=True)
                create_graph = bool(getattr(optimizer, "create_graph", False))
                loss = None

                def forward():
                    nonlocal loss
                    loss = F.cross_entropy(model(inputs), targets)

                spent["forward"] += timed(forward, device)
                spent["backward"] += timed(lambda: loss.backward(create_graph=create_graph), device)
                spent["step"] += timed(optimizer.step, device)
                if create_graph:
                    optimizer.zero_grad(set_to_none=True)  # free the graph kept for Hessian-vector products
            for part, seconds in spent.items():
                record(part, seconds)

        return cycle

    def protocol_loop(label, model, optimizer):
        def compute_loss():
            return F.cross_entropy(model(inputs), targets)

        def full_gradient():
            with protocol.frozen_batchnorm_statistics(model):
                compute_loss().backward()

        protocol.take_snapshot_if_needed(optimizer, full_gradient)

        def cycle():
            for _ in range(args.cycle):
                protocol.optimizer_step(optimizer, compute_loss, model)

        return cycle

    loops: dict[str, Callable[[], None]] = {}

    def add(label, name, loop=plain_loop, **hyperparameters):
        model = build_resnet18(device).train()
        optimizer = optim.make_optimizer(name, model.parameters(), **hyperparameters)
        loops[label] = loop(label, model, optimizer)

    add("sgd", "sgd", lr=0.01)
    add("adahessian", "adahessian", seed=0)
    add("adahessian hessian_every=4", "adahessian", hessian_every=4, seed=0)
    add("adasgd (constant weights 0.5/0.5)", "adasgd", dynamic_weights=False, seed=0)
    if "svrg" in optim.available():
        add("svrg (protocol.optimizer_step)", "svrg", loop=protocol_loop, lr=0.01)

    medians = interleaved_medians(loops, args.repetitions, args.warmup, device)
    reference = medians["sgd"]
    rows = [(label, seconds / args.cycle, seconds / reference) for label, seconds in medians.items()]
    # warm-up rounds are recorded too: drop them
    parts = []
    for key, samples in part_samples.items():
        if key.startswith(("sgd:", "adahessian:")):
            seconds = statistics.median(samples[args.warmup:])
            parts.append((key, seconds, seconds * args.cycle / reference))
    return rows, parts


def print_table(title: str, reference: str, rows, target_of: Callable[[str], float | None]) -> None:
    print(f"\n{title}")
    print(f"{'optimizer':<36} {'ms':>9} {'ratio to ' + reference:>18}  target")
    for name, seconds, ratio in rows:
        target = target_of(name)
        verdict = "" if target is None else f"<= {target:.1f} {'ok' if ratio <= target else 'MISSED'}"
        print(f"{name:<36} {seconds * 1e3:>9.2f} {ratio:>18.2f}  {verdict}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=30, help="timed rounds per entry (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--batch-size", type=int, default=32, help="batch of the training-step table")
    parser.add_argument("--cycle", type=int, default=4, help="consecutive training steps per timed round")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--skip-training", action="store_true", help="only the optimizer-step table")
    parser.add_argument("--skip-fused", action="store_true",
                        help="leave out the fused (torch.compile) steps, which compile for about a minute each")
    parser.add_argument("--optimizers", type=lambda names: names.split(","), default=None,
                        help="comma-separated registered names: time only these steps (besides torch's Adam)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.optimizers or ()) - set(optim.available()))
    if unknown:
        parser.error(f"unknown optimizers {', '.join(unknown)}; registered: {', '.join(optim.available())}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"repetitions {args.repetitions}, batch {args.batch_size}")

    def step_target(row: str) -> float | None:
        # the target concerns optbench's own optimizers, not torch.optim's
        name = row.removesuffix(" (fused)")
        if name not in optim.available() or optim.spec(name).factory.__module__.endswith("torch_builtin"):
            return None
        return STEP_TARGET

    print_table("optimizer.step() on ResNet-18 gradients", "Adam", step_table(args, device), step_target)
    if not args.skip_training:
        targets = {"adahessian": ADAHESSIAN_TARGET, "adahessian hessian_every=4": ADAHESSIAN_EVERY_4_TARGET}
        rows, parts = training_table(args, device)
        print_table(f"training step (forward + backward + step), batch {args.batch_size}, "
                    f"{args.cycle} steps per round", "SGD", rows, targets.get)
        # AdaHessian's step() holds its Hessian-vector product; its backward keeps the graph (create_graph)
        print_table("the same steps part by part (ratio to SGD's whole training step)", "SGD step", parts,
                    lambda row: None)


if __name__ == "__main__":
    main()
