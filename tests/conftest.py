import sys
from pathlib import Path

# Test helpers (tests/reference.py, tests/helpers.py) import as top-level modules.
sys.path.insert(0, str(Path(__file__).parent))


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _no_speed_measurement(tmp_path_factory):
    """precision "auto" on the CPU times matrix products on first use and caches the rates in the
    user's cache folder: in tests it gets fixed rates (bf16 fast where the CPU has native bf16, int8 too
    little faster than float32 to be picked: "auto" as before int8 existed) and a cache folder of its own, so no test times anything or writes to the user's cache."""
    from napari_sam.model import attention_choice, precision_choice
    from napari_sam.model.device import cpu_has_fast_bf16

    def fixed_rates():
        return {"fp32": 100.0, "bf16": 400.0 if cpu_has_fast_bf16() else 10.0, "int8": 110.0}

    cache = tmp_path_factory.mktemp("speed") / "machine_speed.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision_choice, "measure_speeds", fixed_rates)
        patch.setattr(precision_choice, "_cache_path", lambda: cache)
        # bf16 global attention measured faster in bf16 (as on an AMX CPU): the encoder as before the choice existed.
        patch.setattr(attention_choice, "measure_global_attention", lambda: {"bf16": 1.0, "fp32": 2.0})
        patch.setattr(attention_choice, "_cache_path", lambda: cache.with_name("attention_speed.json"))
        yield
