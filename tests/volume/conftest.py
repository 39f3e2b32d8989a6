import sys
from pathlib import Path

import pytest

# volume_helpers is imported by name from the tests in this folder.
sys.path.insert(0, str(Path(__file__).parent))

from volume_helpers import CountingPredictor, tiny_model  # noqa: E402


@pytest.fixture
def predictor():
    return CountingPredictor(tiny_model(), device="cpu", precision="fp32")
