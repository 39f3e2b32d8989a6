import sys
from pathlib import Path

# batch_helpers.py sits beside the tests of this folder.
sys.path.insert(0, str(Path(__file__).parent))
