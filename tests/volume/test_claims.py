"""Two programs embedding one stack into one cache compute each slice once."""

import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from volume_helpers import CountingPredictor, tiny_model

from napari_sam.volume import EmbeddingStore, StackEmbeddings, embed_stack
from napari_sam.volume import claims

# The package's embed_stack is the function; the module holds the polling interval.
embeddings_module = importlib.import_module("napari_sam.embeddings")  # where the claims are waited for


class SlowPredictor(CountingPredictor):
    """An encoder that takes its time, as a real one does, so two runs overlap."""

    def set_image(self, image, intensity_range=None):
        time.sleep(0.15)
        return super().set_image(image, intensity_range=intensity_range)


@pytest.fixture
def stack():
    return np.random.default_rng(0).integers(0, 4000, (6, 32, 32), dtype=np.uint16)


def test_two_runs_on_one_cache_compute_each_slice_once(tmp_path, stack, monkeypatch):
    monkeypatch.setattr(embeddings_module, "CLAIM_POLL_S", 0.02)
    model = tiny_model()
    predictors = [SlowPredictor(model, device="cpu", precision="fp32") for _ in range(2)]
    results, errors = [None, None], []
    start = threading.Barrier(2)

    def run(k):
        try:
            start.wait()
            results[k] = embed_stack(predictors[k], stack, EmbeddingStore(tmp_path))
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sum(p.encoder_runs for p in predictors) == len(stack)  # was 2 x 6: both computed everything
    for result in results:
        assert result.complete and sorted(result.embeddings) == list(range(len(stack)))
    assert sorted(results[0].computed + results[1].computed) == list(range(len(stack)))
    assert not list(tmp_path.glob("*.claim"))  # every claim released


def test_a_slice_claimed_by_another_process_is_read_when_it_is_done(tmp_path, stack, monkeypatch):
    monkeypatch.setattr(embeddings_module, "CLAIM_POLL_S", 0.02)
    model = tiny_model()
    store = EmbeddingStore(tmp_path)
    other = StackEmbeddings(CountingPredictor(model, device="cpu", precision="fp32"), stack, store)
    theirs = store.claim(other.key(2))  # "another process" is computing slice 2
    assert theirs is not None and store.claim(other.key(2)) is None

    def finish():
        time.sleep(0.3)
        other.compute(2)
        theirs.release()

    threading.Thread(target=finish).start()
    mine = CountingPredictor(model, device="cpu", precision="fp32")
    result = embed_stack(mine, stack, store)
    assert result.complete and result.loaded == [2] and 2 not in result.computed
    assert mine.encoder_runs == len(stack) - 1


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


@pytest.mark.parametrize("how", ["dead process", "too old"])
def test_an_abandoned_claim_is_taken_over(tmp_path, stack, how):
    model = tiny_model()
    store = EmbeddingStore(tmp_path)
    sl = StackEmbeddings(CountingPredictor(model, device="cpu", precision="fp32"), stack, store)
    path = store.path_for(sl.key(1)).with_suffix(claims.CLAIM_SUFFIX)
    pid = _dead_pid() if how == "dead process" else os.getpid()
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "time": 0, "token": "theirs"}))
    if how == "too old":
        old = time.time() - claims.STALE_AFTER_S - 60
        os.utime(path, (old, old))
    assert claims.is_stale(path)
    assert sl.get(1) is not None and sl.computed == 1
    assert not path.exists()


def test_a_live_claim_is_not_stale_and_not_released_by_others(tmp_path):
    path = tmp_path / "x.claim"
    mine = claims.try_claim(path)
    assert mine is not None and not claims.is_stale(path)
    assert claims.try_claim(path) is None
    claims.Claim(path, token="someone else").release()
    assert path.exists()
    mine.release()
    assert not path.exists()


def test_a_cache_that_takes_no_files_still_computes(tmp_path, stack):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = EmbeddingStore(blocker / "cache")
    with pytest.warns(RuntimeWarning, match="kept in memory only"):
        result = embed_stack(CountingPredictor(tiny_model(), device="cpu", precision="fp32"), stack, store)
    assert result.complete
