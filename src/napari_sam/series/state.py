"""Where the user stopped and which images are done: ``DIR/.napari-sam/series.json``.

Written atomically (a crash leaves the previous version), kept by image name
so that images added to the folder later do not shift the marks. A damaged
state file is set aside (``series.json.damaged``) and the series starts from
its first image: the labels live in their own files and are not affected.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ..atomic import write_atomically

VERSION = 1


class SeriesState:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.current: str | None = None
        self.done: set[str] = set()
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            current = data.get("current")
            done = data.get("done", {})
            if not (current is None or isinstance(current, str)) or not isinstance(done, dict):
                raise ValueError("unexpected content")
        except (OSError, ValueError, AttributeError) as err:
            aside = self.path.with_name(self.path.name + ".damaged")
            try:
                self.path.replace(aside)
            except OSError:
                pass
            warnings.warn(f"the series state {self.path} could not be read ({err}); it was moved to {aside.name} "
                          "and the series starts at its first image (labels are not affected)", stacklevel=3)
            return
        self.current = current
        self.done = {str(name) for name, flag in done.items() if flag is True}

    def save(self) -> None:
        """Write the state; raises OSError (disk full, read-only folder) leaving the previous file."""
        payload = json.dumps({"version": VERSION, "current": self.current,
                              "done": {name: True for name in sorted(self.done)}}, indent=1).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, lambda f: f.write(payload), temp_prefix=".series.json.")
