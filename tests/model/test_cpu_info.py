import io

from napari_sam.model import cpu_info


def _read_from(text, monkeypatch):
    monkeypatch.setattr(cpu_info, "open", lambda *a, **k: io.StringIO(text), raising=False)
    return cpu_info.cpu_model_and_flags.__wrapped__()


def test_x86_model_and_flags_come_from_the_first_processor(monkeypatch):
    text = ("processor: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu avx2 avx512_bf16\n\n"
            "processor: 1\nmodel name\t: Other\nflags\t\t: fpu\n")
    model, flags = _read_from(text, monkeypatch)
    assert model == "Some CPU 9000"
    assert {"avx2", "avx512_bf16"} <= flags and "fpu" in flags


def test_arm_names_are_read_too(monkeypatch):
    model, flags = _read_from("Features\t: fp asimd\nModel\t: Raspberry Pi 5\n", monkeypatch)
    assert model == "Raspberry Pi 5" and "asimd" in flags


def test_no_cpuinfo_gives_a_name_and_no_flags(monkeypatch):
    def missing(*args, **kwargs):
        raise OSError("no /proc")

    monkeypatch.setattr(cpu_info, "open", missing, raising=False)
    model, flags = cpu_info.cpu_model_and_flags.__wrapped__()
    assert model and flags == frozenset()
