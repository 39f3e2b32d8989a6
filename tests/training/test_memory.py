import sys

import pytest

from napari_sam.training import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_glibc_keeps_freed_memory():
    assert memory.keep_freed_memory() is True


def test_other_systems_are_left_as_they_are(monkeypatch):
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.keep_freed_memory() is False


def test_a_c_library_without_mallopt_changes_nothing(monkeypatch):
    monkeypatch.setattr(memory.sys, "platform", "linux")

    class NoMallopt:
        def __init__(self, name):
            pass

        def __getattr__(self, name):
            raise AttributeError(name)

    monkeypatch.setattr(memory.ctypes, "CDLL", NoMallopt)
    assert memory.keep_freed_memory() is False


def test_a_refused_setting_is_reported(monkeypatch):
    monkeypatch.setattr(memory.sys, "platform", "linux")
    calls = []

    class RefusingLibc:
        def __init__(self, name):
            self.mallopt = self

        def __call__(self, param, value):
            calls.append((param, value))
            return 0  # glibc's "error"

    monkeypatch.setattr(memory.ctypes, "CDLL", RefusingLibc)
    assert memory.keep_freed_memory() is False
    assert calls[0] == (memory._M_MMAP_MAX, 0)


def test_training_on_the_cpu_asks_for_it(tmp_path, monkeypatch):
    from napari_sam.training import TrainOptions, loop

    asked = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: asked.append(True) or True)
    loop.train(TrainOptions(out=tmp_path / "m.pt", size="tiny", steps=1, batch_size=1, objects_per_image=1,
                            rounds=1, device="cpu"), log=lambda line: None)
    assert asked == [True]
