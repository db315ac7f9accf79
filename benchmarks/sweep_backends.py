"""How much faster a sweep of small runs trains on the ``pool`` and ``ray`` backends than on ``serial``.

One sweep (by default 12 runs of ResNet-18 at 1/8 width on 8×8 digits, 3 epochs: 4 learning rates × 3 seeds)
is trained from an empty store by each backend in turn, in one process, and timed from the call of
``run_sweep`` to its return: starting the workers (and, for ``ray``, a local Ray instance) counts. Each
round runs every backend once, in rotating order so that drifts of a shared machine hit all alike; the table
gives the median over ``--repetitions`` rounds and the speed-up against ``serial``. Every backend trains
each run with the same thread count (``OPTBENCH_NUM_THREADS``, default 1), and the script checks that
their records hold bit-identical metrics. ``cores used`` is the CPU time of the benchmark's processes
over the wall time: on a machine shared with other work, a pool that gets less than its cores shows it.
``serial, all cores`` (one run at a time with as many threads as
cores; its low bits differ; ``--all-cores``) shows what threads alone give. ``pool, warm`` reuses the workers an earlier
sweep of the process left (what a notebook's later sweeps get).

Usage: ``python benchmarks/sweep_backends.py [--runs 12] [--epochs 3] [--image-size 8] [--repetitions 1]
[--skip-ray] [--all-cores]``. Target on a 2-core machine: ``pool`` at least 1.5× ``serial``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from optbench import executors
from optbench.executors.pool import stop_idle_workers
from optbench.store import ResultsStore
from optbench.sweeps import expand_grid, run_sweep

POOL_TARGET = 1.5
TIMED = ("seconds", "elapsed_seconds")


def sweep_configs(runs: int, epochs: int, image_size: int, width: float):
    learning_rates = [0.01, 0.03, 0.1, 0.3]
    seeds = range(-(-runs // len(learning_rates)))
    base = dict(optimizer="sgd", model="resnet18", model_options={"width": width}, image_size=image_size, num_epochs=epochs)
    return expand_grid(base, lr=learning_rates, seed=seeds)[:runs]


def metrics(records: list[dict]) -> list:
    return [[{key: value for key, value in row.items() if key not in TIMED} for row in record["epochs"]] for record in records]


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += children
            frontier += children
    return found


def cpu_seconds() -> float:
    """CPU time of this process and every process below it, living or reaped (Linux): what the sweep used."""
    total = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                for field in ("ru_utime", "ru_stime"))
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in _descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime of a living descendant
        except (OSError, IndexError, ValueError):
            continue
    return total


def timed_sweep(configs, directory: Path, executor, threads: int | None = None) -> tuple[float, float, list]:
    previous = os.environ.get(executors.THREADS_VARIABLE)
    if threads is not None:
        os.environ[executors.THREADS_VARIABLE] = str(threads)
    try:
        started, cpu = time.perf_counter(), cpu_seconds()
        records = run_sweep(configs, ResultsStore(directory), progress=False, executor=executor)
        elapsed = time.perf_counter() - started
        return elapsed, (cpu_seconds() - cpu) / elapsed, metrics(records)
    finally:
        if threads is not None:
            if previous is None:
                del os.environ[executors.THREADS_VARIABLE]
            else:
                os.environ[executors.THREADS_VARIABLE] = previous


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=8)
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--skip-ray", action="store_true", help="leave out the ray backend (a local instance)")
    parser.add_argument("--all-cores", action="store_true",
                        help="also time serial with as many threads as cores (very slow on a loaded machine)")
    arguments = parser.parse_args()

    configs = sweep_configs(arguments.runs, arguments.epochs, arguments.image_size, arguments.width)
    cores, threads = executors.available_cores(), executors.threads_per_run()
    backends = {
        "serial": lambda directory: timed_sweep(configs, directory, "serial"),
        "serial, all cores": lambda directory: timed_sweep(configs, directory, "serial", threads=cores),
        "pool": None,  # cold and warm, below
        "ray": lambda directory: timed_sweep(configs, directory, "ray"),
    }
    if arguments.skip_ray:
        del backends["ray"]
    if not arguments.all_cores:
        del backends["serial, all cores"]
    seconds = {name: [] for name in [*backends, "pool, warm"]}
    cores_used = {name: [] for name in seconds}
    found_metrics = {name: [] for name in seconds}
    print(f"{len(configs)} runs: ResNet-18 width {arguments.width:g} on {arguments.image_size}×{arguments.image_size} digits, "
          f"{arguments.epochs} epochs; {cores} cores, {threads} thread(s) per run")
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(arguments.repetitions):
            names = list(backends)
            names = names[round_number % len(names):] + names[: round_number % len(names)]
            for name in names:
                directory = Path(scratch) / f"{round_number}-{name}"
                if name == "pool":
                    stop_idle_workers()  # cold: the sweep starts its workers
                    results = [("pool", timed_sweep(configs, directory, "pool")),
                               ("pool, warm", timed_sweep(configs, Path(f"{directory}-warm"), "pool"))]
                    stop_idle_workers()
                else:
                    results = [(name, backends[name](directory))]
                for label, (elapsed, cores, found) in results:
                    seconds[label].append(elapsed)
                    cores_used[label].append(cores)
                    found_metrics[label].append(found)
    reference = found_metrics["serial"][0]
    serial = statistics.median(seconds["serial"])
    print(f"{'backend':<20}{'seconds':>10}{'speed-up':>10}{'cores used':>12}  identical metrics")
    for name, values in seconds.items():
        median = statistics.median(values)
        identical = all(found == reference for found in found_metrics[name])
        same = "n/a (other threads)" if name == "serial, all cores" else ("yes" if identical else "NO")
        # Ray's worker processes end outside this process's accounting
        cores = "n/a" if name == "ray" else f"{statistics.median(cores_used[name]):.2f}"
        print(f"{name:<20}{median:>10.1f}{serial / median:>9.2f}×{cores:>12}  {same}")
    pool = serial / statistics.median(seconds["pool"])
    print(f"pool / serial: {pool:.2f}× (target ≥ {POOL_TARGET}×: {'met' if pool >= POOL_TARGET else 'not met'})")


if __name__ == "__main__":
    main()
