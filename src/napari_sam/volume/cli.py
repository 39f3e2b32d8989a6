"""``napari-sam-annotator embed``: fill the embedding cache for a stack without a display.

Useful on a GPU node or overnight: the annotator then opens the same stack
and finds every slice's embedding in the cache. Usage::

    napari-sam-annotator embed stack.tif --model vit_t [--cache DIR] [--device cuda] [--precision bf16]

The stack is a 3D TIFF (slices, rows, columns) or a .npy file; for images
with more axes (t, z, y, x) every z-stack is embedded (``--axis`` picks the
axis walked through, as in the annotator). A last axis of 1 to 4 entries
beside many rows holds channels, not columns: ``--rgb`` uses 3 or 4 of them
as colours, ``--channel N`` embeds one. Slices already in the cache are not
computed again, so an interrupted run (Ctrl-C) resumes where it stopped.

The main command line calls :func:`add_embed_command` to add the sub-command;
its handler is :func:`run_embed`.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from ..cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, reporter
from ..cli import one_line as _one_line


def add_embed_command(subparsers) -> argparse.ArgumentParser:
    """Add the ``embed`` sub-command to ``subparsers`` (from ``ArgumentParser.add_subparsers()``).

    The sub-parser's defaults hold ``func=run_embed``: call ``args.func(args)``.
    """
    parser = subparsers.add_parser(
        "embed",
        help="compute and cache the SAM embeddings of every slice of a stack",
        description="Compute the SAM embedding of every slice of a 3D stack and keep them in the embedding "
        "cache, so the annotator loads them instead of computing them. Slices already cached are skipped.",
    )
    parser.add_argument("stack", type=Path, help="a 3D stack: TIFF (.tif/.tiff) or NumPy (.npy) file")
    parser.add_argument("--model", default="vit_t", help="model name (e.g. vit_t, vit_b) or checkpoint file (default: vit_t)")
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache folder (default: the per-user cache)")
    parser.add_argument(
        "--cache-limit-gb", type=float, default=None,
        help="size limit of the cache in GB; the least recently used embeddings are removed beyond it (default: 5)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps (default: auto)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8"),
                        help="image encoder precision; auto: the fastest that passed quality on this machine (measured once)")
    parser.add_argument(
        "--axis", type=int, default=-3,
        help="for images with more than 3 axes: the axis to walk through (default -3, z of t,z,y,x)",
    )
    parser.add_argument("--rgb", action="store_true", help="slices are RGB(A): the last axis holds the colours")
    parser.add_argument(
        "--channel", type=int, default=None,
        help="for images whose last axis holds channels (e.g. z, y, x, 2): embed this channel (0, 1, ...)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.set_defaults(func=run_embed)
    return parser


def run_embed(args: argparse.Namespace, out=None) -> int:
    """Handle ``embed``; prints progress and a summary to ``out`` (default stderr) and returns the exit code."""
    say = reporter(out)
    from ..model import CheckpointError, DownloadError, SamPredictor, load_model
    from .embed_stack import StackEmbeddings, iter_stack_embeddings
    from .stack import check_stack, stack_through
    from .store import DEFAULT_MAX_BYTES, CacheWriteError, EmbeddingStore

    try:
        image = _pick_channel(read_stack_file(args.stack), args.channel, args.rgb)
        stacks = list(_stacks_of(image, args.axis, args.rgb, check_stack, stack_through))
        limit = DEFAULT_MAX_BYTES if args.cache_limit_gb is None else _gigabytes(args.cache_limit_gb)
        store = EmbeddingStore(args.cache, max_bytes=limit)
    except (ValueError, TypeError, OSError) as err:
        say(f"error: {_one_line(err)}")
        return EXIT_BAD_INPUT

    try:
        model = load_model(args.model, device=args.device)
        predictor = SamPredictor(model, precision=args.precision)
    except (ValueError, TypeError, CheckpointError, DownloadError) as err:
        say(f"error: {_one_line(err)}")
        return EXIT_BAD_INPUT
    except (OSError, MemoryError) as err:
        say(f"error: cannot load the model {args.model}: {_one_line(err) or type(err).__name__}")
        return EXIT_FAILED

    total = sum(len(s) for _, s in stacks)
    say(f"embedding {total} slices of {args.stack} with {model.model_name} on {predictor.device} into {store.folder}")
    computed = loaded = 0
    start = time.perf_counter()
    where = ""
    try:
        for where, stack in stacks:
            embeddings = StackEmbeddings(predictor, stack, store, rgb=args.rgb, cache_errors="raise", keep_in_memory=False)
            for item in iter_stack_embeddings(embeddings):
                computed += item.computed
                loaded += not item.computed
                if not args.quiet:
                    how = "computed" if item.computed else "from the cache"
                    say(f"[{computed + loaded}/{total}] {where}slice {item.index}: {how}")
    except KeyboardInterrupt:
        say(f"interrupted after {computed + loaded} of {total} slices; they are saved: run again to resume")
        return EXIT_INTERRUPTED
    except (ValueError, TypeError) as err:
        say(f"error: {where}{_one_line(err)}")
        return EXIT_BAD_INPUT
    except CacheWriteError as err:
        say(f"error: {_one_line(err)}")
        return EXIT_FAILED
    except (OSError, MemoryError) as err:
        what = "out of memory" if isinstance(err, MemoryError) else "cannot read the stack"
        say(f"error: {where}{what}: {_one_line(err) or type(err).__name__}")
        return EXIT_FAILED
    seconds = time.perf_counter() - start
    say(
        f"done: {total} slices, {computed} computed, {loaded} from the cache in {seconds:.1f} s; "
        f"cache {store.folder} holds {store.usage_bytes() / 1e6:.1f} MB"
    )
    return EXIT_OK


def read_stack_file(path) -> np.ndarray:
    """A stack from a TIFF or .npy file (memory-mapped where possible); clear errors otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"the file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a TIFF (.tif/.tiff) or NumPy (.npy) file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"cannot read {path} as a NumPy array: {err}") from None
    if suffix in (".tif", ".tiff"):
        import tifffile

        try:
            return tifffile.imread(path)
        except (ValueError, tifffile.TiffFileError) as err:
            raise ValueError(f"cannot read {path} as a TIFF: {err}") from None
    raise ValueError(f"{path} is neither a TIFF (.tif/.tiff) nor a NumPy (.npy) file")


def _pick_channel(image, channel, rgb):
    """``image[..., channel]`` for --channel; without it, refuse a last axis that holds channels."""
    from .stack import looks_like_channels

    if channel is None:
        if not rgb and image.ndim >= 3 and looks_like_channels(image.shape):
            n = image.shape[-1]
            raise ValueError(
                f"the last axis of the image of shape {tuple(image.shape)} holds {n} entries beside "
                f"{image.shape[-2]} rows: it looks like {n} channels, not image columns. Pass --channel N "
                f"(0 to {n - 1}) to embed one channel" + (", or --rgb for colour slices" if n in (3, 4) else "")
            )
        return image
    if rgb:
        raise ValueError("--channel and --rgb exclude each other: --rgb uses all colour channels")
    n = image.shape[-1]
    if not 0 <= channel < n:
        raise ValueError(f"--channel {channel} does not exist: the last axis of {tuple(image.shape)} has channels 0 to {n - 1}")
    return image[..., channel]


def _stacks_of(image, axis, rgb, check_stack, stack_through):
    """(label, 3D stack) for every stack of ``image`` along ``axis``."""
    plane_axes = 3 if rgb else 2
    ndim = image.ndim
    if ndim <= plane_axes + 1:
        yield "", check_stack(image, rgb=rgb)
        return
    # Positions of every leading axis other than the walked one.
    lead = ndim - plane_axes
    walked = axis % ndim if -ndim <= axis < ndim else axis
    others = [a for a in range(lead) if a != walked]
    for combo in itertools.product(*(range(image.shape[a]) for a in others)):
        position = [0] * ndim
        for a, i in zip(others, combo):
            position[a] = i
        stack, _ = stack_through(image, position, axis=axis, rgb=rgb)
        label = ", ".join(f"axis {a} = {i}" for a, i in zip(others, combo))
        yield f"({label}) ", check_stack(stack, rgb=rgb)


def _gigabytes(value: float) -> int:
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"--cache-limit-gb must be a positive number, got {value}")
    return int(value * 1e9)
