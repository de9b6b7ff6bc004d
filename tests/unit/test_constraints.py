"""constraints.txt pins the environment `make demo` and `make test` install: every dependency
pyproject.toml declares has an exact version there, inside the declared range, and the
environment running the tests is that one (so a passing suite vouches for the pinned set)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, f"constraints.txt line {n} is not 'name==version': {line!r}"
        name = canonicalize_name(m.group(1))
        assert name not in out, f"constraints.txt pins {name} twice"
        out[name] = m.group(2)
    return out


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_every_declared_dependency_is_pinned_inside_its_range() -> None:
    p = pins()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in p, f"{req.name} is declared in pyproject.toml but not pinned in constraints.txt (make constraints)"
        assert req.specifier.contains(Version(p[name]), prereleases=True), (
            f"constraints.txt pins {req.name}=={p[name]}, outside pyproject.toml's {req.specifier}")


def test_the_running_environment_is_the_pinned_one() -> None:
    # Packages a platform does not need (torch's CUDA wheels off Linux) are simply absent.
    checked = 0
    for name, version in pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        assert Version(installed) == Version(version), (
            f"{name} {installed} is installed, constraints.txt pins {version}: run `make test` "
            "(it reinstalls from constraints.txt) or `make constraints` to re-pin")
        checked += 1
    assert checked >= len(declared()), "fewer pinned packages are installed than pyproject.toml declares"
