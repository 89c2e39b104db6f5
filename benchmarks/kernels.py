"""Numba CPU augmentation vs the torch CPU equivalent on the same batch (goal: >= 2x)."""

from __future__ import annotations

import torch
from common import median_seconds

from workload import kernels


def main() -> None:
    torch.manual_seed(0)
    crop = (32, 32)
    scale, bias = kernels.affine((0.3, 0.3, 0.3), (0.3, 0.3, 0.3))
    print(f"torch threads {torch.get_num_threads()}")
    for n in (64, 256, 1024):
        images = torch.randint(0, 256, (n, 40, 40, 3), dtype=torch.uint8)
        offsets, flips = kernels.draw(images, crop, torch.Generator().manual_seed(1))
        args = (images, offsets, flips, scale, bias, crop)
        kernels.augment(*args)  # compile (cached on disk after the first run)
        torch.testing.assert_close(kernels.augment(*args), kernels.augment_reference(*args))
        repeats = max(5, 4096 // n)
        numba_s = median_seconds(lambda args=args: kernels.augment(*args), repeats)
        torch_s = median_seconds(lambda args=args: kernels.augment_reference(*args), repeats)
        print(
            f"batch {n:5d}x40x40x3 -> 32x32: numba {numba_s * 1e3:7.2f} ms, "
            f"torch {torch_s * 1e3:7.2f} ms, speed-up x{torch_s / numba_s:.2f}"
        )


if __name__ == "__main__":
    main()
