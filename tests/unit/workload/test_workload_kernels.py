"""The augmentation kernels equal the torch reference: CPU, CUDA simulator, real GPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from workload import kernels

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def batch(n: int, size: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=gen)


@pytest.mark.parametrize(("n", "size", "crop"), [(1, 8, 8), (7, 12, 9), (33, 40, 32)])
def test_cpu_kernel_equals_torch_reference(n: int, size: int, crop: int) -> None:
    images = batch(n, size, seed=n)
    offsets, flips = kernels.draw(images, (crop, crop), torch.Generator().manual_seed(1))
    scale, bias = kernels.affine(MEAN, STD)
    got = kernels.augment(images, offsets, flips, scale, bias, (crop, crop))
    want = kernels.augment_reference(images, offsets, flips, scale, bias, (crop, crop))
    assert got.shape == (n, 3, crop, crop)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_flip_and_crop_take_the_right_pixels() -> None:
    images = torch.arange(4 * 4, dtype=torch.uint8).reshape(1, 4, 4, 1).repeat(2, 1, 1, 1)
    offsets = torch.tensor([[1, 1], [1, 1]], dtype=torch.int32)
    flips = torch.tensor([0, 1], dtype=torch.uint8)
    scale, bias = torch.ones(1), torch.zeros(1)
    out = kernels.augment(images, offsets, flips, scale, bias, (2, 2))
    assert out[0, 0].tolist() == [[5.0, 6.0], [9.0, 10.0]]
    assert out[1, 0].tolist() == [[6.0, 5.0], [10.0, 9.0]]


def test_bad_inputs_are_named() -> None:
    scale, bias = kernels.affine(MEAN, STD)
    images = batch(2, 8, seed=0)
    with pytest.raises(ValueError, match="images must be uint8"):
        kernels.augment(images.float(), torch.zeros(2, 2), torch.zeros(2), scale, bias, (4, 4))
    with pytest.raises(ValueError, match=r"crop \(9, 9\) is larger than the images \(8, 8\)"):
        kernels.draw(images, (9, 9), torch.Generator())
    with pytest.raises(ValueError, match="std > 0"):
        kernels.affine(MEAN, (0.2, 0.0, 0.3))


SIMULATED = """
import numpy as np, torch
from numba import config
assert config.ENABLE_CUDASIM, "the CUDA simulator is not active"
from workload import kernels
gen = torch.Generator().manual_seed(0)
images = torch.randint(0, 256, (3, 11, 13, 3), dtype=torch.uint8, generator=gen)
offsets, flips = kernels.draw(images, (7, 9), gen)
flips[0], flips[1] = 0, 1
scale, bias = kernels.affine((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
out = np.zeros((3, 3, 7, 9), np.float32)
args = [t.numpy() for t in (images, offsets, flips, scale, bias)]
kernels.launch_cuda(*args, out)
want = kernels.augment_reference(images, offsets, flips, scale, bias, (7, 9))
torch.testing.assert_close(torch.from_numpy(out), want, rtol=1e-6, atol=1e-6)
print("simulated kernel equals reference")
"""


def test_cuda_kernel_under_simulator_equals_torch_reference() -> None:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SIMULATED], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "simulated kernel equals reference" in done.stdout


@pytest.mark.gpu
def test_cuda_kernel_on_gpu_equals_torch_reference() -> None:
    images = batch(64, 40, seed=5).cuda()
    offsets, flips = kernels.draw(images, (32, 32), torch.Generator().manual_seed(2))
    scale, bias = kernels.affine(MEAN, STD)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # the kernel must follow torch's current stream
        got = kernels.augment(images, offsets, flips, scale, bias, (32, 32))
        want = kernels.augment_reference(images, offsets, flips, scale, bias, (32, 32))
    torch.cuda.synchronize()
    assert got.is_cuda
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
