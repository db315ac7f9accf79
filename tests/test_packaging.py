import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # requires-python allows 3.10, whose standard library has no TOML parser
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _requirements_by_name(requirements):
    return {re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower(): requirement.replace(" ", "") for requirement in requirements}


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _requirements_by_name(project["dependencies"] + project["optional-dependencies"]["test"])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    assert _requirements_by_name(pip_section) == declared


def test_jupyter_book_is_pinned_below_2():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    book = _requirements_by_name(project["dependencies"])["jupyter-book"]
    assert "<2" in book


def test_no_notebook_json_is_tracked():
    import subprocess

    tracked = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert tracked == []
