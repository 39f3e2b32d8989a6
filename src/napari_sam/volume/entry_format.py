"""The file of one cached slice embedding: its layout, and how it is written and checked.

Layout: ``MAGIC`` (8 bytes), header length (uint32, little endian), UTF-8
JSON header, zero padding to a multiple of 16 bytes, float16 payload, and a
16-byte blake2b digest of everything before it. The digest covers the header
as well as the payload: an entry whose sizes or identity were changed
(damage, or an edit) reads as damaged, never as another valid entry.

The header repeats the entry's identity in full (the fields of
:class:`~napari_sam.volume.store.SliceKey` and :data:`FORMAT_VERSION`) and
holds the original and resized image sizes needed to decode prompts.

Features are stored as float16 (half the size of float32; decoding is not
affected beyond ~1e-3 relative), clipped to float16's range.
"""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import torch

#: Version of the on-disk layout and of what an entry means; entries of another version are ignored.
#: 2: the digest covers the header too (version 1 checked the payload only).
#: 3: the precision the embedding was computed in is part of its identity.
FORMAT_VERSION = 3
MAGIC = b"NSAMEMB\x00"
_HEADER_LEN = struct.Struct("<I")
_ALIGN = 16
_DIGEST_BYTES = 16
# float16 cannot hold values beyond this; clipping keeps an outlier from becoming inf.
_F16_MAX = float(np.finfo(np.float16).max)
#: Headers are a few hundred bytes; this much is read for a quick presence check.
HEAD_READ = 8192
#: The identity fields a header must share with the key it is read for.
IDENTITY_FIELDS = ("fingerprint", "model_id", "preprocessing", "precision")


def _digest(data) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).digest()


def _float16(features: torch.Tensor) -> torch.Tensor:
    """The float16 numbers an entry holds for ``features`` (clipped to float16's range)."""
    return features.clamp(-_F16_MAX, _F16_MAX).to(torch.float16)


def as_stored(features: torch.Tensor) -> torch.Tensor:
    """``features`` with the numbers an entry gives back, in their own dtype."""
    return _float16(features).to(features.dtype)


def serialise(key, embedding) -> bytes:
    """The bytes of the entry for ``embedding`` under ``key`` (a SliceKey)."""
    features = embedding.features.detach().to("cpu", torch.float32)
    payload = _float16(features).numpy().astype("<f2").tobytes()
    header = {name: getattr(key, name) for name in IDENTITY_FIELDS}
    header.update(
        format=FORMAT_VERSION,
        original_size=list(embedding.original_size),
        input_size=list(embedding.input_size),
        shape=list(features.shape),
        dtype="<f2",
        payload_bytes=len(payload),
    )
    head = json.dumps(header, sort_keys=True).encode()
    start = len(MAGIC) + _HEADER_LEN.size + len(head)
    padding = b"\x00" * (-start % _ALIGN)
    body = b"".join((MAGIC, _HEADER_LEN.pack(len(head)), head, padding, payload))
    return body + _digest(body)


def entry_size(header: dict, payload_start: int) -> int:
    """The length of a complete entry with this header."""
    return payload_start + int(header["payload_bytes"]) + _DIGEST_BYTES


def parse_header(data: bytes) -> tuple[dict, int]:
    """The header of a stored file and where its payload starts; ValueError when unreadable.

    Only the start of the file is needed (a quick look before reading it all);
    the digest is checked by :func:`parse`.
    """
    fixed = len(MAGIC) + _HEADER_LEN.size
    if len(data) < fixed or data[: len(MAGIC)] != MAGIC:
        raise ValueError("not an embedding file (wrong signature)")
    (head_len,) = _HEADER_LEN.unpack_from(data, len(MAGIC))
    if fixed + head_len > len(data):
        raise ValueError("header cut short")
    try:
        header = json.loads(data[fixed : fixed + head_len].decode())
        shape = [int(v) for v in header["shape"]]
        if int(header["payload_bytes"]) != 2 * int(np.prod(shape)):
            raise ValueError("payload size does not fit the shape")
        if header["dtype"] != "<f2" or len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
            raise ValueError(f"unexpected layout {header['dtype']} {shape}")
        for name in ("original_size", "input_size"):
            if len(header[name]) != 2 or min(int(v) for v in header[name]) < 1:
                raise ValueError(f"bad {name}")
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"unreadable header ({err})") from None
    start = fixed + head_len
    start += -start % _ALIGN
    return header, start


def parse(data: bytes) -> tuple[dict, memoryview]:
    """Header and payload of a stored file; ValueError when the file is not a complete, intact entry."""
    header, start = parse_header(data)
    if len(data) != entry_size(header, start):
        raise ValueError(f"the file has {len(data)} bytes, a complete entry {entry_size(header, start)}")
    body = memoryview(data)[:-_DIGEST_BYTES]
    if _digest(body) != data[-_DIGEST_BYTES:]:
        raise ValueError("checksum mismatch")
    return header, body[start:]


def features_of(header: dict, payload) -> torch.Tensor:
    """The (1, C, h, w) float16 features of a parsed entry."""
    return torch.from_numpy(np.frombuffer(payload, dtype="<f2").reshape(header["shape"]).copy())


def header_matches(header: dict, key, original_size: tuple[int, int] | None = None) -> bool:
    """True when the header names ``key``'s identity (and, if given, a slice of ``original_size``)."""
    if header.get("format") != FORMAT_VERSION:
        return False
    if any(header.get(name) != getattr(key, name) for name in IDENTITY_FIELDS):
        return False
    return original_size is None or list(header.get("original_size", ())) == [int(v) for v in original_size]
