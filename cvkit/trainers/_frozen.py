"""Frozen backbones: features computed once per (backbone weights, image) and cached.

A plugin whose ``build_model`` returns ``FrozenFeatures(backbone, head)`` trains only the head.
cvkit's trainer then runs the backbone once per image (and once per mirrored image when flips
augment the training data) instead of once per image and epoch, and keeps the features on disk
keyed by the backbone's weights and each image's bytes: every job and run that uses the same
weights (pretrained ones, say) computes them once. Mirroring an image and then extracting its
features is exactly what the uncached model does in training, so the head sees the same inputs.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import uuid
from pathlib import Path

import numpy as np
import torch
from torch import nn

# Every backbone pass has this batch size (the last chunk is padded): the same shapes for every
# image keep a feature independent of which other images were computed with it.
CHUNK = 64


class FrozenFeatures(nn.Module):
    """``head(backbone(x))`` (or ``head(backbone(x), extra)``) with the backbone frozen: no
    gradients, and always in eval mode, so its BatchNorm statistics stay as loaded."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        self.head = head
        self.head_takes_extra = len(inspect.signature(head.forward).parameters) >= 2

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, x, extra=None):
        with torch.no_grad():
            features = self.backbone(x)
        return self.head(features, extra) if self.head_takes_extra else self.head(features)


class FeatureCache:
    """Backbone features by (backbone weights, image bytes), in memory and, when ``directory``
    is given, on disk as shards written atomically (several worker processes may add to it)."""

    def __init__(self, directory: str | os.PathLike | None):
        self.directory = Path(directory) if directory else None
        self.memory: dict[str, dict[bytes, np.ndarray]] = {}

    def features(self, backbone: nn.Module, images: np.ndarray, device, prepare) -> torch.Tensor:
        """Features of ``images`` (uint8, NCHW) as one float32 tensor on ``device``;
        ``prepare(uint8 tensor)`` turns a chunk of images into the backbone's input."""
        identity = backbone_digest(backbone, device)
        known = self.memory.setdefault(identity, {})
        keys = [hashlib.sha1(image.tobytes()).digest() for image in images]
        if any(key not in known for key in keys):
            self._load(identity, known)
        missing = list(dict.fromkeys(key for key in keys if key not in known))
        if missing:
            where = {key: i for i, key in enumerate(keys)}
            fresh = _extract(backbone, images[[where[key] for key in missing]], device, prepare)
            known.update(zip(missing, fresh))
            self._save(identity, missing, fresh)
        return torch.from_numpy(np.stack([known[key] for key in keys])).to(device)

    def _load(self, identity, known):
        folder = self.directory and self.directory / identity
        if not folder or not folder.is_dir():
            return
        for shard in folder.glob("*.npz"):
            try:
                with np.load(shard) as saved:
                    known.update(zip((bytes(k) for k in saved["keys"]), saved["features"]))
            except (OSError, ValueError, KeyError):  # a shard cut short by a kill: ignore it
                continue

    def _save(self, identity, keys, features):
        if self.directory is None:
            return
        folder = self.directory / identity
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f".{uuid.uuid4().hex}.tmp.npz"
            np.savez(partial, keys=np.array(keys, dtype="S20"), features=np.asarray(features))
            os.replace(partial, folder / f"{uuid.uuid4().hex}.npz")
        except OSError:  # a read-only or full disk costs only the reuse, never the job
            pass


def backbone_digest(backbone: nn.Module, device) -> str:
    """Identity of a backbone's function: its code path (class names), weights and buffers with
    their dtypes, torch version, device type and the precision its features are computed in."""
    h = hashlib.sha256(f"{torch.__version__}|{torch.device(device).type}|{_precision(device)}".encode())
    for name, module in backbone.named_modules():
        h.update(f"{name}:{type(module).__qualname__};".encode())
    for name, tensor in backbone.state_dict().items():
        h.update(f"{name}:{tensor.dtype}".encode())  # the same bytes read as float16 or bfloat16 differ
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # as bytes: numpy has no bf16
        h.update(raw.numpy().tobytes())
    return h.hexdigest()[:32]


def _precision(device) -> str:
    """What decides the last bits of features computed now on ``device``: autocast (on when the
    caller trains in reduced precision), TF32 on a GPU, the intra-op thread count on a CPU."""
    kind = torch.device(device).type
    autocast = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
    if kind == "cuda":
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        return f"autocast={autocast}|tf32={tf32}|matmul={torch.get_float32_matmul_precision()}"
    return f"autocast={autocast}|threads={torch.get_num_threads()}"


@torch.no_grad()
def _extract(backbone, images, device, prepare) -> list[np.ndarray]:
    backbone.eval()
    out = []
    for start in range(0, len(images), CHUNK):
        chunk = torch.as_tensor(images[start : start + CHUNK])
        n = len(chunk)
        if n < CHUNK:
            chunk = torch.cat([chunk, chunk.new_zeros((CHUNK - n, *chunk.shape[1:]))])
        features = backbone(prepare(chunk.to(device))).float().flatten(1)[:n]
        out.extend(features.cpu().numpy())
    return out
