"""The engine must load without napari or Qt.

`napari_sam.model` is meant to run in scripts, notebooks and on headless
cluster nodes, where importing napari would drag in a GUI toolkit (and may
fail outright without a display). Each check starts a fresh interpreter,
because this test process has usually imported napari already.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Top-level packages of the GUI stack that only napari_sam.widgets may use.
GUI_PACKAGES = {"napari", "npe2", "qtpy", "superqt", "magicgui", "vispy", "app_model"}
GUI_PREFIXES = ("napari", "PyQt", "PySide", "shiboken")


def is_gui_module(name: str) -> bool:
    top = name.split(".")[0]
    if top == "napari_sam":
        return False
    return top in GUI_PACKAGES or top.startswith(GUI_PREFIXES)


def modules_loaded_by(statement: str) -> list[str]:
    """Run `statement` in a fresh interpreter and return what ended up in sys.modules."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    env = dict(os.environ)
    # Test this checkout's sources even when the package is not installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, f"`{statement}` failed:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package", ["napari_sam.model", "napari_sam.session", "napari_sam.volume", "napari_sam.training",
                                     "napari_sam.auto", "napari_sam.batch"])
def test_engine_and_session_import_no_gui_toolkit(package):
    # Everything between the engine and the docks is plain Python: scripts, tests and
    # cluster nodes use it without a display.
    loaded = modules_loaded_by(f"import {package}")
    assert package in loaded
    gui = [name for name in loaded if is_gui_module(name)]
    assert gui == [], f"importing {package} pulled in GUI modules: {gui}"


def test_top_level_package_is_light():
    # napari reads the plugin manifest without running our code; importing the
    # bare package (e.g. for __version__) should cost neither torch nor a GUI.
    loaded = modules_loaded_by("import napari_sam")
    heavy = [name for name in loaded if is_gui_module(name) or name.split(".")[0] == "torch"]
    assert heavy == [], f"importing napari_sam pulled in: {heavy}"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("napari", True),
        ("napari.layers", True),
        ("napari_builtins", True),
        ("PyQt6.QtCore", True),
        ("PySide6", True),
        ("qtpy.QtWidgets", True),
        ("vispy.scene", True),
        ("magicgui", True),
        ("napari_sam", False),
        ("napari_sam.model", False),
        ("numpy", False),
        ("torch.nn", False),
    ],
)
def test_gui_module_names_are_recognised(name, expected):
    assert is_gui_module(name) is expected


def test_probe_sees_modules_the_statement_imports():
    # Guards the checks above against passing because the probe saw nothing.
    loaded = modules_loaded_by("import email.mime.text")
    assert "email.mime.text" in loaded
