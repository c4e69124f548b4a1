"""Plugins: a Python file (or a built-in name) that tells cvkit how to train one model variant.

A plugin file defines one of the hooks ``build_model(context)`` (a torch model, which cvkit's
trainer trains), ``build_estimator(context)`` (a scikit-learn classifier) or
``make_trainer(context)`` (a :class:`~cvkit.trainers.Trainer` of its own), and may define
``HYPERPARAMS``, ``SEARCH``, ``DEPENDS``, ``ESTIMATOR_INPUTS`` and ``NEEDS_EXTRA``: ``_protocols.py``
holds the contract of each.

A plugin's identity (its digest, part of every job key) is its source, the source of every module
of its own folder that it imports (``import helper`` finds ``helper.py`` beside the plugin; import
statements are followed transitively, wherever they stand in a file), and the contents of the
files it declares in ``DEPENDS``: a list of paths relative to the plugin file (a checkpoint it
loads, a vocabulary; a folder stands for every file in it). Editing any of them trains the jobs
again instead of reusing old numbers. A module imported by a computed name (``importlib``) is
not seen: declare it in ``DEPENDS``.

``context`` is a :class:`~cvkit.trainers.TrainContext`: its docstring (and docs/plugins.md) lists
every attribute (``n_classes``, ``in_channels``, ``image_size``, ``n_extra``, ``hyperparams``,
``config``, ...). Before any job starts, :func:`~cvkit.trainers.preflight` builds each
``build_model`` plugin's model once and runs it on two samples, so that a broken contract stops
the run in a second, with one line saying what to fix.
"""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import PluginChanged, PluginError
from ._context import TrainContext
from ._examples import example_plugins, find_example
from ._models import BACKBONES, classifier, is_backbone
from ._protocols import HOOKS, BuildModel, PluginModule, Trainer
from ._sklearn import SklearnTrainer
from ._state import import_process_state
from ._torch import TorchTrainer

BUILTINS = BACKBONES + ("logreg",)


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin: its name, where it came from, a digest of its source, and its trainer factory."""

    name: str
    path: str | None
    digest: str
    factory: Callable[[TrainContext], Trainer] = field(repr=False)
    hyperparams: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    spec: str | None = None  # how it was loaded, so that a worker process can load it again
    nested_args: tuple | None = None
    pausable: bool = False  # its trainer can pause between epochs and go on elsewhere (TorchTrainer.fit)
    build_model: BuildModel | None = field(default=None, repr=False)  # its hook, for cvkit's trainer
    needs_extra: bool = False  # it cannot train without extra features (preflight says so, once)
    # Whether its predictions depend on the extra features, so that its job keys name them: None
    # for models cvkit's torch trainer builds (the pre-flight finds out), True for a plugin's own
    # trainer (cvkit cannot tell).
    reads_extra: bool | None = True

    def __reduce__(self):
        # The factory closes over the imported module: workers re-load the file instead, and
        # refuse it if it changed since the run started.
        return _reload, (self.spec or self.name, self.hyperparams, self.nested_args, self.digest)

    @property
    def origin(self) -> str:
        return self.path or f"built-in {self.name}"

    def make_trainer(self, context):
        trainer = self.factory(context)
        if not isinstance(trainer, Trainer):
            raise PluginError(
                f"{self.origin}: make_trainer returned a {type(trainer).__name__}, which lacks "
                "fit(train, val, context) or predict_proba(data); see cvkit.trainers.Trainer"
            )
        return trainer

    def nested(self, inner_folds: int, val_fraction: float) -> Plugin:
        """This plugin with its hyper-parameters chosen by nested cross-validation over ``search``."""
        from ._search import NestedSearchTrainer

        identity = json.dumps([self.digest, self.search, inner_folds, val_fraction], sort_keys=True)
        return replace(
            self,
            digest=hashlib.sha256(identity.encode()).hexdigest(),
            nested_args=(inner_folds, val_fraction),
            pausable=False,
            factory=lambda context: NestedSearchTrainer(self.factory, self.search, inner_folds, val_fraction),
        )


def load_plugin(spec: str, hyperparams: dict | None = None) -> Plugin:
    """Load a plugin: a built-in model, a plugin file, or a shipped example.

    Parameters
    ----------
    spec : str
        A built-in name (a backbone such as ``resnet18``, ``densenet121`` or ``timm:<name>``, or
        ``logreg``), a file path, or the name of a shipped example (such as ``fc_attention``; an
        existing file of that name wins).
    hyperparams : dict or None, default=None
        Overrides of the plugin's ``HYPERPARAMS`` defaults, by name.

    Returns
    -------
    Plugin
        The model's name, hook, hyper-parameters and the digest of its source (part of every job key).

    Raises
    ------
    PluginError
        A missing or broken file, a file without exactly one model hook, or an unknown
        hyper-parameter.
    """
    if spec in BUILTINS or is_backbone(spec):
        return _builtin(spec, hyperparams or {})
    path = Path(spec)
    if not path.is_file():
        path = find_example(spec) or path
    if path.suffix != ".py" or not path.is_file():
        raise PluginError(_not_found(spec))
    source = path.read_bytes()
    module = _import(path, source)
    hooks = [name for name in HOOKS if callable(getattr(module, name, None))]
    if len(hooks) != 1:
        found = f"defines {' and '.join(hooks)}" if hooks else "defines none of"
        raise PluginError(f"{path}: {found} {', '.join(h + '(context)' for h in HOOKS)}; define exactly one")
    defaults = getattr(module, "HYPERPARAMS", PluginModule.HYPERPARAMS)
    if not isinstance(defaults, dict):
        raise PluginError(f"{path}: HYPERPARAMS must be a dict of name -> default value")
    params = _merge(defaults, hyperparams or {}, str(path))
    search = getattr(module, "SEARCH", PluginModule.SEARCH)
    if not isinstance(search, dict) or not all(isinstance(v, (list, tuple)) and v for v in search.values()):
        raise PluginError(f"{path}: SEARCH must be a dict of name -> non-empty list of values")
    _merge(defaults, search, f"{path} SEARCH")
    needs_extra = getattr(module, "NEEDS_EXTRA", PluginModule.NEEDS_EXTRA)
    if not isinstance(needs_extra, bool):
        raise PluginError(f"{path}: NEEDS_EXTRA must be True or False, not {needs_extra!r}")
    hook = getattr(module, hooks[0])
    if hooks[0] == "build_model":
        factory = lambda context: TorchTrainer(hook)  # noqa: E731
    elif hooks[0] == "build_estimator":
        inputs = getattr(module, "ESTIMATOR_INPUTS", PluginModule.ESTIMATOR_INPUTS)
        factory = lambda context: SklearnTrainer(hook(context), inputs)  # noqa: E731
        needs_extra = needs_extra or inputs != "pixels"
    else:
        factory = hook
    reads_extra = {"build_model": None, "build_estimator": needs_extra}.get(hooks[0], True)
    digest = _digest(path, source, getattr(module, "DEPENDS", PluginModule.DEPENDS))
    # Workers (a Ray node's among them) may run in another folder: they load it by absolute path.
    return Plugin(
        path.stem,
        str(path),
        digest,
        factory,
        params,
        {k: list(v) for k, v in search.items()},
        spec=str(path.resolve()),
        pausable=hooks[0] == "build_model",
        build_model=hook if hooks[0] == "build_model" else None,
        needs_extra=needs_extra,
        reads_extra=reads_extra,
    )


def _digest(path: Path, source: bytes, depends) -> str:
    """The plugin's identity: its source, its folder's modules it imports, its ``DEPENDS``
    files and cvkit's training code. Files are named by their path relative to the plugin's
    folder, so a moved folder keeps its identity."""
    if not isinstance(depends, (list, tuple)):
        raise PluginError(f"{path}: DEPENDS must be a list of file paths relative to the plugin file")
    root = path.parent.absolute()
    h = hashlib.sha256(source)
    for module in _local_imports(path):
        h.update(f"\0module {module.relative_to(root).as_posix()}\0".encode())
        h.update(module.read_bytes())
    for entry in depends:
        if not isinstance(entry, (str, os.PathLike)):
            raise PluginError(f"{path}: DEPENDS must hold file paths (strings), not {entry!r}")
        target = root / entry
        if not target.exists():
            raise PluginError(
                f"{path}: DEPENDS names {str(entry)!r}, which does not exist ({target}); give the path "
                "relative to the plugin file, or remove it from DEPENDS"
            )
        files = sorted(f for f in target.rglob("*") if f.is_file()) if target.is_dir() else [target]
        for file in files:
            h.update(f"\0depends {os.path.relpath(file, root)}\0".encode())
            h.update(_file_digest(str(file.resolve()), *_stamp(file)).encode())
    h.update(engine_digest().encode())
    return h.hexdigest()


def _local_imports(path: Path) -> list[Path]:
    """The ``.py`` files under the plugin's folder that it imports, directly or through them,
    found in their import statements (anywhere in a file: a function's lazy import counts) and
    resolved from the plugin's folder as Python resolves them."""
    root = path.parent.absolute()
    start = path.absolute()
    seen, queue = {start}, [start]
    while queue:
        current = queue.pop()
        try:
            tree = ast.parse(current.read_bytes(), str(current))
        except (SyntaxError, ValueError):  # importing it will say what is wrong
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names, base = [alias.name for alias in node.names], root
            elif isinstance(node, ast.ImportFrom):
                base = root
                if node.level:  # relative: from the importing file's package
                    base = current.parent
                    for _ in range(node.level - 1):
                        base = base.parent
                prefix = f"{node.module}." if node.module else ""
                names = [prefix + alias.name for alias in node.names]
            else:
                continue
            for name in names:
                for file in _module_files(base, name.split(".")):
                    if file not in seen and root in file.parents:
                        seen.add(file)
                        queue.append(file)
    seen.discard(start)
    return sorted(seen)


def _module_files(base: Path, parts: list[str]) -> list[Path]:
    """The files ``import a.b.c`` runs from ``base``: each package's ``__init__.py`` and the
    module's file (or none, for a name that is not there: an installed module)."""
    files, folder = [], base
    for part in parts:
        if (folder / part / "__init__.py").is_file():
            files.append(folder / part / "__init__.py")
        elif (folder / f"{part}.py").is_file():
            files.append(folder / f"{part}.py")
            break  # the rest names attributes of the module
        elif not (folder / part).is_dir():  # a namespace package goes on; anything else ends here
            break
        folder = folder / part
    return files


def _stamp(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file, once per process for its size and modification time (a checkpoint is
    hashed by the driver and again by each worker that loads the plugin)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _not_found(spec: str) -> str:
    """One line for a plugin that is neither a file, a built-in model nor a shipped example."""
    examples = list(example_plugins())
    stem = Path(spec).stem
    if stem in examples:
        hint = f"; did you mean the example that ships with cvkit, {stem!r}?"
    elif close := difflib.get_close_matches(spec, [*BUILTINS, *examples], n=1):
        hint = f"; did you mean {close[0]!r}?"
    else:
        hint = (
            f"; pass a .py file, an example ({', '.join(examples)}: `cvkit plugins` describes them) "
            f"or a built-in model ({', '.join(BUILTINS)})"
        )
    return f"{spec}: no such plugin file{hint}"


def _reload(spec: str, hyperparams: dict, nested_args: tuple | None, digest: str) -> Plugin:
    """The plugin a job was made with, loaded again in a worker process. A file edited (or
    broken) since the run started gives a stand-in whose jobs fail with ``PluginChanged``: raised
    here, while the worker unpickles its task, the error would kill the worker instead."""
    try:
        plugin = load_plugin(spec, hyperparams)
        if nested_args is not None:
            plugin = plugin.nested(*nested_args)
    except PluginError:
        plugin = None
    if plugin is not None and plugin.digest == digest:
        return plugin

    def changed(context):
        raise PluginChanged(
            f"{spec} changed during the run (it is no longer the file the run started with): restore "
            "it and rerun the same command to resume, or start a new run of the new version with "
            "--out NEW"
        )

    return Plugin(Path(spec).stem, spec, digest, changed, hyperparams, spec=spec, nested_args=nested_args)


@functools.cache
def engine_digest() -> str:
    """Hash of cvkit's own training code: a change to the recipe invalidates stored jobs.
    Computed once per process: the code does not change while it runs."""
    h = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        h.update(source.read_bytes())
    return h.hexdigest()


def plugin_frame(exc: BaseException, plugin: Plugin) -> str:
    """``file:line`` of the deepest traceback frame inside the plugin file, or the plugin's origin."""
    if plugin.path:
        target = str(Path(plugin.path).resolve())
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if str(Path(frame.filename).resolve()) == target:
                return f"{plugin.path}:{frame.lineno}"
    return plugin.origin


def _builtin(name: str, hyperparams: dict) -> Plugin:
    digest = hashlib.sha256(f"builtin:{name}:{engine_digest()}".encode()).hexdigest()
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        params = _merge({"C": 1.0, "inputs": "pixels"}, hyperparams, name)
        estimator = make_pipeline(StandardScaler(), LogisticRegression(C=params["C"], max_iter=5000))
        return Plugin(
            name,
            None,
            digest,
            lambda context: SklearnTrainer(estimator, params["inputs"]),
            params,
            needs_extra=params["inputs"] != "pixels",
            reads_extra=params["inputs"] != "pixels",
        )

    def build_model(context):
        config = context.config
        return classifier(
            name,
            in_channels=context.in_channels,
            n_classes=context.n_classes,
            stem=config.stem,
            weights=config.weights,
        )

    _merge({}, hyperparams, name)
    factory = lambda context: TorchTrainer(build_model)  # noqa: E731
    return Plugin(name, None, digest, factory, {}, pausable=True, build_model=build_model, reads_extra=None)


def _merge(defaults: dict, overrides: dict, where: str) -> dict:
    unknown = [k for k in overrides if k not in defaults]
    if unknown:
        known = ", ".join(defaults) or "none"
        raise PluginError(f"{where}: unknown hyper-parameter(s) {', '.join(unknown)}; it declares: {known}")
    return {**defaults, **overrides}


def _import(path: Path, source: bytes):
    name = f"cvkit_plugin_{path.stem}_{hashlib.sha256(source).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise PluginError(f"{path}:{exc.lineno}: syntax error: {exc.msg}; fix the plugin file") from None
    # `import helper` finds helper.py beside the plugin (also later, from a function, and in the
    # worker processes, which load the plugin again). Last on the path: it never hides an
    # installed module.
    folder = str(path.parent.absolute())
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        with import_process_state(str(path)):
            spec.loader.exec_module(module)
    except Exception as exc:
        line = next(
            (
                f.lineno
                for f in reversed(traceback.extract_tb(exc.__traceback__))
                if Path(f.filename).resolve() == path.resolve()
            ),
            "?",
        )
        raise PluginError(
            f"{path}:{line}: importing the plugin failed: {type(exc).__name__}: {exc}"
        ) from None
    sys.modules[name] = module  # lets worker processes unpickle objects the plugin defines
    return module
