"""The annotation session without Qt or napari: slices, embeddings, prompts, candidates, commits."""

import threading

import numpy as np
import pytest
from fakes import STUB_IOU, STUB_RADII, ManualLoop, StubFactory

from napari_sam.commit import apply_change
from napari_sam.prompts import Prompt
from napari_sam.session import (
    AnnotationSession,
    EmbeddingSource,
    EngineRegistry,
    EngineSpec,
    ImagePlanes,
    Workspace,
)
from napari_sam.volume.store import EmbeddingStore

PERSISTENT = "stub:sha256:" + "0" * 64  # a model id the disk store accepts (it names a checkpoint)


def stack(n=5, h=40, w=50, seed=0):
    return np.random.default_rng(seed).integers(0, 4000, (n, h, w)).astype(np.uint16)


def make(data, factory=None, store=None, **kwargs):
    loop = ManualLoop()
    factory = factory or StubFactory()
    workspace = Workspace(engines=EngineRegistry(factory=factory), embeddings=EmbeddingSource(store=store))
    session = AnnotationSession(ImagePlanes(data, name="cells"), workspace, loop, prefetch=False, **kwargs)
    return session, loop, factory


def ready(session, loop, model="a"):
    if session.engine is None:
        session.load_engine(EngineSpec(model))
    loop.run_until(lambda: session.embedding_ready and session.is_idle())


def test_a_click_gives_three_candidates_and_a_commit_writes_the_chosen_one():
    data = stack()
    session, loop, factory = make(data)
    session.show_slice((2,))
    ready(session, loop)
    assert "slice 2: ready" in session.status.text and "(" not in session.status.text.split(":")[0]
    session.set_prompt((2,), Prompt.make([[20, 15]], [1]))
    loop.run_until(lambda: session.candidates() is not None)
    cands = session.candidates()
    assert cands.count == 3 and cands.selected == int(np.argmax(STUB_IOU))
    session.select(1)
    labels = np.zeros(data.shape, np.uint32)
    labels[2, 0:3, 0:3] = 7  # another object, kept
    change = session.plan_commit(labels)
    apply_change(labels, change)
    yy, xx = np.mgrid[:40, :50]
    disc = (yy - 15) ** 2 + (xx - 20) ** 2 <= STUB_RADII[1] ** 2
    assert change.object_id == 8 and np.array_equal(labels[2] == 8, disc)
    assert (labels == 7).sum() == 9 and not labels[[0, 1, 3, 4]].any()


def test_revisiting_a_slice_takes_its_embedding_from_memory():
    session, loop, factory = make(stack())
    for z in (0, 1, 0, 1, 0):
        session.show_slice((z,))
        ready(session, loop)
    engine = factory.engines["a"]
    assert len(engine.embed_calls) == 2
    assert "embedding in memory" in session.status.text


def test_a_slice_left_before_its_embedding_arrived_is_not_shown_as_ready():
    gate = threading.Event()
    session, loop, factory = make(stack(), factory=StubFactory(gate=gate))
    session.load_engine(EngineSpec("a"))
    loop.run_until(lambda: session.engine is not None)
    session.show_slice((0,))
    session.show_slice((3,))  # the user moves on while slice 0 is being embedded
    assert not session.embedding_ready and session.status.level == "busy"
    gate.set()
    loop.run_until(lambda: session.embedding_ready and session.is_idle())
    assert session.slice_index == (3,) and "slice 3" in session.status.text
    # The embedding of slice 0 finished in the background and was kept.
    session.show_slice((0,))
    ready(session, loop)
    assert len(factory.engines["a"].embed_calls) == 2


def test_after_embedding_a_stack_clicking_through_it_never_runs_the_encoder(tmp_path):
    data = stack(6)
    store = EmbeddingStore(tmp_path / "store")
    factory = StubFactory()
    first, loop, _ = make(data, factory=factory, store=store)
    first.engine_spec = None
    engine = factory("a", "auto", "auto")
    engine.model_id = PERSISTENT
    first.set_engine(engine)
    for z in range(6):  # what "Embed stack" does, through the same lookup chain
        first.show_slice((z,))
        loop.run_until(lambda: first.embedding_ready and first.is_idle())
    assert len(engine.embed_calls) == 6 and len(store) == 6
    # A new napari session on the same stack: nothing in memory, everything on disk.
    again, loop2, _ = make(data, factory=factory, store=store)
    again.set_engine(engine)
    for z in (3, 0, 5, 1, 2, 4):
        again.show_slice((z,))
        loop2.run_until(lambda: again.embedding_ready and again.is_idle())
        assert "read from disk" in again.status.text
    assert len(engine.embed_calls) == 6  # zero encoder calls in the second session
    assert again.workspace.embeddings.disk_reads == 6 and again.workspace.embeddings.encoder_calls == 0


def test_a_store_that_cannot_be_written_is_reported_once_and_work_goes_on(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    store = EmbeddingStore(tmp_path / "store")
    session, loop, factory = make(stack(), store=store)
    engine = factory("a", "auto", "auto")
    engine.model_id = PERSISTENT
    store.folder = blocked / "sub"  # a folder that can never be created
    told = []
    session.notify.connect(lambda level, text: told.append((level, text)))
    session.set_engine(engine)
    for z in range(3):
        session.show_slice((z,))
        loop.run_until(lambda: session.embedding_ready and session.is_idle())
    assert len(told) == 1 and told[0][0] == "warning" and "memory" in told[0][1]
    assert len(engine.embed_calls) == 3 and session.embedding_ready


def test_switching_models_drops_old_candidates_keeps_prompts_and_decodes_them_again():
    session, loop, factory = make(stack())
    session.show_slice((1,))
    ready(session, loop, "a")
    session.set_prompt((1,), Prompt.make([[10, 10]], [1]))
    loop.run_until(lambda: session.candidates() is not None)
    told, said, at_switch = [], [], []
    session.notify.connect(lambda level, text: told.append(text))
    session.status_changed.connect(lambda status: said.append(status.text))
    # What is on screen the moment the model changes (b may decode again soon after: a quick stub).
    session.engine_changed.connect(lambda engine: at_switch.append(session.candidates()))
    session.load_engine(EngineSpec("b"))
    loop.run_until(lambda: session.engine is factory.engines.get("b") and told)
    assert at_switch == [None] and "dropped" in told[0]
    assert any("embedding with b" in text for text in said)
    loop.run_until(lambda: session.candidates() is not None and session.is_idle())
    assert factory.engines["b"].decode_calls[-1][1].point_coords.tolist() == [[10, 10]]


def test_a_model_that_fails_to_load_leaves_the_one_in_use_and_says_so():
    session, loop, factory = make(stack())
    session.show_slice((0,))
    ready(session, loop, "a")
    shown = []
    session.engine_changed.connect(shown.append)
    session.load_engine(EngineSpec("missing-model"))
    loop.run_until(lambda: session.is_idle() and session.status.level == "error")
    assert session.engine is factory.engines["a"] and shown == [factory.engines["a"]]
    assert "missing-model" in session.status.text and "Still using a" in session.status.text


def test_a_closed_session_reports_nothing_more():
    gate = threading.Event()
    session, loop, factory = make(stack(), factory=StubFactory(gate=gate))
    session.load_engine(EngineSpec("a"))
    loop.run_until(lambda: session.engine is not None)
    session.show_slice((0,))
    statuses = []
    session.status_changed.connect(statuses.append)
    session.close()  # the image layer was removed mid-embedding
    gate.set()
    assert session.join(10)
    loop.run_pending()
    assert statuses == [] and not session.embedding_ready


def test_edit_and_bad_commits_say_what_is_wrong():
    data = stack()
    session, loop, factory = make(data)
    session.show_slice((0,))
    ready(session, loop)
    labels = np.zeros(data.shape, np.uint32)
    with pytest.raises(ValueError, match="Nothing to commit"):
        session.plan_commit(labels)
    with pytest.raises(ValueError, match="not on slice 0"):
        session.start_edit(labels, 3)
    labels[0, 5:15, 5:15] = 3
    session.start_edit(labels, 3)
    loop.run_until(lambda: session.candidates() is not None)
    request = factory.engines["a"].decode_calls[-1][1]
    assert request.box.tolist() == [5, 5, 15, 15] and request.mask_input is not None
    change = session.plan_commit(labels)
    assert change.object_id == 3  # an edit replaces the object


def test_prefetch_embeds_the_neighbours_when_the_user_pauses():
    session, loop, factory = make(stack(6))
    session.prefetch_enabled = True
    session.prefetch_idle_s = 0.05
    session.show_slice((2,))
    ready(session, loop)
    loop.run_until(lambda: len(factory.engines["a"].embed_calls) == 5 and session.is_idle())
    assert not session.embedding_wanted


def test_the_status_says_which_precision_the_model_runs_in_and_why():
    session, loop, factory = make(stack())
    said = []
    session.status_changed.connect(lambda status: said.append(status.text))
    session.load_engine(EngineSpec("a"))
    loop.run_until(lambda: session.engine is not None and session.is_idle())
    assert any("ready: fp32 (chosen)" in text for text in said), said
