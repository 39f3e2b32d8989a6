"""The npe2 manifest and the sample-data contributions (no viewer, no Qt)."""

from importlib.metadata import PackageNotFoundError
from pathlib import Path

import numpy as np
import pytest
from npe2 import PluginManifest
from npe2.manifest.utils import import_python_name

import napari_sam

MANIFEST = Path(napari_sam.__file__).parent / "napari.yaml"


@pytest.fixture(scope="module")
def manifest():
    return PluginManifest.from_file(MANIFEST)


@pytest.fixture(scope="module")
def samples(manifest):
    """key -> (display name, list of LayerData) for every sample contribution."""
    commands = {c.id: c for c in manifest.contributions.commands}
    loaded = {}
    for sample in manifest.contributions.sample_data:
        function = import_python_name(commands[sample.command].python_name)
        loaded[sample.key] = (sample.display_name, function())
    return loaded


def test_manifest_identity(manifest):
    assert manifest.name == "napari-sam-annotator"
    assert manifest.display_name == "SAM Annotator"


def test_every_python_name_imports(manifest):
    manifest.validate_imports()  # raises a ValidationError naming the bad entry
    for command in manifest.contributions.commands:
        if command.python_name:
            assert callable(import_python_name(command.python_name)), command.id


def test_sample_commands_are_declared(manifest):
    command_ids = {c.id for c in manifest.contributions.commands}
    sample_data = manifest.contributions.sample_data
    assert {s.key for s in sample_data} == {"nuclei_stack", "cells_2d"}
    for sample in sample_data:
        assert sample.command in command_ids
        assert sample.command.startswith("napari-sam-annotator.")


def test_samples_return_layer_data(samples):
    for key, (display_name, layers) in samples.items():
        assert isinstance(layers, list) and len(layers) >= 1, key
        for layer in layers:
            assert isinstance(layer, tuple) and len(layer) == 3, key
            data, kwargs, layer_type = layer
            assert layer_type == "image"
            assert isinstance(data, np.ndarray)
            assert data.std() > 0, "a blank sample"
            assert kwargs["name"] == display_name
            assert "(generated)" in kwargs["name"]
            spatial_ndim = data.ndim - 1 if kwargs.get("rgb") else data.ndim
            assert len(kwargs["scale"]) == spatial_ndim


def test_nuclei_stack_is_anisotropic_12_bit(samples):
    (data, kwargs, _), = samples["nuclei_stack"][1]
    assert data.ndim == 3 and data.shape[0] > 1
    assert data.dtype == np.uint16
    assert 255 < data.max() <= 4095
    z, y, x = kwargs["scale"]
    assert y == x and z != y and z != 1


def test_cells_sample_is_rgb(samples):
    (data, kwargs, _), = samples["cells_2d"][1]
    assert data.ndim == 3 and data.shape[-1] == 3
    assert kwargs["rgb"] is True
    assert data.dtype == np.uint8


def test_samples_are_the_same_every_time(samples):
    from napari_sam import sample_data

    np.testing.assert_array_equal(sample_data.nuclei_stack()[0][0], samples["nuclei_stack"][1][0][0])
    np.testing.assert_array_equal(sample_data.cells_2d()[0][0], samples["cells_2d"][1][0][0])


def test_layer_kwargs_are_accepted_by_napari(samples):
    """Build the layers the way napari would, without a viewer or Qt."""
    layers = pytest.importorskip("napari.layers")
    for _, sample in samples.values():
        for data, kwargs, layer_type in sample:
            layer = layers.Image(data, **kwargs)
            assert layer.name == kwargs["name"]
            np.testing.assert_allclose(layer.scale, kwargs["scale"])


def test_installed_entry_point_finds_the_manifest():
    try:
        installed = PluginManifest.from_distribution("napari-sam-annotator")
    except (PackageNotFoundError, ValueError):
        pytest.skip("the package is not installed, so there is no entry point to discover")
    assert installed.name == "napari-sam-annotator"
    assert {s.key for s in installed.contributions.sample_data} == {"nuclei_stack", "cells_2d"}
