"""Command line: execute the chapter notebooks headless, see what a build needs, and look after the results store.

  optbench execute --profile smoke [--notebook NAME] [-p NAME VALUE] [-f params.yaml] [--output PATH]
  optbench plan --profile default [--notebook NAME] [-p NAME VALUE]
  optbench status --profile default
  optbench clean --stale [--profile NAME] [--delete]
  optbench check-profile --profile NAME
  optbench parameters --profile smoke --notebook NAME [-p NAME VALUE] > params.yaml   (for papermill -f)
  optbench optimizers
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import book, optim

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def profile_options(command: argparse.ArgumentParser, notebooks: bool = True, parameters: bool = True) -> None:
        command.add_argument("--profile", default="default", help="a profile name: a file profiles/NAME.yaml (default: default)")
        command.add_argument("--root", default=".", help="the repository root holding notebooks/ and profiles/ (default: .)")
        if notebooks:
            command.add_argument("--notebook", action="append", choices=list(book.NOTEBOOKS), help="only this notebook (repeatable)")
        if parameters:
            command.add_argument("-p", "--parameter", action="append", nargs=2, metavar=("NAME", "VALUE"), default=[],
                                 help="set a notebook parameter over the profile's; VALUE is YAML, as in papermill's -y "
                                      "('[0, 1]' is a list, 1.0e-3 a number); repeatable")
            command.add_argument("-f", "--parameters-file", action="append", metavar="FILE", default=[],
                                 help="a YAML file of parameters (a mapping, as papermill's -f takes); -p wins over it")

    execute = commands.add_parser("execute", help="execute the chapter notebooks with a profile's parameters")
    profile_options(execute)
    execute.add_argument("--output", metavar="PATH", help="with one --notebook: write the executed notebook to PATH "
                                                         "(a file, or a directory) instead of the book tree")
    plan = commands.add_parser("plan", help="per chapter: runs needed, runs stored, and the estimated time left")
    profile_options(plan)
    status = commands.add_parser("status", help="per chapter: finished, diverged, missing, corrupt and stale runs, and compute spent")
    profile_options(status, notebooks=False, parameters=False)
    clean = commands.add_parser("clean", help="remove stale records (a dry run unless --delete)")
    clean.add_argument("--stale", action="store_true", required=True,
                       help="records no chapter of the current code reads (their configuration now has another id)")
    clean.add_argument("--profile", help="only this profile's records (default: every profile under the results directory)")
    clean.add_argument("--root", default=".", help="the repository root, whose results/ is used unless $OPTBENCH_RESULTS_DIR is set")
    clean.add_argument("--delete", action="store_true", help="remove them; without it, only list what would be removed")
    check = commands.add_parser("check-profile", help="check a profile (and parameters) without running anything")
    profile_options(check)
    parameters = commands.add_parser("parameters", help="print one notebook's final parameters as YAML, a parameter file "
                                                         "for papermill's -f")
    profile_options(parameters, notebooks=False)
    parameters.add_argument("--notebook", required=True, choices=list(book.NOTEBOOKS), help="the notebook")
    commands.add_parser("optimizers", help="list the registered optimizers and their defaults")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    from .execution import ChapterFailed, Interrupted

    try:
        return _run(arguments)
    except book.ProfileError as error:
        print(f"optbench: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ChapterFailed as error:
        print(f"optbench: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except Interrupted as error:
        print(f"optbench: {error}", file=sys.stderr)
        return 128 + error.signal_number
    except KeyboardInterrupt:
        print("optbench: interrupted; finished runs are stored: rerun the same command to resume.", file=sys.stderr)
        return 128 + signal.SIGINT


def _run(arguments: argparse.Namespace) -> int:
    if arguments.command == "optimizers":
        for name in optim.available():
            extras = optim.spec(name).extra_hyperparameters
            also = f"  also accepts: {', '.join(extras)}" if extras else ""
            print(f"{name:24s} {optim.default_hyperparameters(name)}{also}")
        return 0
    root = Path(arguments.root).resolve()
    if arguments.command == "clean":
        return _clean(arguments, root)
    overrides = book.read_overrides(getattr(arguments, "parameter", []), getattr(arguments, "parameters_file", []))
    notebooks = getattr(arguments, "notebook", None)
    notebooks = [notebooks] if isinstance(notebooks, str) else notebooks
    if arguments.command == "execute":
        seconds = book.execute_notebooks(arguments.profile, root, notebooks, overrides=overrides, output=arguments.output)
        print(f"executed {len(seconds)} notebook(s) in {sum(seconds.values()):.1f} s")
    else:
        with book.profile_environment(arguments.profile, root):
            _profile_command(arguments, root, overrides, notebooks)
    return 0


def _profile_command(arguments: argparse.Namespace, root: Path, overrides: dict, notebooks: list[str] | None) -> None:
    """check-profile, parameters, plan and status, inside the profile's environment (its build options set the
    configurations they check and count)."""
    from . import plan

    if arguments.command == "check-profile":
        book.load_profile(arguments.profile, root, overrides=overrides, notebooks=notebooks)
        book.check_environment()
        print(f"profile {arguments.profile!r} is valid: {', '.join(book.NOTEBOOKS)}")
    elif arguments.command == "parameters":
        import yaml

        parameters = book.load_profile(arguments.profile, root, check_data=False, overrides=overrides, notebooks=[arguments.notebook])
        print(yaml.safe_dump(parameters[arguments.notebook], sort_keys=False, default_flow_style=None, width=10_000), end="")
    elif arguments.command == "plan":
        # the plan trains nothing: it needs the parameters valid, not the datasets present
        parameters = book.load_profile(arguments.profile, root, check_data=False, overrides=overrides, notebooks=notebooks)
        results = book.results_directory(root)
        print(f"profile {arguments.profile!r}, records in {results / arguments.profile}:")
        for line in plan.plan_lines(arguments.profile, parameters, notebooks or list(book.NOTEBOOKS), results):
            print(f"  {line}")
        print("Runs a chapter picks while it executes (after a selection step) are not counted until they are stored.")
    elif arguments.command == "status":
        parameters = book.load_profile(arguments.profile, root, check_data=False)
        for line in plan.status_table(arguments.profile, parameters, book.results_directory(root)):
            print(line)


def _clean(arguments: argparse.Namespace, root: Path) -> int:
    from . import plan

    if arguments.profile is not None and not book.PROFILE_NAME.match(arguments.profile):
        raise book.ProfileError(f"invalid profile name {arguments.profile!r}: use letters, digits, '_' and '-' only")
    results = book.results_directory(root)
    stale = [(store, entry) for store in plan.profile_stores(results, arguments.profile) for entry in plan.stale_records(store)]
    if not stale:
        print(f"no stale records under {results}")
        return 0
    removed = 0
    for store, entry in stale:
        if arguments.delete:
            done = plan.remove_record(store, entry)
            removed += done
            print(f"{'removed' if done else 'kept (changed or in use meanwhile)'} {entry.path}: {entry.reason}")
        else:
            print(f"would remove {entry.path}: {entry.reason}")
    if arguments.delete:
        print(f"removed {removed} of {len(stale)} stale record(s)")
    else:
        print(f"{len(stale)} stale record(s); nothing was removed (dry run): add --delete to remove them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
