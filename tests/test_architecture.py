"""The package's shape, checked: each package's ``__init__`` is the face the others use (no
module imports another package's private module or any module's private name), the modules
import each other without a cycle, each constant and label is defined once, and the contracts
(an executor, a plugin's own trainer) are enough to extend cvkit with."""

from __future__ import annotations

import ast
import collections
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import cvkit
from cvkit.errors import JobsFailed

ROOT = Path(cvkit.__file__).resolve().parents[1]  # the sources of the cvkit under test
# Where each package's sources are: the example plugins ship as cvkit.examples (pyproject.toml).
SOURCES = {"cvkit": ROOT / "cvkit", "cvkit.examples": ROOT / "plugins"}


def _modules() -> dict[str, Path]:
    """Every module of the installed package by its dotted name (a package by its own name)."""
    modules = {}
    for prefix, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([prefix, *parts])] = path
    return modules


MODULES = _modules()


class Import(collections.namedtuple("Import", "importer target name line eager")):
    """One imported module, or one name imported from a module (``name`` None for a module)."""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> list[Import]:
    """The imports of ``module`` within cvkit, relative ones resolved. Eager: run when the module
    is imported (not inside a function, nor under ``if TYPE_CHECKING:``)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, eager: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(module, alias.name, None, node.lineno, eager))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:
                    found.append(Import(module, submodule, None, node.lineno, eager))
                else:
                    found.append(Import(module, base, alias.name, node.lineno, eager))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, eager)
            return
        lazy = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, eager and not lazy)

    visit(ast.parse(path.read_text(encoding="utf-8")), True)
    return [i for i in found if i.target == "cvkit" or i.target.startswith("cvkit.")]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _reach_in(importer: str, target: str, name: str | None) -> str | None:
    """Why importing ``name`` (or the module itself) from ``target`` breaks a package's privacy,
    or None. A private module (``_x``) is private to the package that holds it, its subpackages
    included; a private name is private to its module."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if _is_private(part):
            owner = ".".join(parts[:i])
            if importer != owner and not importer.startswith(owner + "."):
                return f"imports {'.'.join(parts[: i + 1])}, private to {owner}"
            break
    if name is not None and _is_private(name):
        return f"imports the private name {name} from {target}"
    return None


def test_no_module_imports_another_packages_private_module_or_a_private_name():
    reach_ins = [
        f"{MODULES[i.importer].relative_to(ROOT)}:{i.line}: {reason}"
        for module in MODULES
        for i in _imports(module)
        if (reason := _reach_in(i.importer, i.target, i.name))
    ]
    assert not reach_ins, "use what the package's __init__ exports:\n" + "\n".join(reach_ins)


# Run in a fresh interpreter: every import that `import cvkit` makes, with its importer.
TRACE_IMPORTS = """
import builtins, importlib.util, json, sys
traced = []
original = builtins.__import__

def tracing(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__", "")
    target = importlib.util.resolve_name("." * level + name, globals["__package__"]) if level else name
    if importer.startswith("cvkit") and target.startswith("cvkit"):
        traced.append([importer, target, list(fromlist or ())])
    return original(name, globals, locals, fromlist, level)

builtins.__import__ = tracing
import cvkit
builtins.__import__ = original
print(json.dumps(dict(traced=traced, loaded=sorted(m for m in sys.modules if m.startswith("cvkit")))))
"""


def test_importing_cvkit_reaches_no_package_private_module_at_run_time():
    out = subprocess.run(
        [sys.executable, "-c", TRACE_IMPORTS], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    trace = json.loads(out.splitlines()[-1])
    assert ["cvkit", "cvkit.api"] in [t[:2] for t in trace["traced"]]  # the trace saw the imports
    reach_ins = []
    for importer, target, names in trace["traced"]:
        for name in names or [None]:
            if name is not None and f"{target}.{name}" in trace["loaded"]:
                target, name = f"{target}.{name}", None
            if reason := _reach_in(importer, target, name):
                reach_ins.append(f"{importer}: {reason}")
    assert not reach_ins, "\n".join(reach_ins)
    assert set(trace["loaded"]) <= set(MODULES), "import cvkit loaded modules this test does not know"


def _edges(module_of=lambda module: module, *, lazy: bool = False) -> dict[str, set[str]]:
    """Who imports whom as modules are imported (eager imports only, unless ``lazy``: then those
    inside functions too). ``from P import n`` needs the package ``P`` initialised when ``n`` is a
    name in it, not when it is a submodule of it; the packages a module lies in are initialised
    before it runs, so they are no edge."""
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for module in MODULES:
        for i in _imports(module):
            if not (i.eager or lazy):
                continue
            parts = i.target.split(".")
            needed = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
            needed = {m for m in needed if not module.startswith(m + ".")}
            if i.name is not None:
                needed.add(i.target)  # reads an attribute of it, package or module
            for target in needed & MODULES.keys():
                if module_of(target) != module_of(module):
                    graph[module_of(module)].add(module_of(target))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of ``graph`` (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def connect(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(set(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    cycles = []
    for group in groups:
        start = min(group)
        path, seen = [start], {start}
        while True:  # walk inside the group until a node repeats: that is a cycle
            following = min(n for n in graph[path[-1]] if n in group)
            if following in seen:
                cycles.append(path[path.index(following) :] + [following])
                break
            path.append(following)
            seen.add(following)
    return cycles


def test_modules_import_each_other_without_a_cycle():
    cycles = _cycles(_edges())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _package(module: str) -> str:
    """The stage a module belongs to: its subpackage, or itself for a top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_packages_import_each_other_without_a_cycle():
    cycles = _cycles(_edges(_package))
    assert not cycles, "import cycles between packages:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_function_level_import_goes_back_up_the_flow():
    """An import inside a function dodges a cycle at import time but still runs the flow
    backwards (comparison importing report to build its own record): none, between modules or
    between stages."""
    for module_of in (lambda module: module, _package):
        cycles = _cycles(_edges(module_of, lazy=True))
        assert not cycles, "cycles through function-level imports:\n" + "\n".join(
            " -> ".join(c) for c in cycles
        )


def test_the_cycle_check_sees_function_level_imports(tmp_path, monkeypatch):
    upper, lower = tmp_path / "upper.py", tmp_path / "lower.py"
    upper.write_text("from cvkit import lower\n")
    lower.write_text("def f():\n    from cvkit import upper\n")
    monkeypatch.setitem(MODULES, "cvkit.upper", upper)
    monkeypatch.setitem(MODULES, "cvkit.lower", lower)
    assert not any("cvkit.upper" in cycle for cycle in _cycles(_edges()))
    assert ["cvkit.lower", "cvkit.upper", "cvkit.lower"] in _cycles(_edges(lazy=True))


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# Constants that agree today by coincidence, not by meaning: the metrics a verdict may rest on and
# the metrics the sample bootstrap computes.
COINCIDENT = {
    frozenset({"cvkit/stats/_metrics.py:VERDICT_METRICS", "cvkit/stats/_samples.py:BOOTSTRAP_METRICS"})
}


def test_each_constant_is_defined_once():
    """No two module-level constants hold the same literal value (a collection in any order)."""
    definitions = collections.defaultdict(set)
    for module, path in MODULES.items():
        if module.startswith("cvkit.examples"):
            continue  # each example plugin is a file of its own: its HYPERPARAMS may agree with another's
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not (isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None):
                continue
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            if isinstance(value, dict):
                value = frozenset((repr(k), repr(v)) for k, v in value.items())
            elif isinstance(value, (tuple, list, set, frozenset)):
                value = frozenset(map(repr, value))
            elif not isinstance(value, str):
                continue
            if not value:
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and (target.id.isupper() or target.id == "__version__"):
                    definitions[value].add(f"{path.relative_to(ROOT)}:{target.id}")
    repeated = [sorted(names) for names in definitions.values() if len(names) > 1 and names not in COINCIDENT]
    assert not repeated, "defined more than once:\n" + "\n".join(", ".join(names) for names in repeated)


def test_the_shared_constants_are_one_object_wherever_they_are_used():
    import cvkit.comparison
    import cvkit.data._extra
    import cvkit.data._loaders
    import cvkit.files
    import cvkit.runner
    import cvkit.trainers

    assert cvkit.comparison.SELECTION_RULES is cvkit.trainers.SELECTION_RULES
    assert cvkit.data._loaders.ID_COLUMNS is cvkit.data._extra.ID_COLUMNS
    assert cvkit.data._loaders.STORE_NAME is cvkit.runner.STORE_NAME is cvkit.files.STORE_NAME


def test_the_version_is_defined_once_and_the_build_reads_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cvkit._version.__version__"}
    assert cvkit.__version__ == ast.literal_eval(
        (ROOT / "cvkit" / "_version.py").read_text().split("__version__ = ", 1)[1].splitlines()[0]
    )


def _string_constants(tree: ast.AST) -> set[str]:
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def test_metric_labels_are_spelled_in_one_module():
    spelled = sorted(
        str(path.relative_to(ROOT))
        for path in MODULES.values()
        if "AUC" in _string_constants(ast.parse(path.read_text(encoding="utf-8")))
    )
    assert spelled == ["cvkit/stats/_metrics.py"]


def _turns_nan_into_none(function: ast.FunctionDef) -> bool:
    """``None if ... isnan(...) ... else ...`` somewhere in ``function``."""
    for node in ast.walk(function):
        if isinstance(node, ast.IfExp) and isinstance(node.body, ast.Constant) and node.body.value is None:
            calls = [n for n in ast.walk(node.test) if isinstance(n, ast.Call)]
            if any(getattr(c.func, "attr", getattr(c.func, "id", None)) == "isnan" for c in calls):
                return True
    return False


def test_one_helper_turns_nan_into_none():
    helpers = sorted(
        f"{path.relative_to(ROOT)}:{node.name}"
        for path in MODULES.values()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef) and _turns_nan_into_none(node)
    )
    assert helpers == ["cvkit/_json.py:nan_to_none"]


# --- contracts: what it takes to extend cvkit ---

SMALL = dict(baseline="logreg", folds=2, repeats=1, epochs=1, progress=False)


def test_a_new_executor_is_one_class_and_one_registration(tiny, tmp_path):
    from cvkit.cli import build_parser
    from cvkit.runner import EXECUTORS, ClaimedElsewhere, register_executor

    @register_executor("serial", "one job after another, the plainest way")
    class SerialExecutor:
        @classmethod
        def from_settings(cls, settings):
            return cls()

        def map(self, work, jobs, *, on_start=None, on_epoch=None, claim=None):
            for job in jobs:
                if claim and not claim(job):
                    yield job, None, ClaimedElsewhere()
                    continue
                if on_start:
                    on_start(job)
                try:
                    yield job, work(job, on_epoch), None
                except Exception as exc:
                    yield job, None, exc

    try:
        serial = cvkit.evaluate([], data=tiny, out=tmp_path / "serial", executor="serial", **SMALL)
        assert build_parser().parse_args(["evaluate", "--executor", "serial"]).executor == "serial"
    finally:
        del EXECUTORS["serial"]
    assert serial.counts.trained == 2 and serial.counts.failed == 0
    inprocess = cvkit.evaluate([], data=tiny, out=tmp_path / "inprocess", executor="inprocess", **SMALL)
    assert np.array_equal(_probabilities(serial), _probabilities(inprocess))


def test_registering_a_class_without_the_executor_methods_says_what_it_lacks():
    from cvkit.runner import EXECUTORS, register_executor

    with pytest.raises(TypeError, match=r"needs from_settings\(settings\) and map\(work, jobs\)"):

        @register_executor("broken", "no map")
        class NoMap:
            @classmethod
            def from_settings(cls, settings):
                return cls()

    assert "broken" not in EXECUTORS


def _probabilities(results) -> np.ndarray:
    frame = results.predictions.sort_values(["model", "repeat", "fold", "sample_id"])
    return frame.filter(like="prob_").to_numpy()


CLASS_PRIOR = '''
import numpy as np


class ClassPrior:
    """Gives every image the class shares of its training fold: a Trainer without a model."""

    def fit(self, train, val, context):
        counts = np.bincount(train.labels, minlength=context.n_classes)
        self.shares_ = counts / counts.sum()
        return self

    def predict_proba(self, data):
        return np.tile(self.shares_, (len(data), 1))


def make_trainer(context):
    return ClassPrior()
'''


def test_a_plugin_with_its_own_trainer_and_no_torch_model_runs(tiny, tmp_path, write_plugin):
    from cvkit.trainers import Trainer, load_plugin

    plugin = write_plugin("class_prior", CLASS_PRIOR)
    assert isinstance(load_plugin(str(plugin)).make_trainer(None), Trainer)
    results = cvkit.evaluate([plugin], data=tiny, out=tmp_path / "run", executor="inprocess", **SMALL)
    assert results.counts.trained == 4 and results.counts.failed == 0
    table = results.predictions
    shares = table[table.model == "class_prior"].filter(like="prob_").to_numpy()
    assert (
        np.allclose(shares.sum(axis=1), 1) and len(np.unique(shares.round(12), axis=0)) <= 2
    )  # one per fold


def test_a_make_trainer_that_returns_no_trainer_fails_with_one_line_naming_the_contract(
    tiny, tmp_path, write_plugin
):
    plugin = write_plugin(
        "no_predict",
        "class Half:\n    def fit(self, train, val, context):\n        return self\n\n\n"
        "def make_trainer(context):\n    return Half()\n",
    )
    with pytest.raises(
        JobsFailed, match=r"make_trainer returned a Half, which lacks .*cvkit\.trainers\.Trainer"
    ):
        cvkit.evaluate([plugin], data=tiny, out=tmp_path / "run", executor="inprocess", **SMALL)


def test_architecture_note_names_files_and_public_names_that_exist():
    """ARCHITECTURE.md's paths exist and each package's public face lists names it exports."""
    import importlib

    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:cvkit|tests|plugins|docs|benchmarks)/[\w/.]+\.(?:py|md|j2))`", text))
    assert len(paths) > 10 and not [p for p in paths if not (ROOT / p).exists()]
    rows = re.findall(r"^\| `(cvkit\.\w+)` \| [^|]+ \| ([^|]+) \|$", text, flags=re.M)
    assert len(rows) == 6
    for package, names in rows:
        exported = set(importlib.import_module(package).__all__)
        listed = set(re.findall(r"`(\w+)`", names))
        assert listed <= exported, (package, sorted(listed - exported))
