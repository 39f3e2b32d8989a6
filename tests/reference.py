"""Import the reference SAM packages for parity tests.

They import a few torchvision/timm names; our stand-ins in `reference_shims/`
are put on the path first. Nothing of the references is used by the project.
"""

import importlib
import sys
from pathlib import Path

_SHIMS = str(Path(__file__).parent / "reference_shims")


def _import(name):
    if _SHIMS not in sys.path:
        sys.path.insert(0, _SHIMS)
    return importlib.import_module(name)


def segment_anything():
    return _import("segment_anything")


def mobile_sam():
    return _import("mobile_sam")
