"""Demo images for napari's File > Open Sample menu.

Both are generated (see :mod:`napari_sam.synthetic`) with fixed seeds, so they
are the same every time and need no download. Each function returns napari
LayerData tuples ``(data, layer_kwargs, "image")``; napari itself is not
imported here.
"""

from __future__ import annotations

import numpy as np

from .synthetic import make_cells_2d, make_nuclei_3d

# Voxel size of the nuclei stack in micrometres, (z, y, x). Planes are three
# times as far apart as pixels are wide, a common confocal setting; the generator
# is told the same ratio so that nuclei come out round in physical space.
NUCLEI_STACK_VOXEL_UM = (1.5, 0.5, 0.5)
NUCLEI_STACK_SHAPE = (24, 256, 256)
CELLS_PIXEL_UM = (0.5, 0.5)

_NUCLEI_STACK_SEED = 20240601
_CELLS_SEED = 20240602


def nuclei_stack() -> list[tuple]:
    """A 12-bit fluorescence stack of nuclei, 24 x 256 x 256, anisotropic voxels."""
    z_step = NUCLEI_STACK_VOXEL_UM[0] / NUCLEI_STACK_VOXEL_UM[1]
    stack, _ = make_nuclei_3d(
        NUCLEI_STACK_SHAPE,
        n_objects=30,
        seed=_NUCLEI_STACK_SEED,
        dtype=np.uint16,
        z_step=z_step,
        radius_range=(8.0, 20.0),  # nuclei 8-20 um across, about 5-10 planes deep
    )
    kwargs = {
        "name": "SAM demo: nuclei stack (generated)",
        "scale": NUCLEI_STACK_VOXEL_UM,
        "colormap": "gray",
        "metadata": {"voxel_size_um": NUCLEI_STACK_VOXEL_UM, "generated": True},
    }
    return [(stack, kwargs, "image")]


def cells_2d() -> list[tuple]:
    """An RGB image of cultured cells: membrane red, cytoplasm green, nuclei blue."""
    image, _ = make_cells_2d((256, 256), n_objects=14, seed=_CELLS_SEED, dtype=np.uint8)
    kwargs = {
        "name": "SAM demo: cells (generated)",
        "rgb": True,
        "scale": CELLS_PIXEL_UM,
        "metadata": {"pixel_size_um": CELLS_PIXEL_UM, "generated": True},
    }
    return [(image, kwargs, "image")]
