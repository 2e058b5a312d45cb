"""Install hygiene: every third-party module benchctl imports is a declared, satisfied requirement.

A fresh machine installs only what pyproject.toml names; a package that arrives today as some
other package's dependency can vanish with that package's next release (typer 0.29 stopped
installing click, and `import click` broke every command).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import distribution, packages_distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO, REQUIRE_EXTERNAL


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    parsed = [Requirement(r) for r in reqs]
    return {canonicalize_name(r.name): r for r in parsed}


def _optional_only() -> set[str]:
    """Distributions declared only in extras (ray, submitit, ...): a plain install may lack them."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    required = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    extras = {
        canonicalize_name(Requirement(r).name) for e in project.get("optional-dependencies", {}).values() for r in e
    }
    return extras - required


def _imported_top_level_modules() -> dict[str, str]:
    """{top-level module: first file importing it} over benchctl/, at any depth (lazy imports too)."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "benchctl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    return found


# Imported but not on PyPI, so not declarable: HumanoidBench installs from its repository (README,
# "Meta-World and HumanoidBench"); benchctl/envs/humanoid.py says how when the import fails.
NOT_ON_PYPI = {"humanoid_bench"}


def test_every_imported_package_is_declared_and_satisfied():
    declared = _requirements()
    owners = packages_distributions()
    stdlib = set(sys.stdlib_module_names) | {"benchctl"} | NOT_ON_PYPI
    problems = []
    for module, where in _imported_top_level_modules().items():
        if module in stdlib:
            continue
        dists = {canonicalize_name(d) for d in owners.get(module, [])}
        if not dists and canonicalize_name(module) in _optional_only() and not REQUIRE_EXTERNAL:
            continue  # an optional extra a plain install may lack (CI installs every extra)
        if not dists:
            problems.append(f"{module} (imported in {where}) is not installed")
            continue
        named = dists & set(declared)
        if not named:
            problems.append(f"{module} (imported in {where}, from {', '.join(sorted(dists))}) is not declared")
            continue
        for name in named:
            version = distribution(name).version
            if not declared[name].specifier.contains(version, prereleases=True):
                problems.append(f"{name} {version} is installed but pyproject.toml asks for {declared[name]}")
    assert not problems, "\n".join(problems)


def test_the_walk_sees_lazy_imports():
    """The check above is only as good as its walk: imports inside functions must be seen."""
    modules = _imported_top_level_modules()
    for module in ("torch", "typer", "rliable", "dm_control", "gymnasium", "matplotlib", "metaworld"):
        assert module in modules, module
    assert "click" not in modules  # typer >= 0.29 does not install it


def test_mypy_passes_on_benchctl():
    """The typed public API (py.typed) holds: `mypy` with pyproject's configuration finds nothing."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout
