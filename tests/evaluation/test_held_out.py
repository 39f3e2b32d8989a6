import numpy as np
import pytest

from napari_sam.evaluation import held_out_names, split_names
from napari_sam.evaluation.held_out import name_fraction


def test_the_same_images_stay_held_out_as_the_folder_grows():
    names = [f"image{i:03d}" for i in range(200)]
    held_before = set(held_out_names(names[:50], 0.2))
    held_after = set(held_out_names(names, 0.2))
    assert held_before == held_after & set(names[:50])
    assert 20 <= len(held_after) <= 60  # about a fifth
    trained, held = split_names(names, 0.2)
    assert set(trained) | set(held) == set(names) and not set(trained) & set(held)


def test_an_image_trained_on_never_becomes_held_out():
    rng = np.random.default_rng(0)
    names, trained_ever = [], set()
    for i in range(40):
        names.append(f"cells_{rng.integers(10**9)}")
        trained, held = split_names(names, 0.05)
        assert not trained_ever & set(held)
        trained_ever |= set(trained)


def test_at_least_one_image_is_held_out():
    names = ["a", "b", "c"]
    assert all(name_fraction(n) >= 0.01 for n in names)
    assert held_out_names(names, 0.01) == [min(names, key=name_fraction)]
    assert held_out_names([], 0.5) == []


@pytest.mark.parametrize("share", [0, 1, -0.1, 1.5, float("nan"), True, "0.2"])
def test_a_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(ValueError, match="between 0 and 1"):
        held_out_names(["a"], share)
