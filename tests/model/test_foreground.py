"""Clicks first: an encoder pass in another thread pauses while foreground work holds the gate."""

import copy
import threading
import time

import numpy as np
import torch

from helpers import randomize_, structured_rgb
from napari_sam.model import foreground
from napari_sam.model.build import build_sam, tiny_config
from napari_sam.model.foreground import ForegroundGate, gate_of
from napari_sam.model.predictor import SamPredictor


class Recorder(torch.nn.Module):
    """A layer that notes when it runs."""

    def __init__(self, log, name):
        super().__init__()
        self.log, self.name = log, name

    def forward(self, x):
        self.log.append(self.name)
        return x + 1


def encoder_of(log, n=4):
    return torch.nn.Sequential(*[Recorder(log, i) for i in range(n)])


def run_in_thread(fn):
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", fn()))
    thread.start()
    return thread, out


def test_a_pass_in_another_thread_waits_while_the_gate_is_held():
    log = []
    encoder = encoder_of(log)
    gate = gate_of(encoder)
    with gate.hold():
        thread, out = run_in_thread(lambda: encoder(torch.zeros(1)))
        time.sleep(0.3)
        assert log == []  # paused before its first layer
        assert thread.is_alive()
    thread.join(5)
    assert not thread.is_alive()
    assert log == [0, 1, 2, 3] and out["value"].item() == 4


def test_a_pass_runs_freely_when_nobody_holds_the_gate():
    log = []
    encoder = encoder_of(log)
    gate_of(encoder)
    assert encoder(torch.zeros(1)).item() == 4 and log == [0, 1, 2, 3]


def test_the_holder_itself_is_never_paused():
    # A click that needs an embedding (a tile of a large plane) computes it while holding the gate.
    log = []
    encoder = encoder_of(log)
    with gate_of(encoder).hold():
        with gate_of(encoder).hold():  # nested holds by one thread
            assert encoder(torch.zeros(1)).item() == 4
    assert not gate_of(encoder).busy


def test_a_pause_ends_after_the_longest_pause_even_if_the_holder_is_stuck(monkeypatch):
    monkeypatch.setattr(foreground, "MAX_PAUSE_S", 0.05)
    log = []
    encoder = encoder_of(log, n=2)
    gate = gate_of(encoder)
    with gate.hold():
        thread, out = run_in_thread(lambda: encoder(torch.zeros(1)))
        thread.join(5)
        assert not thread.is_alive() and out["value"].item() == 2


def test_one_gate_per_encoder_and_deep_copies_still_work():
    log = []
    encoder = encoder_of(log)
    assert gate_of(encoder) is gate_of(encoder)
    other = encoder_of(log)
    assert gate_of(other) is not gate_of(encoder)
    twin = copy.deepcopy(encoder)  # a gate's lock cannot be copied: it is not on the module
    assert twin(torch.zeros(1)).item() == 4


def test_wait_reports_whether_the_gate_came_free():
    gate = ForegroundGate()
    assert gate.wait(0.01) is True
    held = threading.Event()
    release = threading.Event()

    def hold():
        with gate.hold():
            held.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    assert gate.busy and gate.wait(0.05) is False
    release.set()
    thread.join(5)
    assert gate.wait(0.05) is True and not gate.busy


def test_predictors_and_twins_share_their_encoders_gate_and_embeddings_are_unchanged():
    torch.manual_seed(0)
    model = randomize_(build_sam(tiny_config(128)), seed=0).eval()
    image = structured_rgb(48, 64, seed=5)
    plain = SamPredictor(model, device="cpu", precision="fp32")
    assert plain.twin().foreground is plain.foreground
    expected = plain.set_image(image).features.clone()
    # a bf16 copy of an encoder that already has pause points: a gate of its own, and it runs
    bf16 = SamPredictor(model, device="cpu", precision="bf16")
    assert bf16.foreground is not plain.foreground
    assert bf16.set_image(image).features.shape == expected.shape
    # an embedding that paused for a click is the same as one that did not
    with plain.foreground.hold():
        thread, out = run_in_thread(lambda: plain.twin().set_image(image).features)
        time.sleep(0.2)
        assert thread.is_alive()
    thread.join(30)
    assert np.array_equal(out["value"].numpy(), expected.numpy())
