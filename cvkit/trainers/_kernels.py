"""Exact shortcuts for small images: the same function as the model's own layers, less work.

At MedMNIST's 28 pixels a torchvision ResNet reaches ``layer4`` with 1x1 feature maps. A 3x3
convolution with padding 1 on a 1x1 map multiplies 8 of its 9 taps with padding zeros, yet the
convolution kernel still builds (and back-propagates through) all 9 tap columns. When a
convolution's output map is 1x1, only the taps that overlap the input contribute, so the output
is one matrix product of the input with those taps; the other taps get exact zero gradients, as
they do in the full convolution.

Zero gradients still cost: every step wrote a zero gradient the size of the whole weight (three
9.4 MB tensors in ResNet-18's layer4) and Adam updated all of it, though eight ninths of those
weights never move (Adam's step for a gradient that was always zero is zero). When every input
a convolution sees is a single pixel, ``single_tap_parameters`` hands the optimizer that one
tap instead, as a view into the weight (which is laid out tap by tap for it), so the state dict
and every checkpoint stay the full weight. About a fifth less time per ResNet-18 step at 28 px.

PyTorch's CPU max pooling of a contiguous (NCHW) batch is a scalar loop; the channels-last kernel
is vectorised and picks the same maxima and the same indices (ties included), about 19 times
faster on a ResNet stem's 14x14 maps (3.0 ms against 0.16 ms at batch 32, one thread). The pool
runs channels-last and hands back an NCHW batch, so the layers after it see what they saw before.
``benchmarks/train_step.py`` measures what both save.
"""

from __future__ import annotations

import collections
import functools

import torch
import torch.nn.functional as F
from torch import nn


class _OneByOneOutputConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose 1x1-output case is computed as a matrix product."""

    single_tap = None  # the trainable tap, once ``single_tap_parameters`` split it off

    def _conv_forward(self, x, weight, bias):
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        h, w = x.shape[-2:]
        if self.single_tap is not None:
            if (h, w) != (1, 1):
                raise RuntimeError(
                    f"a {kh}x{kw} convolution that saw 1x1 maps before training, so that cvkit "
                    f"trains only its centre tap, was given {h}x{w} maps; {KEEP_WHOLE}"
                )
            return F.linear(x.flatten(1), self.single_tap, bias)[:, :, None, None]
        # Output (0, 0) sees input rows 0 .. rows-1 through taps ph .. ph+rows-1; the rest is padding.
        rows, cols = min(h, kh - ph), min(w, kw - pw)
        if not self._one_output(h, w) or rows <= 0 or cols <= 0:
            return super()._conv_forward(x, weight, bias)
        if (rows, cols) == (kh, kw):  # every tap is used: the weight is the matrix
            taps = weight.flatten(1)
        else:  # one gather of the taps (its gradient is one scatter into zeros), not two strided slices
            index = _tap_index(kh, kw, ph, pw, rows, cols, weight.device)
            taps = weight.flatten(2).index_select(2, index).flatten(1)
        return F.linear(x[:, :, :rows, :cols].flatten(1), taps, bias)[:, :, None, None]

    def _one_output(self, h, w) -> bool:
        """Whether an h x w input gives a 1x1 output that the shortcut computes."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (
            0 <= h + 2 * ph - kh < sh
            and 0 <= w + 2 * pw - kw < sw
            and not isinstance(self.padding, str)
            and self.groups == 1
            and self.dilation == (1, 1)
            and self.padding_mode == "zeros"
        )

    def split_single_tap(self) -> torch.Tensor:
        """Lay the weight out tap by tap and return the tap a 1x1 input meets: a contiguous
        leaf tensor in the weight's memory, so training it trains the weight. It is not a
        registered parameter, so the state dict holds the weight alone, as before."""
        (ph, pw) = self.padding
        by_tap = self.weight.detach().permute(2, 3, 0, 1).contiguous()
        self.weight.data = by_tap.permute(2, 3, 0, 1)  # the same values, strided tap by tap
        self.single_tap = by_tap[ph, pw].requires_grad_()
        # Nothing trains the whole weight now: a gradient reaching it means the model uses it elsewhere.
        self.weight.register_hook(_used_elsewhere)
        return self.single_tap


KEEP_WHOLE = (
    "to train such a convolution's whole weight, make it an nn.Conv2d subclass "
    "(class Conv(nn.Conv2d): pass), which cvkit leaves as it is"
)


def _used_elsewhere(grad):
    raise RuntimeError(
        "a convolution weight that cvkit trains through its centre tap only (its convolution "
        f"sees 1x1 maps) is also used outside that convolution; {KEEP_WHOLE}"
    )


@functools.cache
def _tap_index(kh, kw, ph, pw, rows, cols, device):
    return torch.tensor(
        [u * kw + v for u in range(ph, ph + rows) for v in range(pw, pw + cols)], device=device
    )


class _ChannelsLastMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that pools a contiguous CPU batch with the channels-last kernel."""

    def forward(self, x):
        if x.dim() != 4 or x.device.type != "cpu" or not x.is_contiguous() or self.return_indices:
            return super().forward(x)
        return super().forward(_AsChannelsLast.apply(x)).contiguous()


class _AsChannelsLast(torch.autograd.Function):
    """``x.contiguous(memory_format=torch.channels_last)`` whose gradient comes back NCHW, so the
    layer before the pool back-propagates through one layout (mixed layouts take a scalar loop)."""

    @staticmethod
    def forward(ctx, x):
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


_SHORTCUTS = {nn.Conv2d: _OneByOneOutputConv2d, nn.MaxPool2d: _ChannelsLastMaxPool2d}


def single_tap_parameters(model: nn.Module, probe) -> list[torch.Tensor]:
    """The tensors to train: ``model``'s trainable parameters, except that a shortcut
    convolution with a kernel larger than 1x1 whose inputs were all 1x1 maps while ``probe()``
    ran contributes its one used tap (see ``_OneByOneOutputConv2d.split_single_tap``).

    ``probe`` runs the model once on inputs like the training batches. It runs in eval mode
    without gradients, and the random number generators are restored afterwards, so it leaves
    the model and the numbers training draws as they were."""
    sizes = {}

    def record(module, args):
        sizes.setdefault(module, set()).add(tuple(args[0].shape[-2:]))

    shortcuts = [
        m for m in model.modules() if isinstance(m, _OneByOneOutputConv2d) and m.weight.requires_grad
    ]
    hooks = [m.register_forward_pre_hook(record) for m in shortcuts]
    modes = {m: m.training for m in model.modules()}
    devices = [p.device for p in model.parameters() if p.device.type == "cuda"][:1]
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            probe()
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training
    owners = collections.Counter(id(p) for m in model.modules() for p in m.parameters(recurse=False))
    split = {
        m
        for m in shortcuts
        if sizes.get(m) == {(1, 1)}
        and m.kernel_size != (1, 1)
        and m._one_output(1, 1)
        and owners[id(m.weight)] == 1
    }  # a weight shared with another module stays whole
    taps = {id(m.weight): m.split_single_tap() for m in split}
    return [taps.get(id(p), p) for p in model.parameters() if p.requires_grad]


def use_exact_shortcuts(model: nn.Module) -> nn.Module:
    """Give every plain ``nn.Conv2d`` of ``model`` the 1x1-output shortcut and every plain
    ``nn.MaxPool2d`` the channels-last pool, in place.

    Parameters, buffers and the state dict are untouched; subclasses (which may override
    ``forward``) are left alone."""
    for module in model.modules():
        shortcut = _SHORTCUTS.get(type(module))
        if shortcut is not None:
            module.__class__ = shortcut
    return model
