"""Shared helpers for the tests: random-weight models and comparison metrics."""

import errno
import os
import tempfile

import numpy as np
import torch


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every float parameter/buffer non-trivial values (positional tables included).

    Default initialisations leave relative-position tables and positional
    embeddings at zero, norms at one: a parity test on those would not see bugs
    in the code that uses them.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("running_var"):
                t.copy_(0.5 + noise.abs())
            elif "norm" in name and name.endswith("weight") or name.endswith(".bn.weight"):
                t.copy_(1.0 + 0.1 * noise)
            elif "positional_encoding_gaussian_matrix" in name:
                t.copy_(noise)
            else:
                fan_in = t[0].numel() if t.ndim > 1 else 1
                t.copy_(noise * (0.02 if t.ndim <= 1 else 1.0 / np.sqrt(fan_in)))
    return model


def rel_err(a, b) -> float:
    a = torch.as_tensor(np.asarray(a, dtype=np.float64) if not isinstance(a, torch.Tensor) else a).double()
    b = torch.as_tensor(np.asarray(b, dtype=np.float64) if not isinstance(b, torch.Tensor) else b).double()
    return float((a - b).norm() / b.norm())


def structured_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB image with blobs, edges and noise (not flat, not pure noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float64)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.05, 0.2) * min(h, w)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.uniform(40, 120, size=3)
    img += rng.normal(0, 10, img.shape) + 30
    return np.clip(img, 0, 255).astype(np.uint8)


def read_only_folder(monkeypatch, folder):
    """Make creating files in ``folder`` fail as on a read-only mount (the tests run as root, so chmod won't do)."""
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kw):
        if dir is not None and os.path.samefile(dir, folder):
            raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir, ".tmp-x.tmp"))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
