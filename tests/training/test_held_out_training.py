"""train --held-out / --report: scores before and after on held-out images, and where the model came from."""

import json

import numpy as np
import pytest
import tifffile

from napari_sam.cli import main
from napari_sam.evaluation import split_names
from napari_sam.model.zoo import load_model
from napari_sam.synthetic.tissue import make_tissue_2d
from napari_sam.training import TrainOptions, train
from napari_sam.training.checkpoints import read_provenance

SCORES = {"one_click_iou", "noc90", "accepted_share", "msa", "objects"}


def labelled_folder(root, n_images, n_objects=(4, 5)):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n_images):
        image, labels = make_tissue_2d((64, 64), n_objects=n_objects, seed=i, spacing_range=(18.0, 20.0))
        tifffile.imwrite(root / "images" / f"cells{i:02d}.tif", image)
        tifffile.imwrite(root / "labels" / f"cells{i:02d}.tif", labels)
    return root


def options(tmp_path, data, **kw):
    # The demo model: a fraction of the tiny test size's time per click on this CPU.
    base = dict(out=tmp_path / "m.pt", data=str(data), init="demo", steps=2, batch_size=1, objects_per_image=2,
                rounds=1, seed=0, save_every=100, log_every=1, device="cpu")
    base.update(kw)
    return TrainOptions(**base)


def test_held_out_run_reports_before_and_after_and_records_where_the_model_came_from(tmp_path):
    data = labelled_folder(tmp_path / "series", 5)
    names = [f"cells{i:02d}" for i in range(5)]
    trained, held = split_names(names, 0.3)
    lines = []
    report = tmp_path / "report.json"
    train(options(tmp_path, data, held_out=0.3, report=report), log=lines.append)

    content = json.loads(report.read_text())
    assert set(content) == {"before", "after", "held_out", "auto_settings", "steps", "minutes"}
    assert content["held_out"] == held and content["steps"] == 2 and content["minutes"] >= 0
    for which in ("before", "after"):
        assert set(content[which]) == SCORES
        assert 0 <= content[which]["one_click_iou"] <= 1 and 0 <= content[which]["noc90"] <= 20
    # Every object of the held-out images is scored, and only those.
    held_objects = sum(len(np.unique(tifffile.imread(data / "labels" / f"{n}.tif"))) - 1 for n in held)
    assert content["before"]["objects"] == content["after"]["objects"] == held_objects
    assert {"pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"} <= set(content["auto_settings"])
    assert any(line.startswith(f"evaluating the base model on {len(held)} held-out image(s) ({held_objects} objects)")
               for line in lines)
    assert any(line.startswith("evaluating the trained model") for line in lines)
    assert any(f"{len(trained)} image/label pair(s)" in line and f"({len(held)} held out)" in line for line in lines)

    provenance = read_provenance(tmp_path / "m.pt")
    assert provenance["base_model"] == "demo" and provenance["data"] == str(data)
    assert provenance["steps"] == 2 and provenance["held_out"] == held and provenance["date"].startswith("20")
    from napari_sam.auto.recommended import recommended_settings

    assert recommended_settings(name=str(tmp_path / "m.pt")) == content["auto_settings"]
    assert load_model(tmp_path / "m.pt", device="cpu").image_size == 256


def test_a_run_without_held_out_images_still_records_its_origin(tmp_path):
    data = labelled_folder(tmp_path / "series", 2)
    train(options(tmp_path, data, report=tmp_path / "r.json"), log=lambda line: None)
    assert read_provenance(tmp_path / "m.pt")["held_out"] == []
    content = json.loads((tmp_path / "r.json").read_text())
    assert content["before"] is None and content["held_out"] == [] and content["steps"] == 2


def test_too_few_objects_to_train_on_is_one_clear_line(tmp_path, capsys):
    data = labelled_folder(tmp_path / "series", 2, n_objects=(2, 3))
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "m.pt"), "--init", "demo", "--steps", "1",
                 "--device", "cpu", "--held-out", "0.3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "too few labelled objects" in err[0] and "at least 10 objects to train on" in err[0]
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("problem, message", [("generated", "needs a folder"), ("one image", "at least 2 labelled images"),
                                              ("share", "--held-out must be")])
def test_held_out_needs_a_folder_of_several_images_and_a_share(tmp_path, problem, message):
    data = "generated" if problem == "generated" else labelled_folder(tmp_path / "series", 1)
    share = 1.5 if problem == "share" else 0.2
    with pytest.raises(ValueError, match=message):
        train(options(tmp_path, data, held_out=share), log=lambda line: None)


def test_replay_mixes_generated_nuclei_into_the_samples(tmp_path):
    from napari_sam.training.replay import MixedSource

    class Named:
        def __init__(self, name):
            self.description, self.name = name, name

        def draw(self, rng):
            return self.name, None

    mixed = MixedSource(Named("mine"), 0.25, generated=Named("nuclei"))
    rng = np.random.default_rng(0)
    drawn = [mixed.draw(rng)[0] for _ in range(2000)]
    assert 0.2 < drawn.count("nuclei") / len(drawn) < 0.3
    assert "25 % of samples generated nuclei" in mixed.description
    with pytest.raises(ValueError, match="--replay"):
        train(options(tmp_path, "generated", replay=1.0), log=lambda line: None)


def test_crowded_is_refused_where_no_nuclei_are_generated(tmp_path):
    data = labelled_folder(tmp_path / "series", 3)
    with pytest.raises(ValueError, match="--crowded changes generated nuclei"):
        train(options(tmp_path, data, crowded=0.5), log=lambda line: None)
    with pytest.raises(ValueError, match="--crowded must be"):
        train(options(tmp_path, "generated", crowded=2.0), log=lambda line: None)
