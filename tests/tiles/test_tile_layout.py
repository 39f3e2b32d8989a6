import numpy as np
import pytest

from napari_sam.tiles import choose_tile_and_halo, plan_tiles
from napari_sam.tiles.layout import window_around


@pytest.mark.parametrize("shape", [(1000, 1000), (1025, 3000), (257, 256), (256, 256), (100, 5000), (8, 300)])
def test_cores_cover_the_plane_once_and_windows_lie_inside(shape):
    tiling = plan_tiles(shape, 256, 40)
    owned = np.zeros(shape, np.int32)
    for t in tiling:
        y0, y1, x0, x1 = t.box
        assert 0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1]
        assert t.shape == (min(256, shape[0]), min(256, shape[1]))  # full windows: the model sees a whole field
        cy0, cy1, cx0, cx1 = t.core
        owned[cy0:cy1, cx0:cx1] += 1
        # A core keeps a halo's distance from every inner border of its window.
        top, bottom, left, right = t.inner_edges(shape)
        assert not top or cy0 - y0 >= 40
        assert not bottom or y1 - cy1 >= 40
        assert not left or cx0 - x0 >= 40
        assert not right or x1 - cx1 >= 40
    assert (owned == 1).all()


def test_a_plane_smaller_than_a_tile_is_one_tile_of_its_own_size():
    tiling = plan_tiles((200, 150), 1024, 64)
    assert len(tiling) == 1 and tiling.tiles[0].box == (0, 200, 0, 150) == tiling.tiles[0].core


def test_owner_is_the_tile_whose_core_holds_the_point():
    tiling = plan_tiles((1000, 1000), 256, 40)
    t = tiling.owner(500.0, 999.0)
    assert t.owns(500.0, 999.0) and sum(u.owns(500.0, 999.0) for u in tiling) == 1
    with pytest.raises(ValueError, match="outside"):
        tiling.owner(1000.0, 3.0)


def test_tile_and_halo_come_from_the_model_and_the_object_size():
    assert choose_tile_and_halo(1024) == (1024, 64)
    assert choose_tile_and_halo(256, object_diameter=30) == (256, 32)
    assert choose_tile_and_halo(256, tile=512, halo=100) == (512, 100)


@pytest.mark.parametrize("tile, halo, message", [
    (256, 128, "leaves no core"), (256, -1, "at least 0"), (4, 0, "at least 8"), (256.5, 10, "whole number"),
    ("256", 10, "whole number")])
def test_a_bad_tile_or_halo_says_what_to_change(tile, halo, message):
    with pytest.raises(ValueError, match=message):
        plan_tiles((1000, 1000), tile, halo)


def test_a_bad_object_diameter_is_refused():
    with pytest.raises(ValueError, match="object_diameter"):
        choose_tile_and_halo(256, object_diameter=0)


def test_a_line_of_one_pixel_gets_a_clear_message():
    with pytest.raises(ValueError, match="1 x 100000 pixels.*Reshape"):
        plan_tiles((1, 100_000), 256, 32)


def test_window_around_stays_inside_the_plane():
    assert window_around((500, 500), (10, 490), (100, 100)) == (0, 100, 400, 500)
    assert window_around((50, 500), (25, 250), (100, 100)) == (0, 50, 200, 300)
