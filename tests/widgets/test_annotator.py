"""The annotator driven as a user would, with a stub engine (UI logic only).

Embedding and decoding run in background lanes: after each action a test
waits until the session is idle (``settle``) before it looks at the result.
"""

import threading

import numpy as np
from fakes import STUB_IOU, STUB_RADII, StubEngine

from napari_sam.widgets import layers as L
from napari_sam.widgets.annotator import AnnotatorWidget

TIMEOUT_MS = 15000


def start(make_napari_viewer, qtbot, image, factory, model="a", **image_kwargs):
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, **image_kwargs)
    widget = AnnotatorWidget(viewer, engine_factory=factory, autoload=False)
    viewer.window.add_dock_widget(widget, name="SAM Annotator")
    widget.set_image(layer)
    widget.load_model(model)
    wait_embedded(qtbot, widget)
    return viewer, layer, widget


def wait_embedded(qtbot, widget):
    qtbot.waitUntil(lambda: widget.session is not None and widget.session.embedding_ready and widget.is_idle(),
                    timeout=TIMEOUT_MS)


def wait_idle(qtbot, widget):
    qtbot.waitUntil(widget.is_idle, timeout=TIMEOUT_MS)


def settle(qtbot, widget):
    """Wait for the background work an action started (decoding a prompt), then for its result to be drawn."""
    qtbot.wait(1)
    wait_idle(qtbot, widget)
    qtbot.wait(1)
    return widget.current_candidates()


def disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_named_layers_follow_the_image_geometry(make_napari_viewer, qtbot, stub_factory):
    stack = np.random.default_rng(0).integers(0, 4000, (5, 40, 50)).astype(np.uint16)
    viewer, image, w = start(make_napari_viewer, qtbot, stack, stub_factory, scale=(1.5, 0.5, 0.5), translate=(3, 0, 1))
    names = [lyr.name for lyr in viewer.layers]
    assert {L.POINTS_NAME, L.BOXES_NAME, L.LABELS_NAME} <= set(names)
    assert w.labels.data.dtype == np.uint32 and w.labels.data.shape == stack.shape
    np.testing.assert_allclose(w.labels.scale, (1.5, 0.5, 0.5))
    np.testing.assert_allclose(w.labels.translate, (3, 0, 1))
    assert w.points.ndim == 3 and w.boxes.ndim == 3
    assert len(w.candidates) == 3 and all(c.data.shape == (1, 40, 50) for c in w.candidates)
    wait_idle(qtbot, w)


def test_point_and_box_give_three_candidates_pick_commit_and_undo(make_napari_viewer, qtbot, stub_factory):
    img = np.random.default_rng(1).integers(0, 255, (60, 80)).astype(np.uint8)
    viewer, image, w = start(make_napari_viewer, qtbot, img, stub_factory)
    w.points.add([30, 40])  # (row, col)
    cands = settle(qtbot, w)
    assert cands is not None and cands.count == 3
    assert cands.selected == int(np.argmax(STUB_IOU))  # best chosen by default
    for k, layer in enumerate(w.candidates):
        assert f"IoU {STUB_IOU[k]:.2f}" in layer.name
        assert layer.visible == (k == cands.selected)
    assert w.candidates[2].data.any()
    assert w.candidate_buttons.button(2).isChecked() and "0.93" in w.candidate_buttons.button(2).text()

    w.boxes.add_rectangles(np.array([[20, 30], [40, 50]]))
    settle(qtbot, w)
    engine = stub_factory.engines["a"]
    assert engine.decode_calls[-1][1].box.tolist() == [30, 20, 50, 40]

    w.select_candidate(1)  # key 2
    assert w.current_candidates().selected == 1 and w.candidates[1].visible and not w.candidates[2].visible
    change = w.commit()
    expected = disc(img.shape, 30, 40, STUB_RADII[1])
    assert change.object_id == 1
    assert np.array_equal(w.labels.data == 1, expected)
    assert len(w.points.data) == 0 and len(w.boxes.data) == 0  # the object's prompts are cleared
    assert w.current_candidates() is None and not w.candidates[1].data.any()

    w.labels.undo()
    assert w.labels.data.max() == 0
    w.labels.redo()
    assert np.array_equal(w.labels.data == 1, expected)

    # The next object gets max + 1 and does not take pixels of object 1.
    w.points.add([30, 44])
    settle(qtbot, w)
    w.select_candidate(2)
    change2 = w.commit()
    assert change2.object_id == 2
    assert np.array_equal(w.labels.data == 1, expected)
    assert "Committed object 2" in w.status.text()
    wait_idle(qtbot, w)


def test_clear_drops_prompts_and_candidates_but_not_labels(make_napari_viewer, qtbot, stub_factory):
    img = np.zeros((40, 40), np.uint8)
    viewer, image, w = start(make_napari_viewer, qtbot, img, stub_factory)
    w.labels.data[0:3, 0:3] = 9
    w.points.add([20, 20])
    assert settle(qtbot, w) is not None
    w.clear()
    assert len(w.points.data) == 0 and w.current_candidates() is None
    assert (w.labels.data == 9).sum() == 9
    wait_idle(qtbot, w)


def test_negative_points_by_toggle_and_by_shift_click(make_napari_viewer, qtbot, stub_factory):
    img = np.zeros((40, 40), np.uint8)
    viewer, image, w = start(make_napari_viewer, qtbot, img, stub_factory)
    engine = stub_factory.engines["a"]
    w.points.add([10, 10])
    settle(qtbot, w)
    w.toggle_sign()  # key T
    assert w.negative_mode and w.sign_button.isChecked()
    w.points.add([20, 20])
    settle(qtbot, w)
    w.toggle_sign()
    assert not w.negative_mode
    # In select mode T flips the selected points.
    w.points.mode = "select"
    w.points.selected_data = {0}
    w.toggle_sign()
    settle(qtbot, w)
    assert engine.decode_calls[-1][1].point_labels.tolist() == [0, 0]
    w.toggle_sign()
    settle(qtbot, w)
    assert engine.decode_calls[-1][1].point_labels.tolist() == [1, 0]
    assert not w.negative_mode
    w.points.mode = "add"

    class Press:
        modifiers = ("Shift",)

    w.link._on_points_press(w.points, Press())  # what napari calls first on a Shift-click
    w.points.add([30, 30])
    settle(qtbot, w)
    request = engine.decode_calls[-1][1]
    assert request.point_labels.tolist() == [1, 0, 0]
    assert request.point_coords.tolist() == [[10, 10], [20, 20], [30, 30]]
    colours = np.asarray(w.points.face_color)
    assert not np.allclose(colours[0], colours[1]) and np.allclose(colours[1], colours[2])
    # Later points feed the earlier result back (SAM's interactive loop).
    assert engine.decode_calls[0][1].mask_input is None
    assert request.mask_input is not None
    wait_idle(qtbot, w)


def test_keys_work_through_napari_key_handler(make_napari_viewer, qtbot, stub_factory):
    img = np.zeros((40, 40), np.uint8)
    viewer, image, w = start(make_napari_viewer, qtbot, img, stub_factory)
    assert viewer.layers.selection.active is w.points and w.points.mode == "add"  # ready to click
    handler = viewer.window._qt_viewer._key_map_handler  # what napari's canvas feeds key presses to

    def press(key):
        handler.press_key(key)
        handler.release_key(key)

    w.points.add([20, 20])
    settle(qtbot, w)
    press("1")  # napari's own "1" on points deletes the selected point: ours must win
    assert len(w.points.data) == 1 and w.current_candidates().selected == 0
    press("3")
    assert w.current_candidates().selected == 2
    press("t")
    assert w.negative_mode
    press("t")
    press("c")
    assert w.labels.data.max() == 1 and len(w.points.data) == 0
    w.points.add([10, 10])
    press("Shift-C")
    assert len(w.points.data) == 0 and w.labels.data.max() == 1
    w.points.add([10, 10])
    settle(qtbot, w)
    viewer.layers.selection.active = w.labels  # committing from the labels layer works too
    press("c")
    assert w.labels.data.max() == 2
    w.labels.selected_label = 2
    viewer.layers.selection.active = w.boxes
    press("e")
    assert w.session.editing() == 2
    wait_idle(qtbot, w)


def test_no_stale_embedding_when_the_slice_changes_during_embedding(make_napari_viewer, qtbot):
    # Slice z has the constant value 10 * z, so an embedding says which slice it came from.
    stack = np.stack([np.full((32, 32), 10 * z, np.uint8) for z in range(8)])
    gate = threading.Event()
    engine = StubEngine(model_id="slow", gate=gate)
    viewer = make_napari_viewer()
    image = viewer.add_image(stack)
    w = AnnotatorWidget(viewer, engine_factory=lambda *a: engine, autoload=False)
    viewer.window.add_dock_widget(w)
    viewer.dims.set_current_step(0, 5)
    w.set_image(image)
    w.session.prefetch_idle_s = 0.2
    w.load_model("slow")
    qtbot.waitUntil(lambda: w.session.embedding_wanted, timeout=TIMEOUT_MS)
    assert "slice 5: embedding" in w.status.text()
    viewer.dims.set_current_step(0, 6)  # while slice 5 is still being embedded
    w.points.add([6, 16, 16])
    qtbot.waitUntil(lambda: "slice 6" in w.status.text(), timeout=TIMEOUT_MS)
    assert w.current_candidates() is None  # nothing decoded yet: no embedding for slice 6
    gate.set()
    qtbot.waitUntil(lambda: w.current_candidates() is not None, timeout=TIMEOUT_MS)
    assert engine.decode_calls and all(tag == 60.0 for tag, _ in engine.decode_calls)
    assert all(req.slice_index == (6,) for _, req in engine.decode_calls)
    np.testing.assert_allclose(w.candidates[0].translate, (6, 0, 0))
    # Neighbours are prefetched when idle.
    qtbot.waitUntil(lambda: {40.0, 70.0} <= set(engine.embed_calls), timeout=TIMEOUT_MS)
    assert engine.embed_calls.count(50.0) == 1 and engine.embed_calls.count(60.0) == 1  # slice 5 was kept
    wait_idle(qtbot, w)
    # The prompt belongs to slice 6: on slice 5 there is none, back on 6 the candidates return.
    viewer.dims.set_current_step(0, 5)
    settle(qtbot, w)
    assert w.current_candidates() is None and not w.candidates[0].data.any()
    viewer.dims.set_current_step(0, 6)
    assert settle(qtbot, w) is not None
    wait_idle(qtbot, w)


def test_edit_an_existing_object(make_napari_viewer, qtbot, stub_factory):
    img = np.zeros((2, 50, 50), np.uint8)
    viewer, image, w = start(make_napari_viewer, qtbot, img, stub_factory)
    viewer.dims.set_current_step(0, 0)
    wait_embedded(qtbot, w)
    w.labels.data[0, 10:20, 10:20] = 5
    w.labels.data[0, 40:45, 40:45] = 7
    w.labels.data[1, 10:20, 10:20] = 5
    engine = stub_factory.engines["a"]
    w.labels.selected_label = 5
    w.edit_label()
    settle(qtbot, w)
    request = engine.decode_calls[-1][1]
    assert request.mask_input is not None and request.box.tolist() == [10, 10, 20, 20]
    w.points.add([0, 30, 30])  # a point to fix it
    settle(qtbot, w)
    assert engine.decode_calls[-1][1].point_coords.tolist() == [[30, 30]]
    w.select_candidate(2)
    change = w.commit()
    assert change.object_id == 5
    new = disc((50, 50), 30, 30, STUB_RADII[2])
    assert np.array_equal(w.labels.data[0] == 5, new & ~(w.labels.data[0] == 7))
    assert (w.labels.data[0] == 7).sum() == 25  # other object kept
    assert (w.labels.data[1] == 5).sum() == 100  # other slice kept
    w.labels.undo()
    assert (w.labels.data[0] == 5).sum() == 100
    w.edit_label(9)  # not on this slice: said, nothing changes
    assert "not on slice 0" in w.status.text() and (w.labels.data[0] == 5).sum() == 100
    wait_idle(qtbot, w)


def test_other_model_or_image_never_wipes_labels(make_napari_viewer, qtbot, stub_factory):
    img = np.zeros((30, 30), np.uint8)
    viewer, image, w = start(make_napari_viewer, qtbot, img, stub_factory)
    w.points.add([15, 15])
    settle(qtbot, w)
    w.commit()
    before = w.labels.data.copy()
    labels_layer = w.labels
    w.points.add([5, 5])  # uncommitted candidates on screen when the model changes
    settle(qtbot, w)
    w.load_model("b")
    qtbot.waitUntil(lambda: w.engine is stub_factory.engines.get("b"), timeout=TIMEOUT_MS)
    wait_embedded(qtbot, w)
    assert settle(qtbot, w) is not None  # the prompt is decoded again by the new model
    assert stub_factory.engines["b"].decode_calls
    other = viewer.add_image(np.ones((20, 20), np.uint8), name="other")
    w.set_image(other)
    assert w.labels is not labels_layer and w.labels.data.shape == (20, 20)
    w.set_image(image)
    assert w.labels is labels_layer
    assert np.array_equal(labels_layer.data, before)
    wait_idle(qtbot, w)


def test_rgb_and_4d_images(make_napari_viewer, qtbot, stub_factory):
    rgb = np.random.default_rng(2).integers(0, 255, (30, 40, 3)).astype(np.uint8)
    viewer, image, w = start(make_napari_viewer, qtbot, rgb, stub_factory, rgb=True)
    assert w.labels.data.shape == (30, 40) and w.points.ndim == 2
    w.points.add([15, 20])
    assert settle(qtbot, w).masks.shape == (3, 30, 40)
    wait_idle(qtbot, w)

    tzyx = np.zeros((2, 3, 16, 16), np.uint16)
    layer4 = viewer.add_image(tzyx, name="tzyx")
    w.set_image(layer4)
    w.load_model("a")
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_current_step(1, 2)
    qtbot.waitUntil(lambda: w.session.slice_index == (1, 2), timeout=TIMEOUT_MS)
    wait_embedded(qtbot, w)
    assert w.current_slice() == (1, 2) and "axis 0 = 1, axis 1 = 2: ready" in w.status.text()
    w.points.add([1, 2, 8, 8])
    assert settle(qtbot, w) is not None
    w.commit()
    assert w.labels.data[1, 2].any() and not w.labels.data[0].any()
    wait_idle(qtbot, w)


def test_errors_become_notifications_and_keep_the_drawing(make_napari_viewer, qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr("napari_sam.widgets.hub.show_error", shown.append)
    engine = StubEngine(fail=MemoryError("out of memory"))

    def factory(name, device, precision):
        if name == "y":
            raise OSError("download failed")
        return engine

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((20, 20), np.uint8))
    w = AnnotatorWidget(viewer, engine_factory=factory, autoload=False)
    viewer.window.add_dock_widget(w)
    w.set_image(image)
    w.points.add([5, 5])
    w.load_model("x")
    qtbot.waitUntil(lambda: bool(shown), timeout=TIMEOUT_MS)
    wait_idle(qtbot, w)
    assert "out of memory" in shown[0]
    assert len(w.points.data) == 1  # nothing drawn is lost

    w.load_model("y")
    qtbot.waitUntil(lambda: len(shown) >= 2, timeout=TIMEOUT_MS)
    assert "download failed" in shown[1]
    # The chooser shows the model really in use, not the one that failed.
    assert w.models.model_combo.currentText() == "x" and "Still using x" in w.status.text()
    wait_idle(qtbot, w)


def test_save_and_reopen_keeps_labels_and_scale(make_napari_viewer, qtbot, stub_factory, tmp_path):
    stack = np.zeros((3, 20, 24), np.uint16)
    viewer, image, w = start(make_napari_viewer, qtbot, stack, stub_factory, scale=(2.0, 0.5, 0.25))
    viewer.dims.set_current_step(0, 0)
    wait_embedded(qtbot, w)
    w.points.add([0, 10, 12])
    settle(qtbot, w)
    w.commit()
    path = tmp_path / "nuclei.labels.tif"
    viewer.layers.selection = {w.labels}
    written = viewer.layers.save(str(path), selected=True, plugin="napari-sam-annotator")
    assert written and path.exists()
    reopened = viewer.open(str(path), plugin="napari-sam-annotator")[0]
    assert reopened._type_string == "labels"
    assert np.array_equal(reopened.data, w.labels.data)
    np.testing.assert_allclose(reopened.scale, (2.0, 0.5, 0.25))
    wait_idle(qtbot, w)


def test_a_reopened_annotator_takes_over_the_existing_layers(make_napari_viewer, qtbot, stub_factory):
    img = np.zeros((40, 40), np.uint8)
    viewer, image, w = start(make_napari_viewer, qtbot, img, stub_factory)
    w.points.add([20, 20])
    settle(qtbot, w)
    w.commit()
    labels = w.labels.data.copy()
    old_session, old_points, old_labels = w.session, w.points, w.labels
    w.shutdown()
    wait_idle(qtbot, w)
    assert old_session.closed
    w2 = AnnotatorWidget(viewer, engine_factory=stub_factory, autoload=False)
    viewer.window.add_dock_widget(w2, name="SAM Annotator 2")
    w2.set_image(image)
    w2.load_model("a")
    wait_embedded(qtbot, w2)
    assert w2.points is old_points and w2.labels is old_labels  # found again, not duplicated
    assert np.array_equal(w2.labels.data, labels)  # never wiped
    w2.points.add([10, 10])  # the closed widget must not react (nor fail)
    assert settle(qtbot, w2) is not None and old_session.candidates() is None
    assert w2.commit().object_id == 2
    wait_idle(qtbot, w2)


def test_cancel_stops_waiting_and_keeps_what_was_drawn(make_napari_viewer, qtbot):
    gate = threading.Event()
    engine = StubEngine(model_id="slow", gate=gate)
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((30, 30), np.uint8))
    w = AnnotatorWidget(viewer, engine_factory=lambda *a: engine, autoload=False)
    viewer.window.add_dock_widget(w)
    w.set_image(image)
    w.load_model("slow")
    qtbot.waitUntil(lambda: w.session.embedding_wanted, timeout=TIMEOUT_MS)
    assert w.cancel_button.isEnabled()
    w.points.add([15, 15])
    w.cancel_button.click()
    assert "cancelled" in w.status.text()
    gate.set()
    wait_idle(qtbot, w)
    assert w.current_candidates() is None and not w.session.embedding_ready  # the cancelled result is not shown
    assert not w.cancel_button.isEnabled() and len(w.points.data) == 1
    # The finished embedding was kept: showing the image again decodes at once, without the encoder.
    w.session.show_slice(())
    assert settle(qtbot, w) is not None and len(engine.embed_calls) == 1


def test_moving_and_removing_points_decode_again(make_napari_viewer, qtbot, stub_factory):
    img = np.zeros((40, 40), np.uint8)
    viewer, image, w = start(make_napari_viewer, qtbot, img, stub_factory)
    engine = stub_factory.engines["a"]
    w.points.add([10, 10])
    w.points.add([20, 25])
    settle(qtbot, w)
    moved = np.array(w.points.data)
    moved[1] = [30, 5]
    w.points.data = moved  # what dragging a point ends with
    settle(qtbot, w)
    assert engine.decode_calls[-1][1].point_coords.tolist() == [[10, 10], [5, 30]]
    assert engine.decode_calls[-1][1].mask_input is None  # a moved point invalidates the fed-back logits
    w.points.selected_data = {0}
    w.points.remove_selected()
    settle(qtbot, w)
    assert engine.decode_calls[-1][1].point_coords.tolist() == [[5, 30]]
    w.points.selected_data = {0}
    w.points.remove_selected()
    settle(qtbot, w)
    assert w.current_candidates() is None and not any(c.data.any() for c in w.candidates)


def test_the_decoder_is_prepared_for_each_slice_shown_before_its_first_click(make_napari_viewer, qtbot):
    stack = np.stack([np.full((30, 40), v, np.uint8) for v in (10, 20, 30)])
    engine = StubEngine()
    viewer, image, w = start(make_napari_viewer, qtbot, stack, lambda *a: engine)
    w.session.prefetch_enabled = False
    first = w.current_slice()[0]
    tag = lambda z: float(stack[z].mean())  # noqa: E731 (the stub's embedding of slice z)
    qtbot.waitUntil(lambda: engine.prepared[-1:] == [tag(first)], timeout=TIMEOUT_MS)  # when its embedding arrived
    assert engine.decode_calls == []  # prepared, not decoded: no click yet
    other = (first + 1) % 3
    viewer.dims.set_current_step(0, other)
    qtbot.waitUntil(lambda: engine.prepared[-1] == tag(other), timeout=TIMEOUT_MS)
    viewer.dims.set_current_step(0, first)  # in memory: prepared again
    qtbot.waitUntil(lambda: engine.prepared[-1] == tag(first), timeout=TIMEOUT_MS)
    assert len(engine.embed_calls) == 2
    wait_idle(qtbot, w)


def test_a_failing_prepare_does_not_stop_the_clicks(make_napari_viewer, qtbot):
    class FailingPrepare(StubEngine):
        def prepare(self, embedding):
            super().prepare(embedding)
            raise RuntimeError("prepare broke")

    engine = FailingPrepare()
    img = np.random.default_rng(2).integers(0, 255, (30, 40)).astype(np.uint8)
    viewer, image, w = start(make_napari_viewer, qtbot, img, lambda *a: engine)
    qtbot.waitUntil(lambda: len(engine.prepared) == 1, timeout=TIMEOUT_MS)
    w.points.add([15, 20])
    assert settle(qtbot, w) is not None and w.current_candidates().count == 3
    wait_idle(qtbot, w)


def test_removing_the_image_while_it_embeds_drops_the_work_and_keeps_the_labels(make_napari_viewer, qtbot):
    gate = threading.Event()
    engine = StubEngine(model_id="slow", gate=gate)
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((3, 30, 30), np.uint8), name="cells")
    w = AnnotatorWidget(viewer, engine_factory=lambda *a: engine, autoload=False)
    viewer.window.add_dock_widget(w)
    w.set_image(image)
    w.load_model("slow")
    qtbot.waitUntil(lambda: w.session.embedding_wanted, timeout=TIMEOUT_MS)
    session, labels = w.session, w.labels
    labels.data[1, 2:5, 2:5] = 3
    viewer.layers.remove(image)
    assert session.closed and w.session is None and w.image_combo.count() == 0
    gate.set()
    assert session.join(10)
    qtbot.wait(50)
    assert not session.embedding_ready and "Add an image layer" in w.status.text()
    assert labels in viewer.layers and (labels.data == 3).sum() == 9  # the user's labels stay


def test_two_docks_on_one_image_share_one_session_and_model(make_napari_viewer, qtbot, stub_factory):
    viewer, image, w = start(make_napari_viewer, qtbot, np.zeros((4, 30, 30), np.uint8), stub_factory)
    w2 = AnnotatorWidget(viewer, engine_factory=None, autoload=False)
    viewer.window.add_dock_widget(w2, name="SAM Annotator 2")
    w2.set_image(image)
    assert w2.session is w.session and w2.engine is w.engine and w2.points is w.points
    assert stub_factory.loads == ["a"]  # loaded once
    w.points.add([1, 10, 10])
    assert settle(qtbot, w2) is not None and w2.candidate_buttons.button(2).text() == "3: 0.93"
    w2.shutdown()  # one dock closing leaves the other working
    assert not w.session.closed
    w.points.add([1, 20, 20])
    assert settle(qtbot, w) is not None


def test_a_box_without_area_is_no_prompt(make_napari_viewer, qtbot, stub_factory):
    img = np.zeros((40, 40), np.uint8)
    viewer, image, w = start(make_napari_viewer, qtbot, img, stub_factory)
    w.boxes.add_rectangles(np.array([[20, 30], [20, 30]]))  # what a click of the rectangle tool gives
    assert settle(qtbot, w) is None and w.session.status.level != "error"
    w.boxes.add_rectangles(np.array([[50, 50], [60, 60]]))  # beside the image
    assert settle(qtbot, w) is None
    w.boxes.add_rectangles(np.array([[10, 10], [30, 20]]))
    assert settle(qtbot, w) is not None
