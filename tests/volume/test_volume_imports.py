"""The volume engine (store, stack embedding, propagation, command line) loads without napari or Qt."""

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
GUI = ("napari", "npe2", "qtpy", "superqt", "magicgui", "vispy", "app_model", "PyQt", "PySide", "shiboken")


def test_volume_package_imports_no_gui():
    code = (
        "import json, sys\n"
        "import napari_sam.volume, napari_sam.volume.cli, napari_sam.volume.commit\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    tops = {m.split(".")[0] for m in loaded} - {"napari_sam"}
    gui = sorted(t for t in tops if t.startswith(GUI))
    assert gui == []
