"""Synthetic fluorescence images of nuclei and cells, with their true instance labels.

They train and check the small demo model, serve as napari sample data and as
test fixtures. Only numpy, scipy and scikit-image are used here (no napari, Qt
or torch), so the generator also runs in data-loader workers and headless CI.

The recipe follows how a fluorescence image comes about:

1. Ellipses (2D) or ellipsoids (3D) of varied size, elongation and orientation
   are placed either on their own or pressed against a neighbour.
2. Where two objects overlap, a pixel goes to the object it is closest to
   *relative to that object's size*; this gives touching nuclei the flat shared
   border they have in real tissue. Objects left mostly hidden are dropped, stray
   fragments are removed so that every label is one connected piece, and labels
   are renumbered 1..N.
3. Each object gets its own brightness, a chromatin-like texture and a dimmer rim.
4. The optics blur it (a Gaussian PSF, longer along z in 3D); a background offset
   and a slow illumination gradient are added; then photon (Poisson) noise and
   camera read (Gaussian) noise.
5. The relative intensities are scaled to the requested dtype: uint8 0..255,
   uint16 like a 12-bit camera (offset 100, at most 4095) or float32 0..1.

Same seed, same arguments: identical output.

Where each step lives: :mod:`.shapes` (step 1 and 2: where objects sit, what
shape they have, the labels painted from them), :mod:`.imaging` (steps 3 to 5:
stain texture, optics, illumination, noise, grey levels), :mod:`.nuclei`,
:mod:`.cells` and :mod:`.tissue` (the generators; tissue is a domain the demo
model never saw), :mod:`.training_pairs` (a stream of varied
images for training) and :mod:`.checks` (argument checks with clear errors).
"""


from .cells import make_cells_2d
from .checks import SUPPORTED_DTYPES
from .nuclei import make_nuclei_2d, make_nuclei_3d
from .tissue import make_tissue_2d
from .training_pairs import iter_training_pairs

__all__ = [
    "SUPPORTED_DTYPES",
    "make_nuclei_2d",
    "make_nuclei_3d",
    "make_cells_2d",
    "make_tissue_2d",
    "iter_training_pairs",
]
