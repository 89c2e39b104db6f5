"""On-device batch augmentation with Numba: random crop, horizontal flip, normalisation.

Input: a uint8 batch `(N, H, W, C)` (as stored); output: float32 `(N, C, h, w)`,
`(pixel / 255 - mean[c]) / std[c]`, computed as `pixel * scale[c] + bias[c]`.
The random crop offsets and flips are drawn by the caller from a CPU
`torch.Generator` (cheap: 3 numbers per image, and checkpointable), so the CPU
path, the CUDA path and the torch reference see the same randomness.

The path is chosen by the tensor's device: CPU tensors go to an
`@njit(parallel=True)` kernel over numpy views (zero copy); CUDA tensors go to
a `numba.cuda` kernel through `__cuda_array_interface__` (zero copy), launched
on torch's current stream so it orders with the surrounding torch work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numba import cuda, njit, prange

CUDA_BLOCK = (16, 16, 1)


@njit(parallel=True, cache=True)
def _augment_cpu(images, offsets, flips, scale, bias, out):  # pragma: no cover - compiled
    n_images, channels, out_h, out_w = out.shape
    for n in prange(n_images):
        y0 = offsets[n, 0]
        x0 = offsets[n, 1]
        flip = flips[n] != 0
        for i in range(out_h):
            for j in range(out_w):
                src_x = x0 + (out_w - 1 - j if flip else j)
                for c in range(channels):
                    out[n, c, i, j] = np.float32(images[n, y0 + i, src_x, c]) * scale[c] + bias[c]


@cuda.jit
def _augment_cuda(images, offsets, flips, scale, bias, out):  # pragma: no cover - compiled
    j, i, n = cuda.grid(3)  # pyright: ignore[reportCallIssue]
    n_images, channels, out_h, out_w = out.shape
    if n >= n_images or i >= out_h or j >= out_w:
        return
    y0 = offsets[n, 0]
    x0 = offsets[n, 1]
    src_x = x0 + (out_w - 1 - j if flips[n] != 0 else j)
    for c in range(channels):
        out[n, c, i, j] = np.float32(images[n, y0 + i, src_x, c]) * scale[c] + bias[c]


def launch_cuda(
    images: Any, offsets: Any, flips: Any, scale: Any, bias: Any, out: Any, stream: Any = 0
) -> None:
    """Launch the CUDA kernel on CUDA-array-like arguments (numpy arrays under the simulator)."""
    n_images, _, out_h, out_w = out.shape
    grid = (
        (out_w + CUDA_BLOCK[0] - 1) // CUDA_BLOCK[0],
        (out_h + CUDA_BLOCK[1] - 1) // CUDA_BLOCK[1],
        n_images,
    )
    _augment_cuda[grid, CUDA_BLOCK, stream](  # pyright: ignore[reportIndexIssue]
        images, offsets, flips, scale, bias, out
    )


def affine(mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """`scale, bias` (float32) such that `pixel * scale + bias == (pixel/255 - mean) / std`."""
    if len(mean) != len(std) or any(s <= 0 for s in std):
        raise ValueError(f"mean {tuple(mean)} and std {tuple(std)}: one per channel, std > 0")
    std_t = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * std_t)).float()
    bias = (-torch.tensor(mean, dtype=torch.float64) / std_t).float()
    return scale, bias


def draw(
    images: torch.Tensor, crop: tuple[int, int], generator: torch.Generator, train: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop offsets `(N, 2)` int32, flips `(N,)` uint8, on CPU; centred and unflipped for eval."""
    n_images, height, width, _ = images.shape
    out_h, out_w = crop
    if out_h > height or out_w > width:
        raise ValueError(f"crop {crop} is larger than the images ({height}, {width})")
    if not train:
        offsets = torch.tensor([[(height - out_h) // 2, (width - out_w) // 2]], dtype=torch.int32)
        return offsets.expand(n_images, 2).contiguous(), torch.zeros(n_images, dtype=torch.uint8)
    ys = torch.randint(0, height - out_h + 1, (n_images,), generator=generator)
    xs = torch.randint(0, width - out_w + 1, (n_images,), generator=generator)
    flips = torch.randint(0, 2, (n_images,), generator=generator)
    return torch.stack([ys, xs], 1).to(torch.int32), flips.to(torch.uint8)


def augment(
    images: torch.Tensor,
    offsets: torch.Tensor,
    flips: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    crop: tuple[int, int],
) -> torch.Tensor:
    """The augmented float32 `(N, C, h, w)` batch, on `images`' device."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(
            f"images must be uint8 (N, H, W, C), got {images.dtype} {tuple(images.shape)}"
        )
    device = images.device
    n_images, _, _, channels = images.shape
    out = torch.empty((n_images, channels, *crop), dtype=torch.float32, device=device)
    args = [images.contiguous(), offsets.to(device, torch.int32).contiguous()]
    args += [flips.to(device, torch.uint8).contiguous()]
    args += [scale.to(device).contiguous(), bias.to(device).contiguous()]
    if device.type == "cuda":
        stream = cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
        views = [cuda.as_cuda_array(t) for t in [*args, out]]
        launch_cuda(*views, stream=stream)
    elif device.type == "cpu":
        _augment_cpu(*[t.numpy() for t in [*args, out]])
    else:
        raise ValueError(f"no augmentation kernel for device {device}")
    return out


def augment_reference(
    images: torch.Tensor,
    offsets: torch.Tensor,
    flips: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    crop: tuple[int, int],
) -> torch.Tensor:
    """The same operation in plain (vectorised) torch: the reference the kernels must equal."""
    out_h, out_w = crop
    n_images = images.shape[0]
    device = images.device
    offsets = offsets.to(device, torch.long)
    flips_b = flips.to(device).bool()
    rows = offsets[:, :1] + torch.arange(out_h, device=device)
    cols_fwd = torch.arange(out_w, device=device).expand(n_images, out_w)
    cols = offsets[:, 1:] + torch.where(flips_b[:, None], out_w - 1 - cols_fwd, cols_fwd)
    batch = torch.arange(n_images, device=device)[:, None, None]
    pixels = images[batch, rows[:, :, None], cols[:, None, :]]  # (N, h, w, C)
    out = pixels.float() * scale.to(device) + bias.to(device)
    return out.permute(0, 3, 1, 2).contiguous()
