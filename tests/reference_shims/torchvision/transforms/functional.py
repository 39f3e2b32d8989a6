"""`resize` and `to_pil_image` as torchvision applies them to uint8 HWC arrays.

For a PIL image torchvision's resize is PIL's own bilinear resize, so these
give the reference exactly the pixels it gets with torchvision installed.
"""

import numpy as np
from PIL import Image


def to_pil_image(pic):
    if isinstance(pic, Image.Image):
        return pic
    arr = np.asarray(pic)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(arr)


def resize(img, size, interpolation=None, max_size=None, antialias=True):
    if not isinstance(img, Image.Image):
        raise TypeError("this stand-in resizes PIL images only")
    if isinstance(size, int):
        raise TypeError("this stand-in needs an explicit (h, w) size")
    h, w = size
    return img.resize((int(w), int(h)), Image.BILINEAR)
