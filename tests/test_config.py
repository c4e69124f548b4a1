"""The typed, frozen config objects of a run (issue 17, item 3): one set of defaults shared by
the command line and ``cvkit.evaluate``, library errors that name Python parameters and command
line errors that name flags, and keyword shortcuts that build the same objects."""

import dataclasses

import pytest

import cvkit
from cvkit import Data, Design, Execution, OptionError, TrainConfig
from cvkit.cli import build_parser, flag_names, main
from cvkit.runner import Concurrency, ExecutorSettings, RayExecutor

CONFIGS = (Data, Design, TrainConfig, Execution)
# Fields no flag sets: a splitter object, the backbone (--baseline names it), the weights' hash,
# load_data's other options.
NO_FLAG = {"cv", "backbone", "weights_digest", "data_options"}


def test_every_flag_of_evaluate_defaults_to_its_config_field():
    parser = build_parser()
    evaluate = parser.commands["evaluate"]
    flags = flag_names(parser, "evaluate")
    checked = 0
    for config in CONFIGS:
        for field in dataclasses.fields(config):
            if field.name in NO_FLAG:
                continue
            dest = "data" if field.name == "source" else field.name
            assert field.name in flags, f"{config.__name__}.{field.name} has no flag"
            assert evaluate.get_default(dest) == field.default, f"--{dest} and {config.__name__}.{field.name}"
            checked += 1
    assert checked >= 30
    assert evaluate.get_default("baseline") == TrainConfig.backbone


# (shortcut of evaluate, its value, the Python message, the flag and its argument)
BAD_OPTIONS = [
    ("batch_size", 1, "batch_size must be at least 2, got 1", "--batch-size", "1"),
    ("epochs", 0, "epochs must be at least 1, got 0", "--epochs", "0"),
    ("lr", float("nan"), "lr must be a finite number above 0, got nan", "--lr", "nan"),
    ("folds", 1, "folds must be at least 2, got 1", "--folds", "1"),
    ("val_fraction", 1.5, "val_fraction must lie strictly between 0 and 1, got 1.5", "--val-fraction", "1.5"),
    ("threads_per_job", 0, "threads_per_job must be at least 1, got 0", "--threads-per-job", "0"),
    (
        "gpus_per_job",
        -1.0,
        "gpus_per_job must be a finite number of at least 0, got -1.0",
        "--gpus-per-job",
        "-1",
    ),
    ("image_size", 2, "image_size must be at least 4, got 2", "--image-size", "2"),
    ("device", "tpu", "device 'tpu': use auto, cpu, cuda or cuda:N", "--device", "tpu"),
]


@pytest.mark.parametrize(
    "option, value, message, flag, argument", BAD_OPTIONS, ids=[b[0] for b in BAD_OPTIONS]
)
def test_the_library_names_the_parameter_and_the_command_line_its_flag(
    option, value, message, flag, argument, tmp_path, capsys, monkeypatch
):
    with pytest.raises(OptionError) as raised:
        cvkit.evaluate(**{option: value}, out=tmp_path / "run")
    assert str(raised.value) == message and raised.value.option == option
    assert not (tmp_path / "run").exists()

    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", flag, argument]) == 2
    expected = "cvkit: error: " + message.replace(option, flag, 1)
    assert capsys.readouterr().err.splitlines() == [expected]


def test_verify_names_its_own_flag(tmp_path, capsys):
    with pytest.raises(OptionError, match="^jobs must be at least 1, got 0$"):
        cvkit.verify(tmp_path, jobs=0)
    assert main(["verify", str(tmp_path), "--jobs", "0"]) == 2
    assert capsys.readouterr().err.splitlines() == ["cvkit: error: --jobs must be at least 1, got 0"]


def test_keyword_shortcuts_and_config_objects_make_the_same_jobs(tiny, tmp_path):
    by_keywords = cvkit.evaluate(
        baseline="logreg",
        data=tiny,
        folds=2,
        repeats=1,
        seeds=2,
        seed=3,
        epochs=2,
        batch_size=16,
        device="cpu",
        jobs=1,
        executor="inprocess",
        out=tmp_path / "keywords",
        progress=False,
    )
    by_objects = cvkit.evaluate(
        baseline="logreg",
        data=Data(tiny),
        design=Design(folds=2, repeats=1, seeds=2, seed=3),
        recipe=TrainConfig(epochs=2, batch_size=16, device="cpu"),
        execution=Execution(executor="inprocess", jobs=1),
        out=tmp_path / "objects",
        progress=False,
    )
    keys = [job["key"] for job in by_keywords.jobs]
    assert len(keys) == 4 and keys == [job["key"] for job in by_objects.jobs]
    assert by_objects.counts.reused == 4 and by_objects.counts.trained == 0  # the sibling's jobs
    # A shortcut replaces one field of an object passed with it; the other fields stay.
    other_seed = cvkit.evaluate(
        baseline="logreg",
        data=Data(tiny),
        design=Design(folds=2, repeats=1, seeds=2, seed=3),
        recipe=TrainConfig(epochs=2, batch_size=16, device="cpu"),
        execution=Execution(executor="inprocess", jobs=1),
        seed=4,
        out=tmp_path / "seed4",
        progress=False,
    )
    assert len(other_seed.jobs) == 4 and not set(keys) & {job["key"] for job in other_seed.jobs}


def test_an_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="unexpected keyword argument 'fold'"):
        cvkit.evaluate(fold=3)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_config_objects_are_frozen(config):
    made = config()
    name = dataclasses.fields(config)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, name, getattr(made, name))


def test_a_loading_option_with_a_loaded_dataset_is_refused(tiny):
    with pytest.raises(OptionError, match="^image_size applies when evaluate loads the data"):
        Data(tiny, image_size=8)


def test_the_baseline_sets_the_recipes_backbone():
    with pytest.raises(
        OptionError, match="^baseline 'resnet34' does not name the recipe's backbone 'densenet121'"
    ):
        cvkit.evaluate(baseline="resnet34", recipe=TrainConfig(backbone="densenet121"))


def test_the_ray_executor_describes_its_own_concurrency():
    execution = Execution(executor="ray", cpus_per_job=2, gpus_per_job=0.5, address="host:6379")
    ray = RayExecutor.from_settings(ExecutorSettings(Concurrency(4, 1, "4 at a time"), "cpu", execution))
    assert (ray.address, ray.cpus_per_job, ray.gpus_per_job) == ("host:6379", 2, 0.5)
    assert ray.concurrency == Concurrency(0, 1, "Ray tasks of 2 CPU, 0.5 GPU")
