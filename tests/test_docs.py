"""The documents say what the code is: docs/architecture.md names every module of evo/ under its
package, the README's set-up commands are the ones CI and the demo run, and the layers that must be
torch-free are."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARCHITECTURE = (REPO / "docs" / "architecture.md").read_text()


def _sections() -> dict[str, str]:
    """``{"evo.genome": text, ..., "evo": text}``: the text of each package's ``### `evo.X``` section."""
    out: dict[str, str] = {}
    for part in ARCHITECTURE.split("\n### ")[1:]:
        m = re.match(r"`(evo(?:\.\w+)?)`", part)
        if m:
            out[m.group(1)] = part.split("\n## ")[0]
    return out


def _modules() -> list[tuple[str, str]]:
    """(package, module name relative to it) of every module under evo/: ``("evo.genome",
    "real2017.dna")``, ``("evo", "plots")``; a package's ``__init__`` counts for the top package only."""
    out = []
    for path in sorted((REPO / "evo").rglob("*.py")):
        parts = path.relative_to(REPO / "evo").with_suffix("").parts
        if len(parts) == 1:
            out.append(("evo", parts[0]))
        elif parts[-1] != "__init__":
            out.append((f"evo.{parts[0]}", ".".join(parts[1:])))
    return out


def test_architecture_names_every_package_and_every_module_in_it():
    sections = _sections()
    packages = {f"evo.{p.name}" for p in (REPO / "evo").iterdir() if (p / "__init__.py").exists()}
    assert packages | {"evo"} == set(sections), sorted(packages ^ set(sections))
    missing = [f"{pkg}: {name}" for pkg, name in _modules() if f"`{name}`" not in sections[pkg]]
    assert not missing, f"docs/architecture.md does not name these modules in their package's section: {missing}"


def test_architecture_draws_the_layers_in_their_order():
    picture = ARCHITECTURE.split("```")[1]
    rows = [line.split()[0] for line in picture.splitlines() if line.strip() and line.lstrip()[0].isalpha()]
    assert rows == ["cli", "worker", "population", "network", "genome", "base"], rows


def _setup_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_the_readmes_set_up_commands_are_the_ones_ci_and_the_demo_run():
    demo, tests = _setup_commands()
    # the tests: CI installs what the README installs and runs the suite the same way
    install, run = (c.strip() for c in tests.split("&&"))
    ci = (REPO / ".ci" / "run").read_text()
    assert install.startswith("python3 -m pip install ")
    assert re.search(r"python3 -m pip install .*" + re.escape(install.split("install ", 1)[1]), ci), install
    assert re.search(r"^" + re.escape(run) + r"$", ci, re.M), run
    # the demo: the package the command installs has an `evo` command whose `demo` is the demo
    install, run = (c.strip() for c in demo.split("&&"))
    assert install == "python3 -m pip install -e ." and run == "evo demo"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["evo"] == "evo.cli:main"
    from evo.cli import main

    assert "demo" in main.commands


def test_import_evo_and_the_pure_layers_imports_no_torch():
    code = ("import evo, evo.analysis, evo.population, evo.genome, evo.base; import sys; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
