"""``python -m napari_sam``: napari with the generated nuclei stack and the annotator docked.

Options: ``--model NAME_OR_FILE`` (default "demo"), ``--device``, ``--precision``,
``--cells`` for the 2D RGB cell image instead of the nuclei stack.
"""

from __future__ import annotations

import argparse


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m napari_sam", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="zoo name or checkpoint file (default: demo)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"])
    parser.add_argument("--cells", action="store_true", help="open the generated 2D cell image instead")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import QTimer

    from .sample_data import cells_2d, nuclei_stack
    from .widgets.annotator import AnnotatorWidget

    viewer = napari.Viewer(title="SAM Annotator")
    for data, kwargs, _ in (cells_2d() if args.cells else nuclei_stack()):
        image = viewer.add_image(data, **kwargs)
    widget = AnnotatorWidget(viewer, autoload=False)
    viewer.window.add_dock_widget(widget, name="SAM Annotator", area="right")
    widget.set_image(image)
    widget.load_model(args.model, device=args.device, precision=args.precision)
    viewer.layers.selection.active = widget.points
    # The dock narrows the canvas after napari fitted the image to it: fit again once the
    # window is laid out, or the sample opens cut off left and right.
    QTimer.singleShot(0, viewer.reset_view)
    napari.run()


if __name__ == "__main__":
    main()
