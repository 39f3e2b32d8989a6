import sys
from pathlib import Path

# Test helpers (tests/reference.py, tests/helpers.py) import as top-level modules.
sys.path.insert(0, str(Path(__file__).parent))
