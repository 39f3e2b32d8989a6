"""Scoring a model as an annotator would meet it: clicks per object, accepted proposals, automatic mSA.

Plain Python (numpy, scipy, torch through the model): no napari or Qt. Used
by ``train --held-out`` and benchmarks/bench_data_engine.py.

* :mod:`.annotator`: the simulated annotator (NoC@90, one-click IoU, accepted proposals);
* :mod:`.held_out`: which labelled images are held out, by a rule fixed across rounds;
* :mod:`.tuning`: the automatic settings of the best mSA on labelled images;
* :mod:`.scores`: all of it on a list of (image, labels) pairs.
"""

from .annotator import IOU_GOAL, MAX_CLICKS, ObjectResult, annotate_image, annotated_labels, click_object, next_click
from .held_out import held_out_names, split_names
from .scores import SCORE_NAMES, evaluate
from .tuning import tune_auto_settings

__all__ = ["IOU_GOAL", "MAX_CLICKS", "ObjectResult", "SCORE_NAMES", "annotate_image", "annotated_labels",
           "click_object", "evaluate", "held_out_names", "next_click", "split_names", "tune_auto_settings"]
