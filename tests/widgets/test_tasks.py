"""Background lanes report back in napari's main thread, errors included."""

import threading

from napari_sam.session import Job, Lane
from napari_sam.widgets.tasks import MainThreadPost


def test_results_and_errors_arrive_in_the_main_thread(qtbot):
    main = threading.get_ident()
    seen = []
    lane = Lane("test", MainThreadPost(), on_busy=lambda busy: seen.append(("busy", busy)))

    gate = threading.Event()

    workers = []

    def work(a, b):
        gate.wait(5)  # both jobs are queued before the first one ends
        workers.append(threading.get_ident())
        return a + b

    def fail():
        raise MemoryError("out of memory while embedding")

    lane.submit(Job(lambda: work(2, 3), done=lambda v: seen.append(("done", v, threading.get_ident() == main))))
    lane.submit(Job(fail, done=lambda v: seen.append("not this"), failed=lambda e: seen.append(("failed", type(e)))))
    gate.set()
    qtbot.waitUntil(lambda: ("busy", False) in seen, timeout=5000)
    # What was posted arrives in the main thread, in the order it was posted.
    assert seen == [("busy", True), ("done", 5, True), ("failed", MemoryError), ("busy", False)]
    assert workers and workers[0] != main
    assert lane.join(1.0) and not lane.is_busy


def test_nothing_is_delivered_without_an_event_loop_turn(qtbot):
    # Delivery is queued to the main thread: it happens in the event loop, never inside the worker.
    seen = []
    lane = Lane("test", MainThreadPost())
    lane.submit(Job(lambda: 1, done=lambda v: seen.append(threading.get_ident())))
    assert lane.join(5.0)
    assert seen == []  # the main thread has not processed events yet
    qtbot.waitUntil(lambda: bool(seen), timeout=5000)
    assert seen == [threading.get_ident()]
