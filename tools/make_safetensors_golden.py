#!/usr/bin/env python3
"""Writes tests/data/safetensors/torch_written.safetensors with PyTorch's
safetensors package, for the io suite's "files others write load here"
check. Made with Debian's python3-torch (1.13) and safetensors 0.8.0:

    /usr/bin/python3 tools/make_safetensors_golden.py

The values are fixed (no RNG), so tests/test_io.c states them literally.
"""
import os
import torch
from safetensors.torch import save_file

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "..", "tests", "data", "safetensors", "torch_written.safetensors")

tensors = {
    "fc1.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4 - 0.5,
    "fc1.bias": torch.tensor([1.5, -2.25], dtype=torch.float32),
    "scale": torch.tensor(3.0, dtype=torch.float64),       # 0-d
    "counts": torch.tensor([[7], [-1], [2**40]], dtype=torch.int64),
    "empty": torch.zeros(0, 4, dtype=torch.float32),
}
save_file(tensors, out, metadata={"format": "pt", "epoch": "3"})
print("wrote", out)

# A .npy file written by NumPy itself: tapegrad's writer must produce the
# same bytes for the same array (tests/test_io.c).
import numpy as np
npy = os.path.join(here, "..", "tests", "data", "safetensors", "numpy_written.npy")
np.save(npy, (np.arange(6, dtype=np.float32).reshape(2, 3) / 4 - 0.5))
print("wrote", npy)
