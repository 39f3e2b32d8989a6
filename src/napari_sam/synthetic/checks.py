"""Argument checks of the generators: a clear ValueError/TypeError for every bad input."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


def _check_shape(shape, ndim: int) -> tuple[int, ...]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise TypeError(f"shape must be a tuple of {ndim} integers, got {shape!r}")
    if len(shape) != ndim:
        raise ValueError(f"shape must have {ndim} entries for a {ndim}D image, got {tuple(shape)!r}")
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, Integral):
            raise TypeError(f"shape entries must be integers, got {tuple(shape)!r}")
        if s <= 0:
            raise ValueError(f"shape entries must be positive, got {tuple(shape)!r}")
    return tuple(int(s) for s in shape)


def _check_count(n_objects) -> tuple[int, int]:
    """Return the inclusive (low, high) range of the number of objects."""
    def as_count(v):
        if isinstance(v, bool) or not isinstance(v, Integral):
            raise TypeError(f"n_objects must be an integer or a (min, max) pair of integers, got {n_objects!r}")
        if v < 0:
            raise ValueError(f"n_objects must not be negative, got {n_objects!r}")
        return int(v)

    if isinstance(n_objects, Sequence) and not isinstance(n_objects, (str, bytes)):
        if len(n_objects) != 2:
            raise ValueError(f"n_objects as a range must be a (min, max) pair, got {n_objects!r}")
        low, high = as_count(n_objects[0]), as_count(n_objects[1])
        if low > high:
            raise ValueError(f"n_objects range must have min <= max, got {n_objects!r}")
        return low, high
    n = as_count(n_objects)
    return n, n


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype {dtype!r} is not a numpy dtype") from err
    if dt not in SUPPORTED_DTYPES:
        names = ", ".join(d.name for d in SUPPORTED_DTYPES)
        raise ValueError(f"dtype must be one of {names}, got {dt.name}")
    return dt


def _check_number(name: str, value, low: float, high: float = np.inf, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    if not np.isfinite(value) or too_low or value > high:
        bound = f"{'>' if low_open else '>='} {low}" + ("" if high == np.inf else f" and <= {high}")
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def _check_pair(name: str, pair, low: float, high: float = np.inf, low_open: bool = True) -> tuple[float, float]:
    """A (min, max) pair with low < min <= max <= high (low <= min with ``low_open=False``)."""
    if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise TypeError(f"{name} must be a (min, max) pair of numbers, got {pair!r}")
    a = _check_number(name, pair[0], low, high, low_open=low_open)
    b = _check_number(name, pair[1], low, high, low_open=low_open)
    if a > b:
        raise ValueError(f"{name} must have min <= max, got {pair!r}")
    return a, b


def _as_rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, Integral)):
        raise TypeError(f"seed must be None, an integer or a numpy Generator, got {seed!r}")
    return np.random.default_rng(seed)


def _check_imaging(blur_sigma, texture, background, gradient, photons, read_noise) -> None:
    _check_number("blur_sigma", blur_sigma, 0.0)
    _check_number("texture", texture, 0.0, 1.0)
    _check_number("background", background, 0.0, 1.0)
    _check_number("gradient", gradient, 0.0, 1.0)
    _check_number("photons", photons, 0.0, low_open=True)
    _check_number("read_noise", read_noise, 0.0)
