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


class _OneByOneOutputShortcut:
    """What ``use_exact_shortcuts`` gives one plain ``nn.Conv2d``: its ``_conv_forward`` (the hook
    ``nn.Conv2d.forward`` calls), with the 1x1-output case computed as a matrix product.

    An instance attribute of the convolution, not a new class: the module stays an ``nn.Conv2d``
    to its owner (type, repr, isinstance), with the same parameters and state dict; a deep copy
    or a pickle of the model carries the shortcut with it."""

    def __init__(self, conv: nn.Conv2d):
        self.conv = conv
        self.single_tap = None  # the trainable tap, once ``single_tap_parameters`` split it off

    def __call__(self, x, weight, bias):
        conv = self.conv
        (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
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
        if not self.one_output(h, w) or rows <= 0 or cols <= 0:
            return nn.Conv2d._conv_forward(conv, x, weight, bias)
        if (rows, cols) == (kh, kw):  # every tap is used: the weight is the matrix
            taps = weight.flatten(1)
        else:  # one gather of the taps (its gradient is one scatter into zeros), not two strided slices
            index = _tap_index(kh, kw, ph, pw, rows, cols, weight.device)
            taps = weight.flatten(2).index_select(2, index).flatten(1)
        return F.linear(x[:, :, :rows, :cols].flatten(1), taps, bias)[:, :, None, None]

    def one_output(self, h, w) -> bool:
        """Whether an h x w input gives a 1x1 output that the shortcut computes."""
        conv = self.conv
        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        return (
            0 <= h + 2 * ph - kh < sh
            and 0 <= w + 2 * pw - kw < sw
            and not isinstance(conv.padding, str)
            and conv.groups == 1
            and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros"
        )

    def split_single_tap(self) -> torch.Tensor:
        """Lay the weight out tap by tap and return the tap a 1x1 input meets: a contiguous
        leaf tensor in the weight's memory, so training it trains the weight. It is not a
        registered parameter, so the state dict holds the weight alone, as before."""
        weight = self.conv.weight
        (ph, pw) = self.conv.padding
        by_tap = weight.detach().permute(2, 3, 0, 1).contiguous()
        weight.data = by_tap.permute(2, 3, 0, 1)  # the same values, strided tap by tap
        self.single_tap = by_tap[ph, pw].requires_grad_()
        # Nothing trains the whole weight now: a gradient reaching it means the model uses it elsewhere.
        weight.register_hook(_used_elsewhere)
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


class _ChannelsLastPool:
    """What ``use_exact_shortcuts`` gives one plain ``nn.MaxPool2d``: a ``forward`` that pools a
    contiguous CPU batch with the channels-last kernel (an instance attribute, as above)."""

    def __init__(self, pool: nn.MaxPool2d):
        self.pool = pool

    def __call__(self, x):
        pool = self.pool
        if x.dim() != 4 or x.device.type != "cpu" or not x.is_contiguous() or pool.return_indices:
            return nn.MaxPool2d.forward(pool, x)
        return nn.MaxPool2d.forward(pool, _AsChannelsLast.apply(x)).contiguous()


class _AsChannelsLast(torch.autograd.Function):
    """``x.contiguous(memory_format=torch.channels_last)`` whose gradient comes back NCHW, so the
    layer before the pool back-propagates through one layout (mixed layouts take a scalar loop)."""

    @staticmethod
    def forward(ctx, x):
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


def shortcut_of(conv: nn.Module) -> _OneByOneOutputShortcut | None:
    """The 1x1-output shortcut ``use_exact_shortcuts`` gave ``conv``, if it gave it one."""
    shortcut = conv.__dict__.get("_conv_forward")
    return shortcut if isinstance(shortcut, _OneByOneOutputShortcut) else None


def single_tap_parameters(model: nn.Module, probe) -> list[torch.Tensor]:
    """The tensors to train: ``model``'s trainable parameters, except that a shortcut
    convolution with a kernel larger than 1x1 whose inputs were all 1x1 maps while ``probe()``
    ran contributes its one used tap (see ``_OneByOneOutputShortcut.split_single_tap``).

    ``probe`` runs the model once on inputs like the training batches. It runs in eval mode
    without gradients, and the random number generators are restored afterwards, so it leaves
    the model and the numbers training draws as they were."""
    sizes = {}

    def record(module, args):
        sizes.setdefault(module, set()).add(tuple(args[0].shape[-2:]))

    shortcuts = {m: shortcut_of(m) for m in model.modules() if shortcut_of(m) and m.weight.requires_grad}
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
        m: shortcut
        for m, shortcut in shortcuts.items()
        if sizes.get(m) == {(1, 1)}
        and m.kernel_size != (1, 1)
        and shortcut.one_output(1, 1)
        and owners[id(m.weight)] == 1
    }  # a weight shared with another module stays whole
    taps = {id(m.weight): shortcut.split_single_tap() for m, shortcut in split.items()}
    return [taps.get(id(p), p) for p in model.parameters() if p.requires_grad]


def use_exact_shortcuts(model: nn.Module) -> nn.Module:
    """Give every plain ``nn.Conv2d`` of ``model`` the 1x1-output shortcut and every plain
    ``nn.MaxPool2d`` the channels-last pool, in place, as instance attributes (``_conv_forward``,
    ``forward``) that shadow the class's methods: each module keeps its class.

    Parameters, buffers and the state dict are untouched; subclasses (which may override
    ``forward``) are left alone."""
    for module in model.modules():
        if type(module) is nn.Conv2d and shortcut_of(module) is None:
            module._conv_forward = _OneByOneOutputShortcut(module)
        elif type(module) is nn.MaxPool2d and "forward" not in module.__dict__:
            module.forward = _ChannelsLastPool(module)
    return model
