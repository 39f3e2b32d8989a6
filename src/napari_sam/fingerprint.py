"""A short fingerprint of image data: part of the identity of an embedding.

Two slices with the same fingerprint have the same pixels (dtype, shape and
bytes), so an embedding computed for one is valid for the other; any edit of
the pixels changes it.
"""

import hashlib

import numpy as np


def array_fingerprint(array) -> str:
    """Hex blake2b-128 digest of an array's dtype, shape and contents."""
    arr = np.ascontiguousarray(np.asarray(array))
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype.str}|{arr.shape}|".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()
