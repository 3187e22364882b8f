"""A fresh clone installs what was tested: every dependency is bounded and pinned within its bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def pinned() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = Version(version.strip())
    return pins


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in [*project["dependencies"], *extras]]


def test_every_runtime_dependency_has_an_upper_bound():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    unbounded = [r for r in map(Requirement, project["dependencies"])
                 if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert unbounded == []


def test_constraints_pin_every_dependency_within_its_bounds():
    pins = pinned()
    for requirement in requirements():
        name = re.sub(r"[-_.]+", "-", requirement.name.lower())
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])


def test_constraints_hold_no_machine_specific_wheels_or_local_versions():
    text = (ROOT / "constraints.txt").read_text()
    assert not re.search(r"^(nvidia-|cuda-|triton==)", text, re.MULTILINE)
    assert "+" not in "".join(line for line in text.splitlines() if not line.startswith("#"))
    assert "torch==" in text


def test_make_installs_from_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    install = re.search(r"^\$\(VENV\)/\.installed:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert install and "constraints.txt" in install.group(0).splitlines()[0]
    assert "-c constraints.txt" in install.group(1)
