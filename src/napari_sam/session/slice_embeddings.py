"""The embeddings a session waits for: the slice shown first, its neighbours when the user pauses.

Each slice's embedding comes from the workspace's lookup chain (memory ->
disk -> encoder, :mod:`.embeddings`) in the session's "embedding" lane. The
key of a slice (its pixels' fingerprint and intensity rule) is remembered once
computed, so coming back to a slice finds its embedding in memory at once,
without reading or hashing the plane again; a plane whose key is not known
yet is looked up in the background. A job for a slice the user has left is
dropped unless it already runs (it then finishes and is kept for later).
"""

from __future__ import annotations

from collections.abc import Callable

from ..embeddings import COMPUTED, FROM_DISK, plane_and_key
from .work import Job, Lane, Post

#: Slices on each side embedded ahead after the user paused (3D stacks).
PREFETCH_DEPTH = 2

ORIGIN_WORDS = {COMPUTED: "embedded", FROM_DISK: "embedding read from disk"}


class SliceEmbeddings:
    """``on_ready(s, engine, embedding, origin)`` and ``on_failed(s, engine, error, user_waits)`` run at home."""

    def __init__(self, planes, workspace, post: Post, on_ready: Callable, on_failed: Callable,
                 on_activity: Callable[[], None]) -> None:
        self.planes, self.workspace = planes, workspace
        self._on_ready, self._on_failed, self._on_activity = on_ready, on_failed, on_activity
        self.lane = Lane("embedding", post, on_busy=lambda _: on_activity(), background=True)
        self._keys: dict[tuple, object] = {}  # (slice, model_id, precision) -> EmbeddingKey

    @property
    def user_waiting(self) -> bool:
        return self.lane.user_is_waiting

    def forget_keys(self, planes) -> None:
        """The image's pixels changed: no remembered key is valid any more."""
        self.planes, self._keys = planes, {}

    def _known(self, s, engine):
        key = self._keys.get((s, engine.model_id, engine.precision))
        return self.workspace.embeddings.in_memory(key) if key is not None else None

    def want(self, s, engine):
        """The embedding of slice ``s`` if it is in memory; else None, and it is fetched in the background."""
        embedding = self._known(s, engine)
        if embedding is not None:
            return embedding
        running = self.lane.running
        self.lane.cancel(lambda job: job.user_waits and job is not running)  # the user moved on
        if running is not None and running.tag == (s, engine) and not running.cancelled:
            running.user_waits = True  # a prefetch of this very slice: now someone waits for it
        else:
            self.lane.submit(self._job(s, engine, user_waits=True))
        self._on_activity()
        return None

    def _job(self, s, engine, user_waits: bool) -> Job:
        planes, source, use_store = self.planes, self.workspace.embeddings, self.workspace.use_store_for(self.planes)

        def fetch():
            plane, key = plane_and_key(planes, s, engine)
            return key, source.get(key, plane, engine, planes.intensity_range(), use_store=use_store)

        def done(value):
            key, found = value
            self._keys[(s, engine.model_id, engine.precision)] = key
            self._on_ready(s, engine, found.embedding, ORIGIN_WORDS.get(found.origin, "embedding in memory"))
            self._on_activity()

        def failed(err):
            self.lane.cancel(lambda job: not job.user_waits)  # waiting prefetches would fail the same way
            self._on_failed(s, engine, err, user_waits)
            self._on_activity()

        return Job(fetch, done=done, failed=failed, tag=(s, engine), user_waits=user_waits)

    def neighbours(self, s) -> list[tuple[int, ...]]:
        """Slices next to ``s`` along the last leading axis, nearest first."""
        if not s:
            return []
        out, n = [], self.planes.lead_shape[-1]
        for d in range(1, PREFETCH_DEPTH + 1):
            for sign in (1, -1):
                z = s[-1] + sign * d
                if 0 <= z < n:
                    out.append((*s[:-1], z))
        return out

    def prefetch(self, s, engine) -> None:
        """Embed the neighbours of ``s`` that are not in memory; never while other embedding work waits."""
        if self.lane.is_busy:
            return
        for n in self.neighbours(s):
            if self._known(n, engine) is None:
                self.lane.submit(self._job(n, engine, user_waits=False))
        self._on_activity()

    def cancel(self, engine=None) -> int:
        """Drop the waiting jobs (of ``engine`` only, when given); a running one finishes and is kept."""
        return self.lane.cancel(None if engine is None else (lambda job: job.tag[1] is engine))
