"""The example plugins that ship with cvkit, and the starting file of a new plugin.

The examples are the repository's top-level ``plugins/`` folder, installed as the package
``cvkit.examples`` (pyproject.toml maps one onto the other), so that an installed cvkit runs
``cvkit evaluate fc_attention`` from any folder, and ``cvkit plugins`` lists them. Their
descriptions are read from the files' docstrings without importing them: listing must not need
torch to import every model.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import tempfile
from pathlib import Path

from ..errors import PluginError

PLUGIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def example_plugins() -> dict[str, Path]:
    """The shipped example plugins: name -> file, sorted by name."""
    # Found, not imported: the examples are plugins built on this package, and only their files are read.
    folder = Path(importlib.util.find_spec("cvkit.examples").origin).parent
    return {path.stem: path for path in sorted(folder.glob("*.py")) if not path.stem.startswith("_")}


def find_example(name: str) -> Path | None:
    """The file of the example plugin called ``name`` (without ``.py``), or None."""
    return example_plugins().get(name)


def describe_plugin(path: Path) -> str:
    """The first line of a plugin file's docstring: what its variant changes."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        doc = None
    return doc.strip().splitlines()[0] if doc else "(no description: the file has no docstring)"


def write_plugin_template(name: str, folder: Path | str = ".", *, taken: tuple[str, ...] = ()) -> Path:
    """Write ``NAME.py``, a commented plugin that runs as written, into ``folder``; never
    overwrite a file. ``name`` may end in ``.py``; it becomes the model's name in every report, so
    it must be a Python identifier and not one of the ``taken`` (built-in) names."""
    stem = name[:-3] if name.endswith(".py") else name
    if not PLUGIN_NAME.fullmatch(stem):
        raise PluginError(
            f"{name!r} cannot name a plugin: use letters, digits and underscores, not starting with a "
            "digit (it names the model in every report), e.g. my_head"
        )
    if stem in taken:
        raise PluginError(f"{stem!r} is a built-in model's name; choose another, e.g. my_{stem}")
    target = Path(folder) / f"{stem}.py"
    if target.exists():
        raise PluginError(f"{target} already exists; choose another name or move that file away")
    # Write beside the target, then link it into place: the file appears whole or not at all,
    # and a file created meanwhile is never overwritten (os.link refuses an existing target).
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(TEMPLATE.format(name=stem))
        os.link(temporary, target)
    except FileExistsError:
        raise PluginError(f"{target} already exists; choose another name or move that file away") from None
    finally:
        os.unlink(temporary)
    return target


TEMPLATE = '''"""{name}: what this variant changes, in one line (write it here).

A cvkit plugin, written by `cvkit new-plugin {name}`: it runs as it is (a small MLP replaces the
baseline's classifier); edit it into your idea. Compare it with the baseline:

    cvkit evaluate {name}.py --folds 5 --repeats 3

Everything but what you change here (backbone, stem, training recipe, splits, seeds) is the
baseline's, so the comparison isolates your change. A plugin defines exactly one of
    build_model(context) -> torch.nn.Module   cvkit's trainer does the rest (this file);
    build_estimator(context)                  a scikit-learn classifier instead;
    make_trainer(context)                     any object with fit(train, val, context) and
                                              predict_proba(data).
The shipped examples show more (`cvkit plugins` lists them and where they are); the whole contract,
with every attribute of the context, is in cvkit's docs/plugins.md. Before any job starts, cvkit
builds the model once and runs it on two images: a broken contract stops the run with one line.
"""

from torch import nn

from cvkit.trainers import backbone

# Hyper-parameters and their defaults. build_model reads them from context.hyperparams; they are
# part of every job's identity (a changed value trains again) and set from the command line:
#     cvkit evaluate {name}.py --param {name}.hidden=128
HYPERPARAMS = {{"hidden": 256, "dropout": 0.5}}

# Optional: values to choose among by nested cross-validation. With --nested, each outer
# training part runs an inner CV (--inner-folds 3) to pick them, never looking at its test fold;
# without --nested the defaults above are used and cvkit says so. Delete SEARCH if not needed.
SEARCH = {{"hidden": [64, 256]}}

# Optional: files this plugin reads besides Python code (a checkpoint it loads, a vocabulary),
# as paths relative to this file; a folder stands for every file in it. Their contents are part
# of every job's identity, as are the .py files of this folder that the plugin imports (import
# helper finds helper.py beside this file): edit one and the jobs train again instead of reusing
# old numbers. A declared file that is missing stops the run with one line. For example:
#     DEPENDS = ["checkpoints/head.pt"]


def build_model(context):
    """The model of one training job. The context (a cvkit.trainers.TrainContext) describes the
    run:
        context.n_classes     number of classes (2 for a binary task)
        context.in_channels   channels per image (1 for grey, 3 for colour)
        context.image_size    (height, width) in pixels
        context.n_extra       extra features per image (0 without --extra); extra_names their names
        context.class_names   class of each label index; context.positive the positive class's index
        context.hyperparams   HYPERPARAMS below, with --param overrides
        context.config        the shared recipe: backbone, stem, weights, epochs, lr, ...
        context.seed, context.device   the job's seed and device (cvkit's trainer uses them)
    The model's forward(x) gets a batch of images (N, C, H, W) and returns class logits of shape
    (N, context.n_classes): a binary head needs two outputs, not one. Write
    forward(self, x, extra) to also get the standardised extra features (N, context.n_extra).

    backbone(context) returns the pair (module, width): the baseline's network without its
    classifier, mapping images to features (N, width), and that width. Unpack it; the pair
    itself is not a module. feature_maps(context) returns (module, widths) instead, for a model
    that needs each stage's feature map (N, widths[i], H_i, W_i) on any backbone."""
    features, width = backbone(context)
    hidden = context.hyperparams["hidden"]
    head = nn.Sequential(
        nn.Linear(width, hidden),
        nn.ReLU(),
        nn.Dropout(context.hyperparams["dropout"]),
        nn.Linear(hidden, context.n_classes),
    )
    return nn.Sequential(features, head)
'''
