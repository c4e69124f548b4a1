"""cvkit installs and runs from its own declarations: every imported module comes from a
requirement pyproject.toml names, the package list names every package, and the built wheel,
installed into a fresh virtual environment, runs the commands a new user types, outside the
repository (the example plugins and report templates travel inside it)."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".git", "build", "dist", "reports", "node_modules", "__pycache__", ".eggs"}
# Import names that differ from their distribution's, for modules not installed here.
ALIASES = {
    "PIL": {"pillow"},
    "sklearn": {"scikit-learn"},
    "skimage": {"scikit-image"},
    "yaml": {"pyyaml"},
    "cv2": {"opencv-python", "opencv-python-headless"},
    "attr": {"attrs"},
}
LAZY_CALLS = {"importorskip", "import_module"}  # pytest.importorskip("x"), importlib.import_module("x")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(specs) -> set[str]:
    return {_normalise(re.split(r"[\s<>=!~;\[(@]", spec.strip(), maxsplit=1)[0]) for spec in specs}


def _python_files(root: Path):
    for folder, dirs, files in os.walk(root):
        # Virtual environments (folders holding pyvenv.cfg), build outputs and caches: not the repo's code.
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in SKIPPED_DIRS
            and not d.endswith(".egg-info")
            and not Path(folder, d, "pyvenv.cfg").exists()
        )
        yield from (Path(folder, f) for f in sorted(files) if f.endswith(".py"))


def _imports(tree: ast.Module):
    """(top-level module, line, eager) of every import: eager when it runs as the file is
    imported, unguarded (not inside a function, a try block, or an ``if``)."""

    def visit(node, eager):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno, eager
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno, eager
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in LAZY_CALLS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value.split(".")[0], node.lineno, False
        lazy = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.Try, ast.If))
        for child in ast.iter_child_nodes(node):
            yield from visit(child, eager and not lazy)

    yield from visit(tree, True)


def undeclared_imports(root: Path) -> list[str]:
    """One line per imported module that no requirement in ``root``'s pyproject.toml provides.

    Any module must come from a core dependency or an extra. A module that the package or its
    example plugins import eagerly must come from a core dependency (an extra may be absent), one
    that tests or benchmarks import eagerly from core or ``dev`` (they run with ``.[dev]``); other
    extras are imported where they are used, or through ``pytest.importorskip``."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    core = _names(project.get("dependencies", []))
    extras = {name: _names(specs) for name, specs in project.get("optional-dependencies", {}).items()}
    declared = core.union(*extras.values())
    files = list(_python_files(root))
    local = {p.stem for p in files} | {p.parent.name for p in files if p.name == "__init__.py"}
    providers = importlib.metadata.packages_distributions()
    gaps = []
    for path in files:
        rel = path.relative_to(root)
        shipped = rel.parts[0] in ("cvkit", "plugins")
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(rel))
        for module, line, eager in _imports(tree):
            if module in sys.stdlib_module_names or module in local or module == "__future__":
                continue
            installed = {_normalise(d) for d in providers.get(module, [])}
            dists = installed or ALIASES.get(module, {_normalise(module)})
            allowed = (core if shipped else core | extras.get("dev", set())) if eager else declared
            if dists & allowed:
                continue
            if dists & declared:
                where = "a core dependency" if shipped else "a core or dev dependency"
                why = (
                    f"imported when the file loads, but {', '.join(sorted(dists & declared))} is not {where}"
                )
            elif installed:
                why = f"provided by {', '.join(sorted(installed))}, which pyproject.toml does not name"
            else:
                why = "not installed here, and no requirement in pyproject.toml provides it"
            gaps.append(f"{rel}:{line}: imports {module}: {why}")
    return gaps


def test_every_imported_module_comes_from_a_declared_requirement():
    assert undeclared_imports(ROOT) == []


def test_the_import_check_fails_on_an_undeclared_import(tmp_path):
    """The check can fail: a scratch repository with this pyproject.toml and a few bad imports."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    files = {
        "cvkit/__init__.py": "import numpy\nimport ray\n",  # an extra, eagerly, in the package
        "plugins/lazy.py": "def build_model(context):\n    import timm\n",  # an extra, lazily: fine
        "tests/test_scratch.py": (
            "import pytest\nimport hypothesis\nimport not_a_module_anywhere\n"
            "mlflow = pytest.importorskip('mlflow')\n"  # an extra, skipped without it: fine
            "def test_x():\n    import left_pad_xyz\n"
        ),
        ".venv/lib/site.py": "import anything_in_a_venv\n",  # not the repository's code
    }
    for name, source in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    (tmp_path / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    gaps = undeclared_imports(tmp_path)
    assert [g.split(": imports ")[0] + " " + g.split(": imports ")[1].split(":")[0] for g in gaps] == [
        "cvkit/__init__.py:2 ray",
        "tests/test_scratch.py:3 not_a_module_anywhere",
        "tests/test_scratch.py:6 left_pad_xyz",
    ]
    assert "is not a core dependency" in gaps[0]


def test_the_package_list_names_every_package():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "cvkit").rglob("__init__.py")}
    assert sorted(setuptools["packages"]) == sorted(found | {"cvkit.examples"})
    assert setuptools["package-dir"] == {"cvkit.examples": "plugins"}


def _run(command, cwd, env, timeout=600):
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("build") is None,
    reason='building the wheel needs the build package: pip install -e ".[dev]"',
)
def test_the_wheel_installs_into_a_fresh_venv_and_runs_outside_the_repository(tmp_path):
    """`python -m build`, the wheel into a new virtual environment, then a new user's commands
    from a folder outside the repository. To spare a multi-GB torch install, the new environment
    sees this one's installed packages through a .pth file; cvkit itself comes from the wheel."""
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT], cwd=tmp_path, env=None)
    (wheel,) = dist.glob("cvkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    examples = {p.name for p in (ROOT / "plugins").glob("*.py")}
    assert {f"cvkit/examples/{name}" for name in examples} <= names
    assert "cvkit/report/templates/report.html.j2" in names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path, env=None)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path, env=None
    )
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    here |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()}
    Path(purelib.strip(), "outer_site_packages.pth").write_text("\n".join(sorted(here)) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    # Only cvkit: its dependencies are this environment's (CI resolves them in a fresh venv).
    install = ["install", "--no-index", "--no-deps", "--force-reinstall", wheel]
    _run([python, "-m", "pip", *install], tmp_path, env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    location = _run([python, "-c", "import cvkit; print(cvkit.__file__)"], work, env).strip()
    assert Path(location).is_relative_to(venv), location
    listing = _run(["cvkit", "plugins"], work, env)
    assert "fc_attention" in listing and "Attention-weighted fc head" in listing
    assert str(venv) in listing  # where the examples' files are, to copy
    assert "wrote" in _run(["cvkit", "new-plugin", "my_head"], work, env)
    tiny = ["--image-size", "16", "--folds", "2", "--repeats", "1", "--epochs", "1"]
    out = _run(["cvkit", "evaluate", "my_head.py", *tiny, "--report", "html"], work, env)
    assert "my_head" in out and (work / "reports").is_dir()
    assert list((work / "reports").glob("my_head-vs-resnet18-*/report.html"))  # the template came along
    out = _run(["cvkit", "evaluate", "fc_attention", *tiny, "--report", "none"], work, env)
    assert "fc_attention" in out
