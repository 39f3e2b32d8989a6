"""Fine-tuning from napari: the ``train`` command run as a child process on a series' labels.

Plain Python (no Qt): the "SAM Fine-tune" dock (widgets/finetune.py) is a view of it.
"""

from .checks import MIN_OBJECTS, RunLock, check_enough_objects, count_labelled_objects, series_of_image
from .job import FineTuneJob, JobState
from .models import ModelRecord, family_name, list_models, next_model_path, read_record

__all__ = [
    "MIN_OBJECTS", "FineTuneJob", "JobState", "ModelRecord", "RunLock", "check_enough_objects",
    "count_labelled_objects", "series_of_image", "family_name", "list_models", "next_model_path", "read_record",
]
