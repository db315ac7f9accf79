"""Command line: ``optbench execute --profile smoke`` runs the chapter notebooks headless."""

from __future__ import annotations

import argparse
import sys

from . import book, optim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="optbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    execute = commands.add_parser("execute", help="execute the chapter notebooks with a profile's parameters")
    execute.add_argument("--profile", default="default", help="a profile name: a file profiles/NAME.yaml (default: default)")
    execute.add_argument("--notebook", action="append", choices=list(book.NOTEBOOKS), help="only this notebook (repeatable)")
    execute.add_argument("--root", default=".", help="the repository root holding notebooks/, profiles/ and book/")
    check = commands.add_parser("check-profile", help="check a profile without running anything")
    check.add_argument("--profile", default="default")
    check.add_argument("--root", default=".")
    commands.add_parser("optimizers", help="list the registered optimizers and their defaults")
    arguments = parser.parse_args(argv)

    try:
        if arguments.command == "execute":
            seconds = book.execute_notebooks(arguments.profile, arguments.root, arguments.notebook)
            print(f"executed {len(seconds)} notebook(s) in {sum(seconds.values()):.1f} s")
        elif arguments.command == "check-profile":
            from pathlib import Path

            parameters = book.load_profile(arguments.profile, Path(arguments.root).resolve())
            print(f"profile {arguments.profile!r} is valid: {', '.join(parameters)}")
        else:
            for name in optim.available():
                extras = optim.spec(name).extra_hyperparameters
                also = f"  also accepts: {', '.join(extras)}" if extras else ""
                print(f"{name:24s} {optim.default_hyperparameters(name)}{also}")
    except book.ProfileError as error:
        print(f"optbench: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
