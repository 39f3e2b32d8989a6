import pytest
"""The `napari-sam-annotator` command offers every sub-command."""

from napari_sam.cli import build_parser
from napari_sam.volume.cli import run_embed


def test_embed_subcommand_is_wired_into_the_main_command():
    args = build_parser().parse_args(["embed", "stack.tif", "--model", "vit_t"])
    assert args.func is run_embed
    assert args.model == "vit_t"


def test_train_subcommand_is_there():
    args = build_parser().parse_args(["train", "--data", "generated", "--out", "model.pt"])
    assert args.command == "train"
    assert args.precision == "auto"


def test_train_precision_is_one_of_three_words(capsys):
    args = build_parser().parse_args(["train", "--out", "model.pt", "--precision", "bf16"])
    assert args.precision == "bf16"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "model.pt", "--precision", "half"])
    assert "invalid choice" in capsys.readouterr().err


def test_train_precision_choices_are_the_engines():
    from napari_sam.model.device import TRAINING_PRECISIONS

    action = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                  if a.dest == "precision")
    assert tuple(action.choices) == TRAINING_PRECISIONS
