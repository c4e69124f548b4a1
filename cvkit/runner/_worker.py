"""What every process that trains jobs does first, whichever executor started it."""

from __future__ import annotations

import ctypes


def prepare_process(threads: int) -> None:
    """Fix this process's thread count (predictions depend on it) and keep freed tensor memory
    in the heap. By default glibc serves every block over a few MiB with a fresh mmap and hands
    it back when freed, so each training step page-faults its large gradients in again (a
    ResNet-18's 9 MiB layer4 weights): about a tenth of a small CPU step."""
    import torch

    torch.set_num_threads(threads)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD: blocks under 32 MiB come from the heap
    libc.mallopt(-1, 256 * 2**20)  # M_TRIM_THRESHOLD: keep up to 256 MiB of freed heap
