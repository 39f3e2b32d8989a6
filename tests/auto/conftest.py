import sys
from pathlib import Path

# reference_amg.py sits beside the tests of this folder.
sys.path.insert(0, str(Path(__file__).parent))
