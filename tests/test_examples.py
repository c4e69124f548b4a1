"""The example plugins ship with cvkit: found by name from any folder, listed by `cvkit plugins`,
and `cvkit new-plugin` writes a starting file that runs as written and never overwrites one."""

from pathlib import Path

import pytest
import torch

from cvkit.cli import main
from cvkit.errors import PluginError
from cvkit.trainers import BACKBONES, TrainConfig, TrainContext, example_plugins, load_plugin

ROOT = Path(__file__).resolve().parents[1]
OWN_PLUGIN = """
from sklearn.dummy import DummyClassifier


def build_estimator(context):
    return DummyClassifier()
"""


def _context(tiny, hyperparams):
    return TrainContext(
        config=TrainConfig(epochs=1),
        n_classes=2,
        in_channels=1,
        image_size=(16, 16),
        class_names=tiny.class_names,
        positive=tiny.positive,
        extra_names=(),
        seed=0,
        device="cpu",
        hyperparams=hyperparams,
    )


def test_the_examples_are_the_repositorys_plugins_folder():
    examples = example_plugins()
    assert set(examples) == {p.stem for p in (ROOT / "plugins").glob("*.py") if p.stem != "__init__"}
    assert all(path.read_bytes() == (ROOT / "plugins" / path.name).read_bytes() for path in examples.values())


def test_an_example_loads_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plugin = load_plugin("fc_attention")
    assert plugin.name == "fc_attention" and Path(plugin.path) == example_plugins()["fc_attention"]
    assert plugin.digest == load_plugin(str(ROOT / "plugins" / "fc_attention.py")).digest  # the same file


def test_an_existing_file_wins_over_an_example_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("fc_attention").mkdir()  # not a plugin file: the example is used
    assert Path(load_plugin("fc_attention").path) == example_plugins()["fc_attention"]
    own = tmp_path / "mine" / "fc_attention.py"
    own.parent.mkdir()
    own.write_text(OWN_PLUGIN)
    assert load_plugin(str(own)).path == str(own)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("plugins/fc_attention.py", "did you mean the example that ships with cvkit, 'fc_attention'"),
        ("fc_atention", "did you mean 'fc_attention'"),
        ("zzz", r"pass a \.py file, an example \(concat_fusion, .*fc_attention.*\) or a built-in model"),
    ],
)
def test_a_name_that_is_neither_file_nor_example_lists_them(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginError, match=message):
        load_plugin(spec)


def test_cvkit_plugins_lists_each_example_with_its_line_and_the_builtins(capsys):
    assert main(["plugins"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # undo the table's wrapping
    for name, path in example_plugins().items():
        summary = path.read_text().split('"""')[1].splitlines()[0]
        assert f"{name} {summary}" in out
    assert all(name in out for name in BACKBONES) and "logreg" in out
    assert str(example_plugins()["fc_attention"].parent) in out


def test_new_plugin_writes_a_file_that_runs_as_written(tmp_path, tiny, capsys):
    assert main(["new-plugin", "my_head", "--dir", tmp_path]) == 0
    path = tmp_path / "my_head.py"
    assert f"wrote {path}" in capsys.readouterr().out
    source = path.read_text()
    assert all(
        word in source for word in ("def build_model(context)", "HYPERPARAMS = {", "SEARCH = {", "--nested")
    )
    plugin = load_plugin(str(path))
    assert plugin.name == "my_head" and plugin.search == {"hidden": [64, 256]}
    model = plugin.make_trainer(_context(tiny, plugin.hyperparams)).build_model(
        _context(tiny, plugin.hyperparams)
    )
    assert model(torch.zeros(3, 1, 16, 16)).shape == (3, 2)


def test_new_plugin_never_overwrites_and_refuses_bad_names(tmp_path, capsys):
    existing = tmp_path / "my_head.py"
    existing.write_text("# mine\n")
    for name, message in [
        ("my_head", "already exists"),
        ("my_head.py", "already exists"),
        ("2nd-head", "cannot name a plugin"),
        ("resnet18", "is a built-in model's name"),
    ]:
        assert main(["new-plugin", name, "--dir", tmp_path]) == 2
        assert message in capsys.readouterr().err
    assert existing.read_text() == "# mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_head.py"]  # no temporary file left
