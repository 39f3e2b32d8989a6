"""Unhooking a closed widget's callbacks from napari's events."""


def disconnect_quietly(emitter, slot) -> None:
    """Disconnect ``slot`` from ``emitter``; fine if it was never connected or the emitter is gone.

    A widget that closes disconnects everything it connected, but some of its
    layers or the viewer itself may already be closed (napari raises
    TypeError/ValueError for an unknown slot, Qt RuntimeError for a deleted object).
    """
    try:
        emitter.disconnect(slot)
    except (TypeError, ValueError, RuntimeError):
        pass
