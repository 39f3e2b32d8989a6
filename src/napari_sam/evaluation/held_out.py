"""Which labelled images are held out from training, by a rule that does not move between rounds.

An image is held out when the SHA-256 of its name, read as a number in [0, 1),
is below the held-out share: the decision depends on the name alone, so an
image held out in one round stays held out in every later round, whatever
images are added, and an image once trained on never becomes a held-out one.
When no name falls below the share, the name with the smallest hash is held
out, so at least one image always is (that choice can only move to a newly
added image, never to one trained on before).
"""

from __future__ import annotations

import hashlib
import math


def name_fraction(name: str) -> float:
    """The name's place in [0, 1): the first 8 bytes of its SHA-256 (UTF-8) as a fraction."""
    digest = hashlib.sha256(str(name).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_share(share) -> float:
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share) or not 0 < share < 1:
        raise ValueError(f"--held-out must be a share of the labelled images between 0 and 1 (e.g. 0.2), got {share!r}")
    return float(share)


def held_out_names(names, share: float) -> list[str]:
    """The names (sorted) held out at ``share`` (0 < share < 1); at least one when there is any name."""
    share = check_share(share)
    names = sorted(set(str(n) for n in names))
    if not names:
        return []
    held = [n for n in names if name_fraction(n) < share]
    return held or [min(names, key=name_fraction)]


def split_names(names, share: float) -> tuple[list[str], list[str]]:
    """(names to train on, held-out names), both sorted."""
    held = set(held_out_names(names, share))
    return sorted(set(str(n) for n in names) - held), sorted(held)
