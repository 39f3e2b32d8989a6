"""Background tasks report back in the main thread, errors included."""

import threading

import pytest

from napari_sam.widgets.tasks import Task


def test_result_then_finished_arrive_in_the_main_thread(qtbot):
    main = threading.get_ident()
    seen = []

    def work(a, b):
        seen.append(("work", threading.get_ident() != main))
        return a + b

    task = Task(
        work, 2, 3,
        on_returned=lambda v: seen.append(("returned", v, threading.get_ident() == main)),
        on_errored=lambda e: seen.append(("errored", e)),
        on_finished=lambda: seen.append(("finished", threading.get_ident() == main)),
    ).start()
    qtbot.waitUntil(lambda: any(s[0] == "finished" for s in seen), timeout=5000)
    assert seen == [("work", True), ("returned", 5, True), ("finished", True)]
    assert task.join(1.0) and not task.is_running


def test_an_exception_goes_to_on_errored_not_on_returned(qtbot):
    seen = []

    def work():
        raise MemoryError("out of memory while embedding")

    Task(work, on_returned=lambda v: seen.append("returned"), on_errored=seen.append,
         on_finished=lambda: seen.append("finished")).start()
    qtbot.waitUntil(lambda: "finished" in seen, timeout=5000)
    assert len(seen) == 2 and isinstance(seen[0], MemoryError) and seen[1] == "finished"


def test_join_waits_for_the_work(qtbot):
    gate = threading.Event()
    task = Task(gate.wait, 10).start()
    assert not task.join(0.05) and task.is_running
    gate.set()
    assert task.join(5.0)


@pytest.mark.parametrize("callback", ["on_returned", "on_finished"])
def test_nothing_is_delivered_without_an_event_loop_turn(qtbot, callback):
    # Delivery is queued to the main thread: it happens in the event loop, never inside the worker.
    seen = []
    kwargs = {callback: (lambda *a: seen.append(threading.get_ident()))}
    task = Task(lambda: 1, **kwargs).start()
    assert task.join(5.0)
    assert seen == []  # the main thread has not processed events yet
    qtbot.waitUntil(lambda: bool(seen), timeout=5000)
    assert seen == [threading.get_ident()]
