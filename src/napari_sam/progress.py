"""How long work reports progress and is asked to stop: one pair of types for the whole package.

``progress(done, total)`` is called before the first step and after each one;
``should_cancel()`` is asked between steps, and the work stops (keeping what
is done) when it returns True. The docks pass functions that reach their
progress bar and Cancel button; the command line passes a text progress bar
and Ctrl-C.
"""

from collections.abc import Callable

ProgressCallback = Callable[[int, int], None]  # (steps done, steps in total)
CancelCheck = Callable[[], bool]
