"""Test files need unique names: pytest imports them as top-level modules
(there are no __init__.py files), so two `test_x.py` in different folders
break the collection of the whole suite."""

from collections import Counter
from pathlib import Path


def test_no_two_test_files_share_a_name():
    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []
