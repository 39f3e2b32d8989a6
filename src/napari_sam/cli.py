"""The ``napari-sam-annotator`` command.

Each subcommand has its own ``_add_<name>`` (arguments) and ``_run_<name>``
(work) function. Expected problems (bad files, wrong sizes, an existing
output, no memory) end with one line on stderr and a non-zero exit status,
never a traceback; so does an unexpected error, whose traceback ``--debug``
shows.
"""

from __future__ import annotations

import argparse
import sys
import warnings

PROG = "napari-sam-annotator"
# Exit statuses shared by the commands: 2 = nothing was tried (a bad option or file).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def one_line(message) -> str:
    """A message on one line: error texts may carry newlines (tracebacks, tifffile's reprs)."""
    return " ".join(str(message).split())


_one_line = one_line


def reporter(out=None):
    """``say(text)``: one flushed line on ``out`` (default stderr), the way every command reports."""
    stream = sys.stderr if out is None else out

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    return say


def _add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune a SAM model on generated nuclei or your own labelled images",
        description=(
            "Train SAM with simulated clicks and boxes. --data generated uses synthetic nuclei; a folder DIR "
            "must hold DIR/images/NAME.tif and DIR/labels/NAME.tif (integer labels, 0 = background). "
            "An interrupted run (Ctrl-C or SIGTERM) is saved next to --out as OUT.partial and continued by "
            "running the same command again."
        ),
    )
    p.add_argument("--data", default="generated", help="'generated' or a folder with images/ and labels/ (default generated)")
    p.add_argument("--init", default="none",
                   help="weights to start from: 'none' (random), a model name (demo, vit_t, vit_b, ...) or a checkpoint file")
    p.add_argument("--size", default=None,
                   help="model size: demo, tiny, vit_t, vit_b, ... (default: the size of --init, or demo)")
    p.add_argument("--out", required=True, help="file to write the trained model to (e.g. model.pt)")
    p.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    p.add_argument("--batch-size", type=int, default=4, help="images per step (default 4)")
    p.add_argument("--objects", type=int, default=8, help="objects prompted per image and step (default 8)")
    p.add_argument("--rounds", type=int, default=3, help="prompt rounds per object: first prompt + corrective clicks (default 3)")
    p.add_argument("--lr", type=float, default=4e-4, help="peak learning rate (default 4e-4)")
    p.add_argument("--position-scale", type=float, default=1.0,
                   help="for a new model (--init none): frequency scale of the click position code; "
                        "larger suits small objects (default 1, as SAM)")
    p.add_argument("--full-size-loss", type=float, default=0.0, metavar="FRACTION",
                   help="share of the last steps whose loss compares the masks upsampled to the input size, as the "
                        "annotator shows them, instead of at the decoder's 4x lower resolution: closer outlines of "
                        "small objects, but about 25 %% more time per step for the demo size and 16x the mask "
                        "memory at 1024 px (default 0)")
    p.add_argument("--held-out", type=float, default=0.0, metavar="FRACTION",
                   help="with a folder --data: hold out this share of the labelled images (chosen by a hash of "
                        "their names, so the same ones in every round; at least one), train on the rest, and score "
                        "the model before and after on them: one-click IoU, clicks per object (NoC@90), accepted "
                        "proposals, automatic mSA; the automatic settings tuned on them go into the model "
                        "(default 0: none held out)")
    p.add_argument("--replay", type=float, default=0.0, metavar="FRACTION",
                   help="when fine-tuning on your images: draw this share of the samples from generated nuclei, "
                        "so the model keeps what it knew (default 0)")
    p.add_argument("--crowded", type=float, default=0.0, metavar="FRACTION",
                   help="draw this share of the generated nuclei crowded: many small nuclei pressed against "
                        "brighter neighbours (default 0)")
    p.add_argument("--report", default=None, metavar="FILE",
                   help="write the held-out scores before and after, the held-out names, the tuned automatic "
                        "settings, the steps and the training minutes to this JSON file at the end")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    # napari_sam.model.device.TRAINING_PRECISIONS, spelt out: the parser is built without importing torch.
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="compute in bf16 (weights stay float32) or fp32; auto: bf16 where the GPU or CPU "
                        "does it natively (AVX512-BF16/AMX), else fp32 (default auto)")
    p.add_argument("--save-every", type=int, default=50, help="steps between resumable checkpoints (default 50)")
    p.add_argument("--log-every", type=int, default=10, help="steps between progress lines (default 10)")
    p.add_argument("--half", action="store_true", help="store the final weights in float16 (half the file size)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue the unfinished run (error if there is none)")
    resume.add_argument("--restart", action="store_true", help="discard an unfinished run and start again")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from napari_sam.model.checkpoint import CheckpointError
    from napari_sam.model.zoo import DownloadError
    from napari_sam.training import TrainingInterrupted, TrainOptions, train

    options = TrainOptions(
        out=args.out, data=args.data, size=args.size, init=args.init, steps=args.steps,
        batch_size=args.batch_size, objects_per_image=args.objects, rounds=args.rounds, lr=args.lr,
        seed=args.seed, device=args.device, precision=args.precision, overwrite=args.overwrite, resume=args.resume,
        restart=args.restart, half=args.half, save_every=args.save_every, log_every=args.log_every,
        position_scale=args.position_scale, full_size_loss=args.full_size_loss,
        held_out=args.held_out, report=args.report, replay=args.replay,
        crowded=args.crowded,
    )
    try:
        train(options, log=lambda line: print(line, flush=True))
    except TrainingInterrupted as err:
        print(f"{PROG} train: {_one_line(err)}", file=sys.stderr)
        return 128 + int(err.signal_number)  # 130 after Ctrl-C, 143 after SIGTERM
    except (ValueError, TypeError, OSError, CheckpointError, DownloadError) as err:
        print(f"{PROG} train: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except MemoryError as err:
        print(f"{PROG} train: error: {_out_of_memory(err)}; try a smaller --batch-size or --objects", file=sys.stderr)
        return 1
    return 0


def _out_of_memory(err: MemoryError) -> str:
    detail = _one_line(err)
    return f"out of memory ({detail})" if detail else "out of memory"


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Segment Anything for microscopy: command-line tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_train(subparsers)
    from .volume.cli import add_embed_command

    add_embed_command(subparsers)
    from .batch.command import add_segment_command

    add_segment_command(subparsers)
    for command in subparsers.choices.values():
        command.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    # Each command reports the problems it expects in one line; anything else
    # is a bug, and still ends in one line unless --debug asks for the traceback.
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError as err:
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {_out_of_memory(err)}", file=sys.stderr)
        return 1
    except Exception as err:
        if args.debug:
            raise
        print(
            f"{PROG} {args.command}: unexpected error: {type(err).__name__}: {_one_line(err)} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
