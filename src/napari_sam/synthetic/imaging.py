"""How microscope and camera turn objects into an image.

Stain texture and a dimmer rim, the optics' blur (longer along z), background
and uneven illumination, photon and read noise, then grey levels of the
requested dtype.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# uint16 output imitates a 12-bit scientific camera: a dark offset so that noise
# never clips at zero, and a full well below 4095.
_CAMERA_OFFSET = 100
_CAMERA_GAIN = 3800  # grey levels per unit of relative intensity
_CAMERA_MAX = 4095

# The PSF of a widefield/confocal microscope is about three times longer along
# the optical axis than across it.
_AXIAL_BLUR_FACTOR = 3.0


def _smooth_noise(rng, shape, sigma):
    """Gaussian-correlated noise with unit standard deviation (texture, blotches)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    std = float(field.std())
    return field / std if std > 0 else field


def _object_signal(rng, labels, d2_map, brightness, texture, texture_sigma, rim=0.3):
    """Bright objects with a dimmer rim and a mottled, chromatin-like interior."""
    inside = labels > 0
    signal = brightness[labels] * (1.0 - rim * np.where(inside, d2_map, 1.0))
    if texture > 0:
        signal *= np.clip(1.0 + texture * _smooth_noise(rng, labels.shape, texture_sigma), 0.0, None)
    return np.where(inside, signal, 0.0).astype(np.float32)


def _illumination(rng, shape, background, gradient):
    """Background offset plus a linear ramp across the field (uneven illumination)."""
    angle = rng.uniform(0.0, 2 * np.pi)
    y = np.linspace(-0.5, 0.5, shape[-2], dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, shape[-1], dtype=np.float32)[None, :]
    plane = background + gradient * (np.sin(angle) * y + np.cos(angle) * x)
    return np.clip(plane, 0.0, None).astype(np.float32)


def _acquire(rng, relative, photons, read_noise, noise):
    """Photon shot noise and camera read noise, in relative-intensity units."""
    if not noise:
        return relative
    counts = rng.poisson(np.clip(relative, 0.0, None) * photons).astype(np.float32)
    if read_noise > 0:
        counts += np.float32(read_noise) * rng.standard_normal(relative.shape, dtype=np.float32)
    return counts / np.float32(photons)


def _to_dtype(relative, dtype):
    if dtype == np.uint8:
        return np.clip(np.rint(relative * 255.0), 0, 255).astype(np.uint8)
    if dtype == np.uint16:
        grey = np.rint(_CAMERA_OFFSET + relative * _CAMERA_GAIN)
        return np.clip(grey, 0, _CAMERA_MAX).astype(np.uint16)
    return np.clip(relative, 0.0, 1.0).astype(np.float32)


def _blur_sigma(blur_sigma, spacing):
    """Per-axis Gaussian sigma in pixels; along z the PSF is longer and slices are sparser."""
    if len(spacing) == 2:
        return (blur_sigma, blur_sigma)
    return (blur_sigma * _AXIAL_BLUR_FACTOR / spacing[0], blur_sigma, blur_sigma)
