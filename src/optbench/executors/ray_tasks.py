"""The ``ray`` backend: each run a Ray task with its resource request, on a cluster or a local instance.

A run asks for its thread count in CPUs and, where it trains on CUDA, one GPU (Ray then shows the task
only that GPU). With ``$OPTBENCH_RAY_ADDRESS`` the sweep joins that cluster, shipping the driver's copy of
optbench to the workers (each node needs the same torch and Python packages); without it, a local instance
is started on the loopback interface for the sweep and stopped after it. A task on the driver's node
checkpoints into the store, so a retry resumes; on another node it checkpoints to that node's temporary
directory, so a retry there resumes too, and the record always travels back to the driver, which writes it.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from pathlib import Path

from . import (
    RAY_ADDRESS_VARIABLE,
    ExecutorSettings,
    ExecutorUnavailableError,
    Failed,
    Finished,
    RunTask,
    Session,
    WorkerDied,
    available_cores,
    require_ray,
    train_task,
)

#: the object store holds only records travelling back (kilobytes): keep a local instance's small
LOCAL_OBJECT_STORE_BYTES = 100 * 1024**2
#: Ray's errors that mean the worker (or its node) went away, not that the run raised
_DEATHS = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ObjectLostError", "LocalRayletDiedError",
           "OwnerDiedError", "ActorDiedError")


def train_run(task: RunTask, driver_node: str | None) -> Finished:
    """A Ray task: train ``task`` on this node (checkpointing into the store only on the driver's node)."""
    import ray

    local_checkpoint = None
    if task.checkpoint_path is not None and ray.get_runtime_context().get_node_id() != driver_node:
        local_checkpoint = Path(tempfile.gettempdir()) / "optbench-checkpoints" / Path(task.checkpoint_path).name
        task = dataclasses.replace(task, checkpoint_path=str(local_checkpoint))
    finished = train_task(task)
    if local_checkpoint is not None:  # the record is done; only the driver's store keeps anything
        local_checkpoint.unlink(missing_ok=True)
    return finished


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``host:port``."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as error:
        raise ExecutorUnavailableError(
            f"no Ray cluster answers at {RAY_ADDRESS_VARIABLE} {address!r} ({error.strerror or error}): start one "
            "(ray start --head) or give the address its head node printed"
        ) from None


class RaySession(Session):
    """Runs as Ray tasks; at most ``capacity`` in flight, which the cluster's CPUs (or GPUs) allow."""

    def __init__(self, settings: ExecutorSettings, num_threads: int, num_runs: int, device_argument):
        import torch

        ray = self._ray = require_ray()
        self._started, self._refs = False, {}
        if not ray.is_initialized():
            self._connect(ray, settings.ray_address)
        try:
            client = ray.util.client.ray.is_connected()
            self._driver_node = None if client else ray.get_runtime_context().get_node_id()
            resources = ray.cluster_resources()
            if device_argument is None:
                use_gpu = resources.get("GPU", 0) >= 1
            else:
                use_gpu = torch.device(device_argument).type == "cuda"
                if use_gpu and resources.get("GPU", 0) < 1:
                    raise ExecutorUnavailableError(f"device {str(device_argument)!r} asked for, but the Ray cluster has no GPU")
            largest_node = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]), default=0)
            if largest_node < num_threads:
                raise ExecutorUnavailableError(
                    f"each run asks for {num_threads} CPUs (OPTBENCH_NUM_THREADS) but the largest node of the Ray "
                    f"cluster has {largest_node:g}: lower OPTBENCH_NUM_THREADS"
                )
            capacity = resources.get("GPU", 0) if use_gpu else resources.get("CPU", 1) // num_threads
            self.name, self.capacity = "ray", max(1, min(int(settings.workers or capacity), num_runs))
            self.task_device = "cuda" if use_gpu else (None if device_argument is None else str(device_argument))
            where = settings.ray_address or "a local instance"
            self.description = f"ray ({where}; {self.capacity} runs at once, {num_threads} CPU(s){' + 1 GPU' if use_gpu else ''} each)"
            self._remote = ray.remote(train_run)
            self._resources = dict(num_cpus=num_threads, num_gpus=1 if use_gpu else 0)
            self._deaths = tuple(getattr(ray.exceptions, name) for name in _DEATHS if hasattr(ray.exceptions, name))
        except BaseException:
            self.close()
            raise

    def _connect(self, ray, address: str | None) -> None:
        import logging

        import optbench

        if address is not None:
            _check_reachable(address)
            options = dict(address=address, runtime_env={"py_modules": [optbench]})
        else:  # a new private instance for this sweep ("local": never a cluster already running here), on loopback
            options = dict(address="local", num_cpus=available_cores(), include_dashboard=False, _node_ip_address="127.0.0.1",
                           object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        try:
            ray.init(**options, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as error:
            where = f"connect to the Ray cluster at {RAY_ADDRESS_VARIABLE} {address!r}" if address else "start a local Ray instance"
            hint = ""
            if address and "RAY_AUTH_MODE" not in os.environ:  # Ray's token authentication, the default of new clusters
                hint = ("; if the cluster uses token authentication, set RAY_AUTH_MODE=token and give its token "
                        "(RAY_AUTH_TOKEN, or the file ~/.ray/auth_token), as for any Ray driver")
            raise ExecutorUnavailableError(f"could not {where}: {error}{hint}") from None
        self._started = True

    def submit(self, task: RunTask) -> None:
        # named by its run, in Ray's dashboard and in the worker's process title (ray::optbench:<run id>);
        # retries are the sweep's, which knows which run died
        options = dict(self._resources, max_retries=0, name=f"optbench:{task.run_id}")
        self._refs[self._remote.options(**options).remote(task, self._driver_node)] = task

    @property
    def in_flight(self) -> int:
        return len(self._refs)

    def wait(self):
        ray = self._ray
        ready, _ = ray.wait(list(self._refs), num_returns=1)
        task = self._refs.pop(ready[0])
        try:
            return task, dataclasses.replace(ray.get(ready[0]), executor="ray")
        except self._deaths as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            return task, WorkerDied(f"its Ray worker died ({type(error).__name__}: {first_line})")
        except ray.exceptions.RayTaskError as error:  # the run raised: pass on the original error
            cause = getattr(error, "cause", None)
            return task, Failed(cause if isinstance(cause, BaseException) else error)

    def close(self) -> None:
        ray = self._ray
        for ref in list(self._refs):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished, or the cluster is gone
                pass
        self._refs.clear()
        if self._started:
            self._started = False
            ray.shutdown()
