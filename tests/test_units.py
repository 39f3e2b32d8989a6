import pytest

from napari_sam.units import format_size


def test_sizes_are_binary_and_say_so():
    assert format_size(0) == "0 bytes"
    assert format_size(1023) == "1023 bytes"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(2 * 2**20) == "2.0 MiB"
    assert format_size(5 * 2**30) == "5.0 GiB"
    assert format_size(3 * 2**50) == "3072.0 TiB"
    with pytest.raises(ValueError, match="negative"):
        format_size(-1)
