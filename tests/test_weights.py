"""`--weights DEFAULT` the way torchvision does it, against a local HTTP server on 127.0.0.1: a
download into the torch hub cache with torchvision's progress bar and hash check, a cache hit that
sends no request, --offline, and one line (with nothing left behind) when the download fails."""

import hashlib
import http.server
import threading
from types import SimpleNamespace

import pytest
import torch
import torchvision

from cvkit.cli import main
from cvkit.trainers import classifier

# What --weights DEFAULT names for resnet18.
RESNET18 = torchvision.models.get_model_weights("resnet18")["DEFAULT"]
TINY_RUN = ["--image-size", "16", "--folds", "2", "--repeats", "1", "--epochs", "1", "--jobs", "1"]


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A copy of torchvision's model folder served on a free port of 127.0.0.1 (cvkit's documented
    CVKIT_WEIGHTS_MIRROR points there) and a torch hub cache in a temporary folder (TORCH_HOME).

    It serves a randomly initialised ResNet-18's state dict. torchvision's file names carry the
    first digits of the file's SHA-256, which torch.hub checks after downloading; this checkpoint
    is not torchvision's, so it gets a name with its own digits and torchvision's resnet18 entry
    is pointed at that name: the download, the hash check and the cache work on it unchanged."""
    folder = tmp_path / "models"
    folder.mkdir()
    state = torchvision.models.resnet18(weights=None).state_dict()
    checkpoint = folder / "checkpoint.pth"
    torch.save(state, checkpoint)
    name = f"resnet18-{hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:8]}.pth"
    checkpoint.rename(folder / name)
    monkeypatch.setattr(RESNET18.value, "url", f"https://download.pytorch.org/models/{name}")

    handler = lambda *a, **k: _CountingHandler(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("CVKIT_WEIGHTS_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("CVKIT_OFFLINE", raising=False)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    try:
        yield SimpleNamespace(
            server=server, requests=server.requests, state=state, name=name, folder=folder, cache=cache
        )
    finally:
        server.shutdown()
        server.server_close()


def _evaluate(tmp_path, run, *options):
    return main(
        ["evaluate", "--weights", "DEFAULT", *TINY_RUN, "--report", "none", "--out", tmp_path / run, *options]
    )


def _error_line(capsys) -> str:
    """The command's error: one line, its last."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line for line in lines if line.startswith("cvkit: error:")] == lines[-1:]
    return lines[-1]


def test_download_then_cache_hit_then_offline(mirror, tmp_path, capsys):
    assert _evaluate(tmp_path, "first") == 0
    cached = mirror.cache / mirror.name
    assert mirror.requests == [f"/{mirror.name}"] and cached.is_file()
    err = capsys.readouterr().err
    assert f'Downloading: "http://127.0.0.1:{mirror.server.server_address[1]}/{mirror.name}"' in err
    assert "100" in err and "%" in err  # torch.hub's progress bar
    model = classifier("resnet18", in_channels=3, n_classes=2, weights="DEFAULT")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in mirror.state.items() if not k.startswith("fc."))

    assert _evaluate(tmp_path, "second") == 0  # new jobs, same weights: from the cache
    assert len(mirror.requests) == 1

    cached.unlink()
    assert _evaluate(tmp_path, "offline", "--offline") == 2
    err = _error_line(capsys)
    assert "forbids downloading" in err and str(cached) in err
    assert len(mirror.requests) == 1 and not (tmp_path / "offline").exists()


def test_no_network_is_one_line_and_leaves_no_partial_file(mirror, tmp_path, capsys):
    mirror.server.shutdown()
    mirror.server.server_close()
    assert _evaluate(tmp_path, "down") == 2
    err = _error_line(capsys)
    assert err.startswith("cvkit: error: could not download pretrained weights resnet18 DEFAULT from http")
    assert "nothing was kept" in err and "CVKIT_WEIGHTS_MIRROR" in err
    assert list(mirror.cache.iterdir()) == []


def test_a_file_that_fails_the_hash_check_is_not_kept(mirror, tmp_path, capsys):
    (mirror.folder / mirror.name).write_bytes(b"not the checkpoint the name promises")
    assert _evaluate(tmp_path, "corrupt") == 2
    err = _error_line(capsys)
    assert "invalid hash value" in err and "nothing was kept" in err
    assert list(mirror.cache.iterdir()) == []
