"""The speed work changes how jobs are computed, never what: each shortcut is checked against the
plain computation, and every executor must give the same predictions."""

import itertools
import json
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import cvkit
from cvkit.errors import PluginError
from cvkit.runner import choose_concurrency
from cvkit.trainers import FrozenFeatures, TrainConfig, TrainContext, load_plugin
from cvkit.trainers._frozen import FeatureCache
from cvkit.trainers._kernels import single_tap_parameters, use_exact_shortcuts
from cvkit.trainers._torch import TorchTrainer

FAST = dict(folds=3, repeats=1, epochs=2)


def _probs(results):
    return (
        results.predictions.sort_values(["model", "repeat", "fold", "sample_id"])
        .filter(like="prob_")
        .to_numpy()
    )


@pytest.mark.parametrize(
    "kernel, stride, padding, size",
    [
        case
        for case in itertools.product([1, 2, 3, 5, 7], [1, 2, 3], [0, 1, 2, 3], [1, 2, 3, 4])
        if case[2] <= case[0] // 2 and case[3] + 2 * case[2] >= case[0]
    ],
)
def test_exact_convolution_shortcut_matches_the_convolution(kernel, stride, padding, size):
    plain = nn.Conv2d(3, 5, kernel, stride=stride, padding=padding)
    fast = nn.Conv2d(3, 5, kernel, stride=stride, padding=padding)
    fast.load_state_dict(plain.state_dict())
    use_exact_shortcuts(fast)
    x = torch.randn(4, 3, size, size + 1, requires_grad=True)
    x_fast = x.detach().clone().requires_grad_()
    y, y_fast = plain(x), fast(x_fast)
    grad = torch.randn_like(y)
    y.backward(grad)
    y_fast.backward(grad)
    assert y.shape == y_fast.shape
    for a, b in [
        (y, y_fast),
        (x.grad, x_fast.grad),
        (plain.weight.grad, fast.weight.grad),
        (plain.bias.grad, fast.bias.grad),
    ]:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("values", ["ties", "relu"])
def test_channels_last_pool_picks_the_same_maxima_and_gradients(values):
    torch.manual_seed(0)
    x = (
        torch.randint(0, 3, (8, 16, 14, 14)).float()
        if values == "ties"
        else torch.relu(torch.randn(8, 16, 14, 14))
    )
    plain, fast = nn.MaxPool2d(3, 2, 1), use_exact_shortcuts(nn.Sequential(nn.MaxPool2d(3, 2, 1)))[0]
    assert type(fast) is nn.MaxPool2d and "forward" in vars(fast)  # the shortcut, not a new class
    x_plain, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_plain, y_fast = plain(x_plain), fast(x_fast)
    grad = torch.randn_like(y_plain)
    y_plain.backward(grad)
    y_fast.backward(grad)
    assert torch.equal(y_plain, y_fast) and y_fast.is_contiguous()
    assert torch.equal(x_plain.grad, x_fast.grad) and x_fast.grad.is_contiguous()


def test_exact_shortcuts_leave_the_state_dict_and_subclasses_alone():
    model = cvkit.trainers.resnet("resnet18", in_channels=1, n_classes=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    use_exact_shortcuts(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    class Custom(nn.Conv2d):
        pass

    custom = use_exact_shortcuts(nn.Sequential(Custom(1, 1, 3)))[0]
    assert type(custom) is Custom


def test_exact_shortcuts_keep_every_module_class_and_travel_with_copies():
    """Issue 17, item 5: no ``__class__`` swap inside a user's model; the shortcuts are instance
    attributes that a deep copy and a pickle of the model carry, bound to the copy."""
    import copy
    import pickle

    model = cvkit.trainers.resnet("resnet18", in_channels=1, n_classes=2)
    classes = [type(m) for m in model.modules()]
    text = repr(model)
    use_exact_shortcuts(model)
    assert [type(m) for m in model.modules()] == classes and repr(model) == text  # main: swapped
    assert sum("_conv_forward" in vars(m) for m in model.modules()) == sum(
        type(m) is nn.Conv2d for m in model.modules()
    )
    x = torch.randn(4, 1, 28, 28)
    model.eval()
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        conv = other.conv1
        assert vars(conv)["_conv_forward"].conv is conv  # bound to the copy, not to the original
        assert torch.equal(other(x), model(x))


def test_a_trained_resnet_at_28_pixels_is_the_same_function_with_the_shortcut():
    """A whole ResNet-18 at MedMNIST's size, whose layer4 runs on 1x1 maps: same outputs, same
    gradients for every parameter."""
    torch.manual_seed(0)
    plain = cvkit.trainers.resnet("resnet18", in_channels=1, n_classes=2)
    fast = cvkit.trainers.resnet("resnet18", in_channels=1, n_classes=2)
    fast.load_state_dict(plain.state_dict())
    use_exact_shortcuts(fast)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 2, (8,))
    for model in (plain, fast):
        nn.functional.cross_entropy(model(x), y).backward()
    torch.testing.assert_close(plain(x), fast(x), rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_training_single_taps_is_the_same_training(weight_decay):
    """Adam on the one tap a 1x1 map meets, instead of on the whole weight, gives bit for bit the
    same model: the other taps' gradients are always zero, so Adam never moves them (with weight
    decay they shrink, but a 1x1 map never reaches them)."""
    torch.manual_seed(0)
    models = [
        use_exact_shortcuts(cvkit.trainers.resnet("resnet18", in_channels=1, n_classes=2)) for _ in range(2)
    ]
    models[1].load_state_dict(models[0].state_dict())
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 2, (16,))
    whole = list(models[0].parameters())
    split = single_tap_parameters(models[1], lambda: models[1](x[:2]))
    assert (
        sum(p.numel() for p in split) == sum(p.numel() for p in whole) - 3 * 512 * 512 * 8
    )  # layer4's 1x1 maps
    checkpoints = []
    for model, params in zip(models, (whole, split)):
        optimizer = torch.optim.Adam(params, lr=1e-2, weight_decay=weight_decay, fused=True)
        for _ in range(3):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        checkpoints.append({k: v.clone() for k, v in model.state_dict().items()})
        model.eval()
    assert torch.equal(models[0](x), models[1](x))
    assert checkpoints[0].keys() == checkpoints[1].keys()
    moved = [k for k in checkpoints[0] if not torch.equal(checkpoints[0][k], checkpoints[1][k])]
    assert moved == (
        []
        if weight_decay == 0
        else ["layer4.0.conv2.weight", "layer4.1.conv1.weight", "layer4.1.conv2.weight"]
    )
    # A checkpoint loaded into the model reaches the trained taps: the taps live in the weight.
    models[1].load_state_dict(checkpoints[0])
    assert torch.equal(models[0](x), models[1](x))


def test_single_tap_probe_leaves_the_random_numbers_alone_and_refuses_other_map_sizes():
    model = use_exact_shortcuts(nn.Sequential(nn.Conv2d(4, 3, 3, padding=1), nn.Conv2d(3, 2, 1)))
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    params = single_tap_parameters(model, lambda: (torch.rand(5), model(torch.randn(2, 4, 1, 1))))
    assert torch.equal(torch.rand(3), expected)
    assert [tuple(p.shape) for p in params] == [(3, 4), (3,), (2, 3, 1, 1), (2,)]  # 1x1 kernels need no split
    with pytest.raises(RuntimeError, match="given 2x2 maps.*nn.Conv2d subclass"):
        model(torch.randn(2, 4, 2, 2))


def test_a_weight_used_outside_its_single_tap_convolution_is_refused_or_kept_whole():
    class ReadsWeight(nn.Module):  # uses the convolution's weight beyond the convolution
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(x).flatten(1) + self.conv.weight.sum()

    model = use_exact_shortcuts(ReadsWeight())
    params = single_tap_parameters(model, lambda: model(torch.randn(2, 4, 1, 1)))
    assert params[0].shape == (3, 4)
    with pytest.raises(RuntimeError, match="used outside that convolution"):
        model(torch.randn(2, 4, 1, 1)).sum().backward()

    tied = use_exact_shortcuts(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)))
    tied[1].weight = tied[0].weight
    params = single_tap_parameters(tied, lambda: tied(torch.randn(2, 4, 1, 1)))
    assert [tuple(p.shape) for p in params] == [(4, 4, 3, 3), (4,), (4,)]  # shared: not split


def test_fused_adam_follows_the_plain_adam_update():
    torch.manual_seed(0)
    weights = [torch.randn(50, 20, requires_grad=True) for _ in range(2)]
    copies = [w.detach().clone().requires_grad_() for w in weights]
    plain = torch.optim.Adam(weights, lr=1e-2, weight_decay=1e-3)
    fused = torch.optim.Adam(copies, lr=1e-2, weight_decay=1e-3, fused=True)
    for step in range(20):
        for group, optimizer in ((weights, plain), (copies, fused)):
            optimizer.zero_grad()
            sum(((w - step) ** 2).sum() for w in group).backward()
            optimizer.step()
    for a, b in zip(weights, copies):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_worker_processes_give_the_same_predictions_as_one_process(tiny, tmp_path):
    one = cvkit.evaluate("plugins/fc_attention.py", data=tiny, out=tmp_path / "one", jobs=1, **FAST)
    two = cvkit.evaluate("plugins/fc_attention.py", data=tiny, out=tmp_path / "two", jobs=2, **FAST)
    assert (one.concurrency.workers, two.concurrency.workers) == (1, 2)
    assert np.array_equal(_probs(one), _probs(two))
    threads = {json.loads(job["environment"])["threads"] for job in two.jobs}
    assert threads == {1}


def test_concurrency_follows_cores_memory_and_the_override(monkeypatch):
    from cvkit.runner import _executor

    monkeypatch.setattr(_executor, "available_cores", lambda: 8)
    monkeypatch.setattr(_executor, "available_memory", lambda: 64 * 2**30)
    small = dict(
        device="cpu", n_parameters=11_000_000, sample_bytes=4 * 28 * 28, n_samples=780, batch_size=32
    )
    assert choose_concurrency(**small).workers == 8
    assert choose_concurrency(**small, threads_per_job=2).workers == 4
    assert choose_concurrency(**small, jobs=3).workers == 3
    monkeypatch.setattr(_executor, "available_memory", lambda: 2 * 2**30)
    limited = choose_concurrency(**small)
    assert 1 <= limited.workers < 8 and "memory" in limited.reason
    big = dict(small, sample_bytes=4 * 3 * 224 * 224, n_samples=5000)
    assert choose_concurrency(**big).workers == 1


def test_plugins_travel_to_worker_processes_by_reloading_and_refuse_a_changed_file(write_plugin):
    path = write_plugin("head", open("plugins/fc_attention.py").read())
    plugin = load_plugin(str(path)).nested(3, 0.1)
    again = pickle.loads(pickle.dumps(plugin))
    assert (again.digest, again.hyperparams, again.nested_args) == (
        plugin.digest,
        plugin.hyperparams,
        (3, 0.1),
    )
    path.write_text(path.read_text() + "\n# edited while running\n")
    # Unpickling still works (an error there would kill the worker process): its jobs fail instead.
    stale = pickle.loads(pickle.dumps(plugin))
    with pytest.raises(PluginError, match="head.py changed during the run"):
        stale.make_trainer(None)


class _Probe(nn.Module):
    def __init__(self, frozen):
        super().__init__()
        self.frozen = frozen

    def forward(self, x):
        return self.frozen(x)


def _frozen_model(context):
    torch.manual_seed(123)  # the same backbone for every job, like pretrained weights
    features = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    torch.manual_seed(context.seed)
    return FrozenFeatures(features, nn.Linear(8, context.n_classes))


def _context(data, tmp_path, **config):
    return TrainContext(
        config=TrainConfig(**{"epochs": 3, **config}),
        n_classes=data.n_classes,
        in_channels=1,
        image_size=(16, 16),
        class_names=data.class_names,
        positive=data.positive,
        extra_names=(),
        seed=5,
        device="cpu",
        cache_dir=str(tmp_path / "cache"),
    )


def test_frozen_backbone_features_train_the_same_head_as_the_full_model(tiny, tmp_path):
    train, val, test = tiny.subset(range(40)), tiny.subset(range(40, 50)), tiny.subset(range(50, 60))
    context = _context(tiny, tmp_path)
    cached = TorchTrainer(_frozen_model).fit(train, val, context)
    # The same model hidden in a wrapper: the trainer cannot see the frozen part and runs it every step.
    plain = TorchTrainer(lambda c: _Probe(_frozen_model(c))).fit(train, val, context)
    np.testing.assert_allclose(cached.predict_proba(test), plain.predict_proba(test), rtol=1e-5, atol=1e-6)
    assert [r["val_loss"] for r in cached.history_] == pytest.approx([r["val_loss"] for r in plain.history_])


def test_frozen_features_are_computed_once_per_image_and_reused_from_disk(tiny, tmp_path, monkeypatch):
    from cvkit.trainers import _frozen

    computed = []
    real = _frozen._extract
    monkeypatch.setattr(
        _frozen, "_extract", lambda b, images, *a: computed.append(len(images)) or real(b, images, *a)
    )
    context = _context(tiny, tmp_path)
    folds = [(range(0, 40), range(40, 50), range(50, 60)), (range(20, 60), range(10, 20), range(0, 10))]
    for train, val, test in folds:
        trainer = TorchTrainer(_frozen_model).fit(tiny.subset(train), tiny.subset(val), context)
        trainer.predict_proba(tiny.subset(test))
    # 60 distinct images and their 60 mirror images, each computed once over both jobs
    assert sum(computed) == 120
    computed.clear()
    fresh = FeatureCache(tmp_path / "cache")  # another process: reads the shards on disk
    backbone = use_exact_shortcuts(_frozen_model(context).backbone)  # as the trainer runs it
    features = fresh.features(backbone, tiny.images, "cpu", lambda x: x.float().div_(127.5).sub_(1.0))
    assert computed == [] and features.shape == (60, 8)
    with torch.no_grad():
        direct = backbone(torch.as_tensor(tiny.images).float().div_(127.5).sub_(1.0))
    torch.testing.assert_close(features, direct, rtol=1e-5, atol=1e-6)


def test_frozen_probe_plugin_runs_end_to_end(tiny, tmp_path):
    results = cvkit.evaluate("plugins/frozen_probe.py", data=tiny, out=tmp_path / "run", **FAST)
    assert set(results.metrics["model"]) == {"resnet18", "frozen_probe"}
    assert any((tmp_path / ".cache" / "features").iterdir())


def test_checkpoint_predictions_reused_from_the_epochs_equal_fresh_ones(tiny):
    train, val, test = tiny.subset(range(40)), tiny.subset(range(40, 50)), tiny.subset(range(50, 60))
    context = TrainContext(
        config=TrainConfig(epochs=4),
        n_classes=2,
        in_channels=1,
        image_size=(16, 16),
        class_names=tiny.class_names,
        positive=tiny.positive,
        extra_names=(),
        seed=3,
        device="cpu",
        on_epoch=lambda record, predict: predict(test),
    )
    trainer = load_plugin("resnet18").make_trainer(context).fit(train, val, context)
    assert len(trainer.epoch_predictions_) == 4
    reused = trainer.predict_proba_by_rule(test)
    trainer.epoch_predictions_ = []  # forget them: every checkpoint is loaded and predicts again
    fresh = trainer.predict_proba_by_rule(test)
    assert reused.keys() == fresh.keys()
    assert all(np.array_equal(reused[rule], fresh[rule]) for rule in reused)


class _DropoutNet(nn.Module):
    """Dropout draws from the global generator: resuming must restore it."""

    def __init__(self, n_classes):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.5),
        )
        self.head = nn.Linear(8, n_classes)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.mark.parametrize("model", ["resnet18", "dropout", "frozen"])
def test_a_job_paused_and_resumed_in_a_fresh_trainer_trains_as_in_one_go(tiny, tmp_path, model):
    import io

    build = {
        "resnet18": load_plugin("resnet18").make_trainer(None).build_model,
        "dropout": lambda context: _DropoutNet(context.n_classes),
        "frozen": _frozen_model,
    }[model]
    train, val, test = tiny.subset(range(40)), tiny.subset(range(40, 50)), tiny.subset(range(50, 60))
    context = _context(tiny, tmp_path, epochs=4, weight_decay=1e-3)
    whole = TorchTrainer(build).fit(train, val, context)
    for stop_after in (1, 3):
        first = TorchTrainer(build).fit(train, val, context, stop_after=stop_after)
        assert not hasattr(first, "model_") and first.paused_["epoch"] == stop_after
        state = io.BytesIO()
        torch.save(first.paused_, state)  # as it travels to another process
        torch.rand(1000)  # that process's generators are elsewhere
        rest = TorchTrainer(build).fit(
            train, val, context, resume=torch.load(io.BytesIO(state.getvalue()), weights_only=True)
        )
        assert rest.history_ == whole.history_ and rest.checkpoints_.keys() == whole.checkpoints_.keys()
        assert rest.selected_epoch_ == whole.selected_epoch_
        expected, got = whole.predict_proba_by_rule(test), rest.predict_proba_by_rule(test)
        assert all(np.array_equal(expected[rule], got[rule]) for rule in expected)
        assert np.array_equal(whole.predict_proba(train), rest.predict_proba(train))


def test_only_torch_trained_plugins_pause_between_epochs(write_plugin):
    assert load_plugin("resnet18").pausable and load_plugin("plugins/fc_attention.py").pausable
    assert not load_plugin("logreg").pausable
    assert not load_plugin("plugins/fc_attention.py").nested(3, 0.1).pausable
    custom = write_plugin(
        "custom", "from cvkit.trainers import SklearnTrainer\ndef make_trainer(context):\n    return None\n"
    )
    assert not load_plugin(str(custom)).pausable


def _jobs(n, epochs=5):
    from cvkit.runner import Job

    return [Job("m", None, 0, i, 0, i, f"job{i}", epochs) for i in range(n)]


@pytest.mark.parametrize(
    "workers, n, epochs, before, after",
    [
        (2, 15, 5, 40, 38),  # the idle last round of 15 jobs on 2 workers, mostly filled
        (2, 3, 5, 10, 8),
        (4, 15, 5, 20, 19),
        (2, 30, 5, 75, 75),  # full rounds: nothing to fill
        (2, 1, 5, 5, 5),  # one job cannot run faster in parts
        (2, 15, 1, 8, 8),  # one epoch cannot be split
        (2, 15, 0, 8, 8),  # not pausable (a scikit-learn model, a nested search)
    ],
)
def test_jobs_are_split_only_where_that_fills_idle_workers(workers, n, epochs, before, after):
    from cvkit.runner._executor import _span, plan_parts

    jobs = _jobs(n, epochs)
    parts = plan_parts(jobs, workers)
    assert _span(jobs, {}, workers) == before and _span(jobs, parts, workers) == after
    assert bool(parts) == (after < before)
    assert all(0 < first < epochs for first in parts.values())
