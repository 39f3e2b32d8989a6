"""Lanes of background jobs: order, replacement, cancelling, closing."""

import threading

from fakes import ManualLoop

from napari_sam.session import Job, Lane


def test_jobs_run_one_at_a_time_in_order():
    loop, seen, active = ManualLoop(), [], []
    lock = threading.Lock()

    def work(i):
        with lock:
            active.append(i)
            assert len(active) == 1  # never two at once
        threading.Event().wait(0.01)
        with lock:
            active.remove(i)
        return i

    lane = Lane("t", loop)
    for i in range(4):
        lane.submit(Job(lambda i=i: work(i), done=seen.append))
    loop.run_until(lambda: len(seen) == 4)
    assert seen == [0, 1, 2, 3]


def test_a_newer_job_replaces_the_waiting_ones_and_cancelled_jobs_report_nothing():
    loop, seen = ManualLoop(), []
    gate = threading.Event()
    lane = Lane("t", loop)
    lane.submit(Job(lambda: gate.wait(5) and "first", done=seen.append, user_waits=True))
    lane.submit(Job(lambda: "second", done=seen.append))
    lane.submit(Job(lambda: "third", done=seen.append, user_waits=False), replace_waiting=True)
    assert [j.fn() for j in lane.waiting] == ["third"]
    assert lane.user_is_waiting
    assert lane.cancel(lambda job: job.user_waits) == 1  # the running one: it finishes, reports nothing
    gate.set()
    loop.run_until(lambda: not lane.is_busy)
    loop.run_pending()
    assert seen == ["third"] and not lane.user_is_waiting


def test_a_closed_lane_starts_nothing():
    loop, seen = ManualLoop(), []
    lane = Lane("t", loop)
    lane.close()
    job = lane.submit(Job(lambda: 1, done=seen.append))
    assert job.cancelled and not lane.is_busy
    loop.run_pending(wait=0.05)
    assert seen == []


def test_a_lane_keeps_one_worker_thread_and_closing_ends_it():
    # A new thread per job made each decode ~30 ms slower (its compute threads and buffers made anew).
    loop, seen = ManualLoop(), []
    lane = Lane("t", loop)
    for i in range(3):  # one after the other, the lane idle in between
        lane.submit(Job(threading.get_ident, done=seen.append))
        loop.run_until(lambda: len(seen) == i + 1 and not lane.is_busy)
        assert lane.join(5)
    assert len(seen) == 3 and len(set(seen)) == 1 and seen[0] != threading.get_ident()
    worker = next(t for t in threading.enumerate() if t.ident == seen[0])
    assert worker.name.startswith("napari-sam t") and not worker.daemon  # Python waits for it at exit
    lane.close()
    worker.join(5)
    assert not worker.is_alive()


def test_a_post_that_fails_after_shutdown_is_swallowed():
    def gone(callback, value):
        raise RuntimeError("wrapped C/C++ object has been deleted")

    lane = Lane("t", gone)
    lane.submit(Job(lambda: 1, done=lambda v: None))
    assert lane.join(5)


def test_decodes_go_inline_while_quick_and_probe_again_from_the_background():
    from napari_sam.session.work import DecodeTimer

    timer = DecodeTimer(quick_s=0.04, probe_every=3)
    assert timer.inline()  # the first one measures
    timer.estimate = 0.02
    assert timer.inline()
    timer.estimate = 0.3  # a slow machine
    assert [timer.inline() for _ in range(6)] == [False, False, True, False, False, True]
    timer.estimate = None
    timer.timed(lambda: None)
    assert timer.estimate is not None and timer.estimate < 0.04


def test_by_default_a_decode_as_slow_as_an_avx2_laptops_stays_inline():
    from napari_sam.session.work import DecodeTimer

    timer = DecodeTimer()
    timer.estimate = 0.054  # vit_b at 512 px on a 2-core AVX2 CPU under software OpenGL: 33-60 ms
    assert timer.inline()
    timer.estimate = 0.09  # slower than a click may take: the background keeps napari drawing
    assert not timer.inline()


def test_background_lanes_run_at_a_lower_priority():
    import os

    import pytest

    if not hasattr(os, "getpriority"):
        pytest.skip("no per-thread priorities on this system")
    loop, seen = ManualLoop(), []
    lane = Lane("t", loop, background=True)
    lane.submit(Job(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), done=seen.append))
    plain = Lane("t", loop)
    plain.submit(Job(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), done=seen.append))
    loop.run_until(lambda: len(seen) == 2)
    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen == [min(here + 10, 19), here]
