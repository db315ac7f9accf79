"""Bad input, table-driven: the command line, profile files, notebook parameters, run settings, optimizer
hyperparameters, devices, environment variables and dataset paths. Each bad value gives one clear error that
names it and what is allowed, before anything trains and without writing to the results store."""

from __future__ import annotations

import array
import contextlib
import fcntl
import io
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from optbench import book, data
from optbench.cli import main as cli_main
from optbench.config import RunConfig
from optbench.data import DatasetUnavailableError
from optbench.executors import available_cores
from optbench.runs import run
from optbench.store import ResultsStore
from optbench.studies import STUDIES
from optbench.sweeps import expand_grid, run_sweep

REPOSITORY = Path(__file__).resolve().parents[1]
TINY = dict(model="mlp", model_options={"hidden_sizes": [16]}, image_size=8, max_train_examples=64, batch_size=32, num_epochs=1)


class CommandLineExit(Exception):
    """The command line exited with a non-zero status; the message is what it printed on stderr."""

    def __init__(self, code, stderr: str):
        super().__init__(stderr)
        self.code = code


@dataclass
class Context:
    root: Path  # a repository root: copies of notebooks/ and profiles/
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    cleanups: list = field(default_factory=list)  # run after the case, whatever happened

    def cli(self, *argv: str) -> None:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli_main(list(argv))
            except SystemExit as exit:  # argparse's own errors
                code = exit.code
        if code != 0:
            raise CommandLineExit(code, stderr.getvalue())

    def profile(self, text: str) -> None:
        """Write ``text`` as profiles/bad.yaml and load it."""
        (self.root / "profiles" / "bad.yaml").write_text(text)
        book.load_profile("bad", self.root)

    def execute(self, *options: str, notebook: str = "study1_optimizers") -> None:
        """``optbench execute`` of one notebook with the smoke profile and ``options`` (-p, -f, --output)."""
        self.cli("execute", "--profile", "smoke", "--notebook", notebook, "--root", str(self.root), *options)

    def parameters_file(self, text: str) -> str:
        path = self.tmp / "parameters.yaml"
        path.write_text(text)
        return str(path)

    def study_parameter(self, name: str, value: str) -> None:
        """A profile setting one parameter of the study notebook."""
        self.profile(f"notebooks:\n  study1_optimizers:\n    {name}: {value}\n")

    def sweep(self, **settings) -> None:
        """Sweep one configuration of TINY updated with ``settings`` into the default store."""
        hyperparameters = settings.pop("hyperparameters", {})
        run_sweep([RunConfig(**{"optimizer": "sgd", **TINY, **settings, "hyperparameters": hyperparameters})], progress=False)


@dataclass
class Case:
    name: str
    action: Callable[[Context], None]
    #: substrings of the message: the bad value, then at least one allowed value or the allowed range
    expected: tuple[str, ...]
    error: type = ValueError
    setup: dict = field(default_factory=dict)  # environment variables


#: no network: a proxy that refuses at once, so a download attempt fails fast here and in CI
NO_NETWORK = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
              "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}


def _optimizer(name, **hyperparameters):
    return lambda ctx: ctx.sweep(optimizer=name, hyperparameters=hyperparameters)


def _results_dir_is_a_file(ctx: Context) -> None:
    (ctx.tmp / "results-file").write_text("not a directory")
    ctx.monkeypatch.setenv("OPTBENCH_RESULTS_DIR", str(ctx.tmp / "results-file"))
    ctx.sweep()


def _set_immutable(directory: Path, immutable: bool) -> None:
    """Set or clear the immutable attribute (chattr +i): what makes a directory read-only for root too."""
    get_flags, set_flags, immutable_flag = 0x80086601, 0x40086602, 0x10  # FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IMMUTABLE_FL
    handle = os.open(directory, os.O_RDONLY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(handle, get_flags, flags, True)
        flags[0] = flags[0] | immutable_flag if immutable else flags[0] & ~immutable_flag
        fcntl.ioctl(handle, set_flags, flags)
    finally:
        os.close(handle)


def _read_only_results_dir(ctx: Context) -> None:
    results = Path(os.environ["OPTBENCH_RESULTS_DIR"])
    results.mkdir(parents=True)
    results.chmod(0o555)
    ctx.cleanups.append(lambda: results.chmod(0o755))
    if os.geteuid() == 0:  # permission bits do not bind root
        _set_immutable(results, True)
        ctx.cleanups.insert(0, lambda: _set_immutable(results, False))
    with contextlib.suppress(OSError):  # the case is only meaningful if writing there really fails
        os.unlink(tempfile.mkstemp(dir=results)[1])
        pytest.fail(f"could not make {results} read-only on this machine")
    ctx.sweep()


def _ray_not_installed(ctx: Context) -> None:
    ctx.monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    ctx.sweep()


CASES = [
    # ---- the command line (exit status 2 and a message on stderr) ---------------------------------------
    Case("cli: profile path escaping profiles/", lambda ctx: ctx.cli("execute", "--profile", "../etc/passwd", "--root", str(ctx.root)),
         ("'../etc/passwd'", "letters, digits"), CommandLineExit),
    Case("cli: absolute profile path", lambda ctx: ctx.cli("check-profile", "--profile", "/etc/passwd", "--root", str(ctx.root)),
         ("'/etc/passwd'", "letters, digits"), CommandLineExit),
    Case("cli: unknown profile", lambda ctx: ctx.cli("execute", "--profile", "fast", "--root", str(ctx.root)),
         ("'fast'", "smoke"), CommandLineExit),
    Case("cli: unknown notebook", lambda ctx: ctx.cli("execute", "--profile", "smoke", "--notebook", "study9", "--root", str(ctx.root)),
         ("'study9'", "study1_optimizers"), CommandLineExit),
    Case("cli: unknown command", lambda ctx: ctx.cli("run-everything"), ("'run-everything'", "execute"), CommandLineExit),
    Case("cli: profile with a bad value", lambda ctx: (
        (ctx.root / "profiles" / "bad.yaml").write_text("notebooks:\n  study1_optimizers:\n    num_epochs: -3\n"),
        ctx.cli("check-profile", "--profile", "bad", "--root", str(ctx.root))), ("-3", "> 0"), CommandLineExit),
    Case("cli: a root without profiles/", lambda ctx: ctx.cli("check-profile", "--profile", "smoke", "--root", "/nonexistent"),
         ("'/nonexistent'", "profiles/"), CommandLineExit),
    Case("cli: -p unknown parameter", lambda ctx: ctx.execute("-p", "num_epoch", "3"), ("'num_epoch'", "num_epochs"), CommandLineExit),
    Case("cli: -p value of the wrong type", lambda ctx: ctx.execute("-p", "num_epochs", "three"), ("'three'", "integer > 0"),
         CommandLineExit),
    Case("cli: -p a parameter of another notebook", lambda ctx: ctx.execute("-p", "num_epochs", "3", notebook="methods"),
         ("'num_epochs'", "study1_optimizers", "no parameter but the profile"), CommandLineExit),
    Case("cli: -p profile", lambda ctx: ctx.execute("-p", "profile", "paper"), ("'profile'", "--profile"), CommandLineExit),
    Case("cli: -p value that is not YAML", lambda ctx: ctx.execute("-p", "seeds", "[0, 1"), ("seeds", "'[0, 1'", "not valid YAML"),
         CommandLineExit),
    Case("cli: -p number YAML reads as text", lambda ctx: ctx.execute("-p", "uniform_lr", "1e-3"), ("1e-3", "as text", "1.0e-3"),
         CommandLineExit),
    Case("cli: -p infinite number", lambda ctx: ctx.execute("-p", "lr_grid", "[0.01, .inf]"), ("lr_grid [0.01, inf]", "finite"),
         CommandLineExit),
    Case("cli: -p learning rate out of range", lambda ctx: ctx.execute("-p", "uniform_lr", "-0.1"), ("uniform_lr -0.1", "> 0"),
         CommandLineExit),
    Case("cli: -f file that is missing", lambda ctx: ctx.execute("-f", str(ctx.tmp / "nowhere.yaml")), ("nowhere.yaml", "-f"),
         CommandLineExit),
    Case("cli: -f file that is a list", lambda ctx: ctx.execute("-f", ctx.parameters_file("- num_epochs\n- 3\n")),
         ("list", "mapping from parameter name to value"), CommandLineExit),
    Case("cli: -f file with an unknown parameter", lambda ctx: ctx.execute("-f", ctx.parameters_file("seed: [0, 1]\n")),
         ("'seed'", "seeds"), CommandLineExit),
    Case("cli: -f file with a duplicate key", lambda ctx: ctx.execute("-f", ctx.parameters_file("num_epochs: 2\nnum_epochs: 3\n")),
         ("'num_epochs'", "duplicate", "once"), CommandLineExit),
    Case("cli: --output for several notebooks", lambda ctx: ctx.cli("execute", "--profile", "smoke", "--root", str(ctx.root),
                                                                    "--output", str(ctx.tmp / "out.ipynb")),
         ("out.ipynb", "exactly one --notebook"), CommandLineExit),
    Case("cli: plan with a bad parameter", lambda ctx: ctx.cli("plan", "--profile", "smoke", "--root", str(ctx.root), "-p", "seeds", "[]"),
         ("seeds []", "integers >= 0"), CommandLineExit),
    Case("cli: clean without saying what", lambda ctx: ctx.cli("clean"), ("--stale",), CommandLineExit),
    # ---- environment variables (checked by check-profile and before any kernel starts) ---------------------
    *[Case(f"env: OPTBENCH_NUM_THREADS={value} in check-profile", lambda ctx: ctx.cli("check-profile", "--profile", "smoke", "--root", str(ctx.root)),
           (f"OPTBENCH_NUM_THREADS {value!r}", "integer >= 1"), CommandLineExit, setup={"OPTBENCH_NUM_THREADS": value})
      for value in ("abc", "0", "-3", "1.5")],
    Case("env: OPTBENCH_NUM_THREADS before the kernel starts", lambda ctx: ctx.execute(), ("OPTBENCH_NUM_THREADS '1.5'", "integer >= 1"),
         CommandLineExit, setup={"OPTBENCH_NUM_THREADS": "1.5"}),
    Case("env: OPTBENCH_PRECISION not a precision", lambda ctx: ctx.cli("check-profile", "--profile", "smoke", "--root", str(ctx.root)),
         ("OPTBENCH_PRECISION 'fp16'", "fp32, bf16"), CommandLineExit, setup={"OPTBENCH_PRECISION": "fp16"}),
    Case("env: OPTBENCH_COMPILE_MODEL not a yes or no", lambda ctx: ctx.execute(), ("OPTBENCH_COMPILE_MODEL 'maybe'", "'true'", "'false'"),
         CommandLineExit, setup={"OPTBENCH_COMPILE_MODEL": "maybe"}),
    # ---- profile files ------------------------------------------------------------------------------------
    Case("profile: unknown top-level key", lambda ctx: ctx.profile("notebook:\n  study1_optimizers: {}\n"), ("'notebook'", "notebooks")),
    Case("profile: unknown notebook", lambda ctx: ctx.profile("notebooks:\n  study9: {num_epochs: 1}\n"), ("'study9'", "study1_optimizers")),
    Case("profile: unknown parameter", lambda ctx: ctx.study_parameter("num_epoch", "3"), ("'num_epoch'", "num_epochs")),
    Case("profile: the profile parameter itself", lambda ctx: ctx.study_parameter("profile", "../outside"), ("'profile'", "num_epochs")),
    Case("profile: zero epochs", lambda ctx: ctx.study_parameter("num_epochs", "0"), ("num_epochs 0", "> 0")),
    Case("profile: no seeds", lambda ctx: ctx.study_parameter("seeds", "[]"), ("seeds []", "integers >= 0")),
    Case("profile: negative lr in the grid", lambda ctx: ctx.study_parameter("lr_grid", "[0.1, -1]"), ("lr_grid [0.1, -1]", "got -1", "> 0")),
    Case("profile: unknown dataset", lambda ctx: ctx.study_parameter("dataset", "imagenet"), ("'imagenet'", "cifar10")),
    Case("profile: augment not a boolean", lambda ctx: ctx.study_parameter("augment", "'yes'"), ("'yes'", "true or false")),
    Case("profile: validation fraction above 1", lambda ctx: ctx.study_parameter("validation_fraction", "1.5"), ("1.5", "(0, 1)")),
    Case("profile: negative model width", lambda ctx: ctx.study_parameter("model_width", "-0.5"), ("-0.5", "> 0")),
    Case("profile: study 2's p above 1/2", lambda ctx: ctx.profile("notebooks:\n  study2_padam:\n    p_grid: [0.125, 0.9]\n"),
         ("p_grid [0.125, 0.9]", "got 0.9", "(0, 1/2]")),
    Case("profile: infinite lr in the grid", lambda ctx: ctx.study_parameter("lr_grid", "[.inf]"), ("lr_grid [inf]", "finite")),
    Case("profile: infinite uniform lr", lambda ctx: ctx.study_parameter("uniform_lr", ".inf"), ("uniform_lr inf", "finite")),
    Case("profile: infinite model width", lambda ctx: ctx.study_parameter("model_width", ".inf"), ("model_width inf", "finite")),
    Case("profile: NaN validation fraction", lambda ctx: ctx.study_parameter("validation_fraction", ".nan"), ("validation_fraction nan", "finite")),
    Case("profile: a number YAML reads as text", lambda ctx: ctx.study_parameter("lr_grid", "[1e-3]"), ("['1e-3']", "as text", "1.0e-3")),
    Case("profile: SGD momentum 2.0", lambda ctx: ctx.study_parameter("hyperparameters", "{sgd: {momentum: 2.0}}"),
         ("momentum 2.0", "[0, 1)", "'sgd'")),
    Case("profile: notebooks given as a list", lambda ctx: ctx.profile("notebooks: [study1_optimizers]\n"),
         ("['study1_optimizers']", "list", "mapping")),
    Case("profile: a notebook's section given as a list", lambda ctx: ctx.profile("notebooks:\n  study1_optimizers: [num_epochs]\n"),
         ("['num_epochs']", "mapping")),
    Case("profile: an empty file", lambda ctx: ctx.profile(""), ("empty", "notebooks:", "study1_optimizers")),
    Case("profile: a precision torch cannot autocast to here", lambda ctx: ctx.profile("precision: fp16\nnotebooks: {}\n"),
         ("precision 'fp16'", "fp32, bf16")),
    Case("profile: compile_model not a boolean", lambda ctx: ctx.profile("compile_model: sometimes\nnotebooks: {}\n"),
         ("compile_model 'sometimes'", "true or false")),
    Case("profile: no notebooks key", lambda ctx: ctx.profile("description: mine\n"), ("no 'notebooks:' key", "study1_optimizers")),
    Case("profile: a duplicate key", lambda ctx: ctx.study_parameter("num_epochs", "2\n    num_epochs: 3"),
         ("duplicate key 'num_epochs'", "line 3", "once")),
    Case("profile: not YAML", lambda ctx: ctx.profile("notebooks:\n  study1_optimizers: {num_epochs: 2\n"), ("bad.yaml", "not valid YAML")),
    # ---- notebook parameters, as papermill injects them -----------------------------------------------
    Case("notebook: zero batch size", lambda ctx: STUDIES["study1_optimizers"].validate({"batch_size": 0}), ("batch_size 0", "> 0")),
    Case("notebook: negative seed", lambda ctx: STUDIES["study1_optimizers"].validate({"seeds": [0, -1]}), ("seeds [0, -1]", "got -1", ">= 0")),
    Case("notebook: Padam's p above 1/2", lambda ctx: STUDIES["study1_optimizers"].validate({"hyperparameters": {"padam": {"p": 0.7}}}),
         ("p 0.7", "1/2")),
    Case("notebook: one selection seed", lambda ctx: STUDIES["study1_optimizers"].validate({"selection_seeds": [3]}),
         ("selection_seeds [3]", "at least two")),
    Case("notebook: study 2's p outside (0, 1/2]", lambda ctx: STUDIES["study2_padam"].validate({"p_grid": [0.0625, 0.75]}),
         ("p_grid [0.0625, 0.75]", "got 0.75", "(0, 1/2]")),
    Case("notebook: study 2's empty p grid", lambda ctx: STUDIES["study2_padam"].validate({"p_grid": []}), ("p_grid []", "non-empty list")),
    Case("notebook: study 2's empty lr grid", lambda ctx: STUDIES["study2_padam"].validate({"lr_grid": []}), ("lr_grid []", "non-empty list")),
    Case("notebook: study 2's unknown architecture", lambda ctx: STUDIES["study2_padam"].validate(
        {"architectures": {"vgg16": {}, "resnet18": {}, "wideresnet": {}, "alexnet": {}}}), ("'alexnet'", "vgg16, resnet18, wideresnet")),
    Case("notebook: study 2's schedule p above 1/2", lambda ctx: STUDIES["study2_padam"].validate({"schedule_p_final": 0.6}),
         ("schedule_p_final 0.6", "(0, 1/2]")),
    Case("notebook: study 3 ablation with an unknown scheduler",
         lambda ctx: STUDIES["study3_hybrid"].validate({"ablation_schedulers": ["none", "step"]}), ("'step'", "multistep")),
    Case("notebook: study 3 milestone beyond the epochs", lambda ctx: STUDIES["study3_hybrid"].validate({"schedules": {
        **STUDIES["study3_hybrid"].settings().schedules, "adasgd": {"scheduler": "multistep", "num_epochs": 200, "milestones": [100, 140, 200]}}}),
         ("[100, 140, 200]", "adasgd", "from 1 to 199")),
    Case("notebook: study 3 hessian_every below 1", lambda ctx: STUDIES["study3_hybrid"].validate({"hessian_every": [0]}),
         ("hessian_every [0]", ">= 1")),
    Case("notebook: study 4 with one fold", lambda ctx: STUDIES["study4_variance_reduction"].validate({"num_folds": 1}),
         ("num_folds 1", ">= 2")),
    Case("notebook: study 4 with an empty grid", lambda ctx: STUDIES["study4_variance_reduction"].validate(
        {"shallow_grids": {"adam": {"lr": []}, "sgd": {"lr": [0.1]}, "adagrad": {"lr": [0.1]}, "svrg": {"lr": [0.1]},
                           "storm": {"c": [100], "k": [0.1]}}}), ("shallow_grids['adam']['lr'] []", "empty grid", "non-empty list")),
    Case("notebook: study 4 with an unknown norm", lambda ctx: STUDIES["study4_variance_reduction"].validate({"metainit_norm": "group"}),
         ("'group'", "batch, none")),
    Case("profile: study 4 fold count of 1", lambda ctx: ctx.profile("notebooks:\n  study4_variance_reduction:\n    num_folds: 1\n"),
         ("study4_variance_reduction", "num_folds 1", ">= 2")),
    Case("run: a fold without a fold count", lambda ctx: ctx.sweep(fold=1), ("num_folds None", ">= 2")),
    Case("run: a fold beyond the fold count", lambda ctx: ctx.sweep(num_folds=3, fold=3), ("fold 3", "0 to 2")),
    Case("notebook: profile naming a directory outside the results", lambda ctx: ResultsStore.for_profile("../../etc"),
         ("'../../etc'", "letters, digits")),
    # ---- run settings -------------------------------------------------------------------------------------
    Case("run: unknown optimizer", lambda ctx: ctx.sweep(optimizer="adamm"), ("'adamm'", "adam")),
    Case("run: unknown model", lambda ctx: ctx.sweep(model="resnet7", model_options={}), ("'resnet7'", "resnet18")),
    Case("run: unknown model option", lambda ctx: ctx.sweep(model_options={"hidden": [16]}), ("'hidden'", "hidden_sizes")),
    Case("run: zero learning rate", _optimizer("sgd", lr=0), ("lr 0", "> 0")),
    Case("run: learning rate not a number", _optimizer("adam", lr="fast"), ("'fast'", "> 0")),
    Case("run: fractional epochs", lambda ctx: ctx.sweep(num_epochs=2.5), ("num_epochs 2.5", "integer > 0")),
    Case("run: negative batch size", lambda ctx: ctx.sweep(batch_size=-5), ("batch_size -5", "> 0")),
    Case("run: unknown scheduler", lambda ctx: ctx.sweep(scheduler="step"), ("'step'", "multistep")),
    Case("run: milestone at epoch 0", lambda ctx: ctx.sweep(scheduler="multistep", scheduler_options={"milestones": [0, 2]}),
         ("[0, 2]", "positive epoch numbers")),
    Case("run: unknown scheduler option", lambda ctx: ctx.sweep(scheduler="multistep", scheduler_options={"milestones": [1], "gama": 0.5}),
         ("'gama'", "gamma")),
    Case("run: a scheduler for an optimizer without lr", lambda ctx: ctx.sweep(optimizer="storm", scheduler="cosine"),
         ("'cosine'", "'storm'", "'none'")),
    Case("run: validation fraction above 1", lambda ctx: ctx.sweep(validation_fraction=1.5), ("1.5", "[0, 1)")),
    Case("run: unknown init", lambda ctx: ctx.sweep(init="xavier"), ("'xavier'", "metainit")),
    Case("run: negative seed", lambda ctx: ctx.sweep(seed=-1), ("seed -1", ">= 0")),
    Case("run: image size the data cannot have", lambda ctx: ctx.sweep(image_size=2), ("image_size 2", ">= 4")),
    Case("run: unknown run setting", lambda ctx: expand_grid(dict(optimizer="sgd", **TINY, epochs=3)), ("'epochs'", "num_epochs")),
    Case("run: bad device name", lambda ctx: run(RunConfig(optimizer="sgd", **TINY), device="gpu", progress=False), ("'gpu'", "'cpu'")),
    Case("run: a device this machine lacks", lambda ctx: run(RunConfig(optimizer="sgd", **TINY), device="cuda:99", progress=False),
         ("'cuda:99'", "cpu" if not __import__("torch").cuda.is_available() else "cuda:0")),
    Case("run: checkpoint interval 0", lambda ctx: run(RunConfig(optimizer="sgd", **TINY), checkpoint_every=0, progress=False),
         ("checkpoint_every 0", ">= 1")),
    Case("run: thread count not a number", lambda ctx: ctx.sweep(), ("'zero'", ">= 1"), setup={"OPTBENCH_NUM_THREADS": "zero"}),
    Case("store: run id naming a file outside the store", lambda ctx: ResultsStore().load("../../etc/passwd"),
         ("'../../etc/passwd'", "letters, digits")),
    Case("store: OPTBENCH_RESULTS_DIR set but empty", lambda ctx: ctx.sweep(), ("OPTBENCH_RESULTS_DIR", "('')", "give the directory"),
         setup={"OPTBENCH_RESULTS_DIR": ""}),
    Case("store: OPTBENCH_RESULTS_DIR naming a file", _results_dir_is_a_file, ("results-file'", "is a file", "give a directory")),
    Case("store: a read-only results directory", _read_only_results_dir, ("is read-only", "make it writable", "OPTBENCH_RESULTS_DIR")),
    # ---- sweep backends ------------------------------------------------------------------------------------
    Case("executor: unknown OPTBENCH_EXECUTOR", lambda ctx: ctx.sweep(), ("'threads'", "serial, pool, ray"),
         setup={"OPTBENCH_EXECUTOR": "threads"}),
    Case("executor: unknown executor argument", lambda ctx: run_sweep([RunConfig(optimizer="sgd", **TINY)], executor="dask"),
         ("'dask'", "serial, pool, ray")),
    Case("executor: zero workers", lambda ctx: ctx.sweep(), ("OPTBENCH_WORKERS '0'", ">= 1"),
         setup={"OPTBENCH_EXECUTOR": "pool", "OPTBENCH_WORKERS": "0"}),
    Case("executor: workers not a number", lambda ctx: ctx.sweep(), ("OPTBENCH_WORKERS 'two'", ">= 1"),
         setup={"OPTBENCH_EXECUTOR": "pool", "OPTBENCH_WORKERS": "two"}),
    Case("executor: more threads than cores", lambda ctx: ctx.sweep(),
         (f"OPTBENCH_WORKERS {available_cores() + 1} × OPTBENCH_NUM_THREADS 1", "exceed", f"at most {available_cores()} workers"),
         setup={"OPTBENCH_EXECUTOR": "pool", "OPTBENCH_WORKERS": str(available_cores() + 1), "OPTBENCH_NUM_THREADS": "1"}),
    Case("executor: malformed Ray address", lambda ctx: ctx.sweep(), ("'head-node'", "host:port"),
         setup={"OPTBENCH_EXECUTOR": "ray", "OPTBENCH_RAY_ADDRESS": "head-node"}),
    Case("executor: a Ray address without the ray executor", lambda ctx: ctx.sweep(), ("'127.0.0.1:6379'", "OPTBENCH_EXECUTOR=ray"),
         setup={"OPTBENCH_EXECUTOR": "pool", "OPTBENCH_RAY_ADDRESS": "127.0.0.1:6379"}),
    Case("executor: no Ray cluster at the address", lambda ctx: ctx.sweep(), ("'127.0.0.1:9'", "ray start --head"),
         setup={"OPTBENCH_EXECUTOR": "ray", "OPTBENCH_RAY_ADDRESS": "127.0.0.1:9"}),
    Case("executor: ray asked for, not installed", _ray_not_installed, ("'ray'", "pip install -e '.[ray]'", "serial, pool"),
         setup={"OPTBENCH_EXECUTOR": "ray"}),
    Case("executor: unknown executor in a profile", lambda ctx: ctx.profile("executor: threads\n"), ("'threads'", "serial, pool, ray")),
    Case("cli: bad OPTBENCH_EXECUTOR stops execute before a kernel starts",
         lambda ctx: ctx.cli("execute", "--profile", "smoke", "--root", str(ctx.root)), ("'threads'", "serial, pool, ray"),
         CommandLineExit, setup={"OPTBENCH_EXECUTOR": "threads"}),
    # ---- optimizer hyperparameters -------------------------------------------------------------------------
    Case("optimizer: unknown hyperparameter", _optimizer("sgd", learning_rate=0.1), ("'learning_rate'", "lr")),
    Case("optimizer: beta2 at 1.5", _optimizer("adam", betas=[0.9, 1.5]), ("1.5", "[0, 1)")),
    Case("optimizer: a single beta", _optimizer("adam", betas=[0.9]), ("[0.9]", "pair")),
    Case("optimizer: negative momentum", _optimizer("sgd", momentum=-0.9), ("momentum -0.9", "[0, 1)")),
    Case("optimizer: momentum 1", _optimizer("sgd", momentum=1.0), ("momentum 1.0", "[0, 1)")),
    Case("optimizer: RMSprop momentum above 1", _optimizer("rmsprop", momentum=1.5), ("momentum 1.5", "[0, 1)", "'rmsprop'")),
    Case("optimizer: SVRG momentum above 1", _optimizer("svrg", momentum=2.0), ("momentum 2.0", "[0, 1)", "'svrg'")),
    Case("optimizer: ATMO momentum above 1", _optimizer("atmo", momentum=1.2), ("momentum 1.2", "[0, 1)")),
    Case("optimizer: infinite learning rate", _optimizer("adam", lr=float("inf")), ("lr inf", "finite")),
    Case("optimizer: infinite beta", _optimizer("adam", betas=[0.9, float("inf")]), ("betas [0.9, inf]", "finite")),
    Case("optimizer: NaN weight decay", _optimizer("sgd", weight_decay=float("nan")), ("weight_decay nan", "finite")),
    Case("optimizer: Lookahead k of 0", _optimizer("lookahead", k=0), ("k 0", ">= 1")),
    Case("optimizer: Lookahead around an unknown optimizer", _optimizer("lookahead", inner="adamx"), ("'adamx'", "adam")),
    Case("optimizer: fused given as a string", _optimizer("padam", fused="yes"), ("fused 'yes'", "True or False")),
    # ---- dataset paths ------------------------------------------------------------------------------------
    Case("data: check-profile with Fashion-MNIST nowhere, download impossible", lambda ctx: (
        ctx.monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", ctx.tmp / "no-debian-package"),
        (ctx.root / "profiles" / "bad.yaml").write_text("notebooks:\n  study1_optimizers:\n    dataset: fashion_mnist\n"),
        ctx.cli("check-profile", "--profile", "bad", "--root", str(ctx.root))),
         ("'fashion_mnist'", "empty-data", "FashionMNIST/raw/", "OPTBENCH_DATA_DIR"), CommandLineExit, setup=NO_NETWORK),
    Case("data: CIFAR-10 not in the data directory, download impossible", lambda ctx: ctx.sweep(dataset="cifar10", image_size=None),
         ("'cifar10'", "empty-data", "cifar-10-batches-py", "OPTBENCH_DATA_DIR"), DatasetUnavailableError,
         setup=NO_NETWORK),
]


@pytest.fixture(scope="module")
def repository_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    for item in ("notebooks", "profiles"):
        shutil.copytree(REPOSITORY / item, root / item)
    return root


def files_under(path: Path) -> list[str]:
    return sorted(str(item.relative_to(path)) for item in path.rglob("*")) if path.exists() else []


def test_the_table_covers_every_kind_of_input():
    kinds = {case.name.split(":")[0] for case in CASES}
    assert kinds >= {"cli", "env", "profile", "notebook", "run", "optimizer", "data", "store", "executor"}
    assert len(CASES) >= 25 and len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gives_one_clear_error_before_anything_runs(case, repository_copy, tmp_path, monkeypatch):
    results = Path(os.environ["OPTBENCH_RESULTS_DIR"])  # the isolated results directory of this test
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path / "empty-data"))
    (tmp_path / "empty-data").mkdir()
    for name, value in case.setup.items():
        monkeypatch.setenv(name, value)
    profiles_before = files_under(repository_copy)
    context = Context(repository_copy, tmp_path, monkeypatch)
    try:
        with pytest.raises(case.error) as caught:
            case.action(context)
    finally:
        for cleanup in context.cleanups:
            cleanup()
    message = str(caught.value)
    if case.error is CommandLineExit:
        assert caught.value.code == 2
        assert message.count("error:") == 1, message  # one error, not a traceback
    for expected in case.expected:
        assert expected in message, f"{expected!r} not in {message!r}"
    assert "Traceback" not in message
    # nothing was written: no results, no checkpoints, no locks, no executed notebooks, no logs, no data
    assert files_under(results) == []
    if case.name.startswith(("cli", "env", "profile", "notebook")) or "check-profile" in case.name:
        assert files_under(tmp_path / "empty-data") == [], files_under(tmp_path / "empty-data")
    assert set(files_under(repository_copy)) - set(profiles_before) - {"profiles/bad.yaml"} == set()
    (repository_copy / "profiles" / "bad.yaml").unlink(missing_ok=True)


def test_the_installed_command_exits_with_status_2_and_names_the_bad_profile(repository_copy, tmp_path):
    command = [str(Path(sys.executable).parent / "optbench"), "execute", "--profile", "../../etc/passwd", "--root", str(repository_copy)]
    env = {**os.environ, "OPTBENCH_RESULTS_DIR": str(tmp_path / "results")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert "'../../etc/passwd'" in result.stderr and "letters, digits" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "results").exists()
