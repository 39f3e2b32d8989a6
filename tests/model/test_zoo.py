"""The model zoo: registry facts, cache folder, verified downloads, load_model.

Downloads are tested against a local HTTP server on 127.0.0.1; the cache is
always under tmp_path, never the user's real cache.
"""

import hashlib
import os
import re
import socket
import time

import platformdirs
import pytest
import torch
from helpers_http import LocalFileServer

from napari_sam.model import build, zoo
from napari_sam.model.checkpoint import CheckpointError
from napari_sam.model.zoo import DownloadError, ModelInfo, fetch_checkpoint, load_model

# Facts from the publishers (see the project's checkpoint reference notes).
PUBLISHED = {
    "vit_b": ("sam_vit_b_01ec64.pth", 375_042_383, "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
    "vit_l": ("sam_vit_l_0b3195.pth", 1_249_524_607, "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    "vit_h": ("sam_vit_h_4b8939.pth", 2_564_550_879, "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    "vit_t": ("mobile_sam.pt", 40_728_226, "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"),
}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own cache; requests must not go through a proxy."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(zoo.CACHE_ENV_VAR, str(cache))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return cache


@pytest.fixture
def keep_registry():
    """Put the registry's entries back after the test (registry and zoo share the one dict)."""
    saved = dict(zoo.MODELS)
    yield zoo.MODELS
    zoo.MODELS.clear()
    zoo.MODELS.update(saved)


@pytest.fixture
def server():
    with LocalFileServer() as srv:
        yield srv


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_info(url, data, *, name="test_model", filename="test_model.pth", model_type="custom", hash=None):
    return ModelInfo(
        name=name,
        model_type=model_type,
        url=url,
        size=len(data),
        hash=hash or sha256_of(data),
        filename=filename,
        description="a model for tests",
        licence="none",
    )


PAYLOAD = bytes(range(256)) * 400  # 100 kB: several download chunks


def files_in(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- registry -----------------------------------------------------------------


def test_registry_holds_the_published_checkpoints():
    for name, (filename, size, sha) in PUBLISHED.items():
        info = zoo.MODELS[name]
        assert info.model_type == name
        assert info.filename == filename
        assert info.url.endswith("/" + filename)
        assert info.size == size
        assert info.hash == f"sha256:{sha}"
        assert info.licence == "Apache-2.0"


def test_microscopy_models_are_the_zenodo_first_versions():
    lm = zoo.MODELS["vit_b_lm"]
    em = zoo.MODELS["vit_b_em_organelles"]
    assert lm.model_type == em.model_type == "vit_b"
    assert lm.hash == "sha256:5a59cc4064092d54cd4d92cd967e39168f3760905431e868e474d60fe5464ecd"
    assert em.hash == "sha256:c04a714a4e14a110f0eec055a65f7409d54e6bf733164d2933a0ce556f7d6f81"
    assert "zenodo.org/record/8250281" in lm.url and "8250281" in lm.description
    assert "zenodo.org/record/8250260" in em.url and "8250260" in em.description
    assert "light microscopy" in lm.description
    assert "electron microscopy" in em.description


def test_every_entry_is_complete_and_list_models_follows_the_registry():
    infos = zoo.list_models()
    assert [i.name for i in infos] == list(zoo.MODELS)
    assert {"vit_b", "vit_l", "vit_h", "vit_t", "vit_b_lm", "vit_b_em_organelles"} <= set(zoo.MODELS)
    filenames = [i.filename for i in infos]
    assert len(set(filenames)) == len(filenames), "two models would share one cache file"
    for info in infos:
        assert info.hash_algorithm == "sha256" and len(info.hash_hex) == 64
        assert len(info.description) > 40 and "\n" not in info.description


def test_size_text():
    assert zoo.MODELS["vit_b"].size_text == "375 MB"
    assert zoo.MODELS["vit_h"].size_text == "2.6 GB"
    assert zoo.MODELS["vit_t"].size_text == "41 MB"
    assert zoo.MODELS["vit_b_lm"].size_text == "size unknown"


def test_get_model_info_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="Unknown model 'vit_x'") as info:
        zoo.get_model_info("vit_x")
    assert "vit_b" in str(info.value) and "vit_t" in str(info.value)


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"url": None}, "exactly one of url"),
        ({"package_file": "data/demo.pt"}, "exactly one of url"),
        ({"hash": "ec2df627"}, "hash must look like"),
        ({"hash": "nosuchalg:abcd"}, "unknown hash algorithm"),
        ({"filename": "sub/file.pth"}, "bare file name"),
        ({"filename": ".."}, "bare file name"),
        ({"filename": "."}, "bare file name"),
        ({"filename": "sub\\file.pth"}, "bare file name"),
        ({"hash": "md5:" + "0" * 32}, "sha256"),
        ({"hash": "sha1:" + "0" * 40}, "sha256"),
        ({"hash": "sha256:" + "0" * 63}, "64 hex digits"),
        ({"hash": "sha256:" + "0" * 65}, "64 hex digits"),
        ({"hash": "xxh128:" + "0" * 31}, "32 hex digits"),
        ({"hash": "xxh64:" + "0" * 16}, "sha256"),
        ({"url": "file:///etc/passwd"}, "url must start"),
        ({"size": 0}, "size"),
        ({"description": ""}, "description"),
    ],
)
def test_model_info_rejects_bad_entries(changes, problem):
    fields = dict(
        name="x", model_type="vit_b", url="https://example.org/x.pth", size=10,
        hash="sha256:" + "0" * 64, filename="x.pth", description="d", licence="l",
    )
    fields.update(changes)
    with pytest.raises(ValueError, match=problem):
        ModelInfo(**fields)


def test_model_info_accepts_sha256_and_xxh128():
    fields = dict(name="x", model_type="vit_b", url="https://example.org/x.pth", size=10, filename="x.pth",
                  description="d", licence="l")
    assert ModelInfo(hash="sha256:" + "Ab" * 32, **fields).hash_hex == "ab" * 32
    assert ModelInfo(hash="xxh128:" + "0f" * 16, **fields).hash_algorithm == "xxh128"


def test_register_model_refuses_duplicates(keep_registry):
    info = make_info("https://example.org/x.pth", b"x", name="vit_b")
    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model(info)
    zoo.register_model(info, replace=True)
    assert zoo.MODELS["vit_b"] is info
    with pytest.raises(TypeError):
        zoo.register_model({"name": "dict"})


# --- cache folder ---------------------------------------------------------------


def test_cache_dir_follows_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV_VAR, str(tmp_path / "elsewhere"))
    assert zoo.cache_dir() == tmp_path / "elsewhere"
    assert zoo.checkpoint_dir() == tmp_path / "elsewhere" / "checkpoints"
    assert zoo.checkpoint_dir(tmp_path / "given") == tmp_path / "given" / "checkpoints"


def test_cache_dir_default_is_the_system_cache(monkeypatch):
    monkeypatch.delenv(zoo.CACHE_ENV_VAR, raising=False)
    expected = platformdirs.user_cache_dir("napari-sam-annotator", appauthor=False)
    assert str(zoo.cache_dir()) == expected


# --- downloads ------------------------------------------------------------------


def test_good_download_is_verified_and_then_served_from_cache(server, tmp_path):
    info = make_info(server.add("model.pth", PAYLOAD), PAYLOAD)
    path = fetch_checkpoint(info, cache_dir=tmp_path / "c", progressbar=False)
    assert path == tmp_path / "c" / "checkpoints" / "test_model.pth"
    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["model.pth"]
    assert files_in(path.parent) == ["test_model.pth"]  # no temporary files left behind
    assert zoo.is_cached(info, cache_dir=tmp_path / "c")

    again = fetch_checkpoint(info, cache_dir=tmp_path / "c", progressbar=False)
    assert again == path
    assert server.requests == ["model.pth"], "a cached, verified file must not be downloaded again"


def test_download_goes_to_environment_cache_by_default(server, isolated_cache):
    info = make_info(server.add("model.pth", PAYLOAD), PAYLOAD)
    path = fetch_checkpoint(info, progressbar=False)
    assert path == isolated_cache / "checkpoints" / info.filename


def test_wrong_hash_is_an_error_and_leaves_nothing(server, tmp_path):
    url = server.add("model.pth", PAYLOAD)
    info = make_info(url, PAYLOAD, hash=sha256_of(b"another file"))
    with pytest.raises(DownloadError, match="checksum does not match") as err:
        fetch_checkpoint(info, cache_dir=tmp_path, progressbar=False)
    folder = tmp_path / "checkpoints"
    assert files_in(folder) == []
    assert url in str(err.value)
    assert err.value.target == folder / info.filename


def test_truncated_transfer_is_an_error_and_leaves_nothing(server, tmp_path):
    # The server announces the full length, sends a third, then hangs up.
    url = server.add("model.pth", PAYLOAD, cut_after=len(PAYLOAD) // 3)
    info = make_info(url, PAYLOAD)
    with pytest.raises(DownloadError) as err:
        fetch_checkpoint(info, cache_dir=tmp_path, progressbar=False)
    assert files_in(tmp_path / "checkpoints") == []
    assert url in str(err.value)
    # requests notices the short body; the checksum would catch it otherwise.
    assert re.search("broke off|checksum does not match", str(err.value))
    assert server.requests == ["model.pth"]


def test_http_404_says_which_url_failed_and_where_to_put_the_file(server, tmp_path):
    url = server.url("missing.pth")  # never added: the server answers 404
    info = make_info(url, PAYLOAD)
    with pytest.raises(DownloadError) as err:
        fetch_checkpoint(info, cache_dir=tmp_path, progressbar=False)
    message = str(err.value)
    folder = tmp_path / "checkpoints"
    assert url in message
    assert "404" in message
    assert f"Put the file {info.filename} into {folder}" in message
    assert "local checkpoint file" in message
    assert message.startswith(f"test_model ({info.size_text}) could not be downloaded")
    assert files_in(folder) == []


def test_no_connection_is_a_download_error(tmp_path):
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    info = make_info(f"http://127.0.0.1:{port}/model.pth", PAYLOAD)
    with pytest.raises(DownloadError, match="no connection") as err:
        fetch_checkpoint(info, cache_dir=tmp_path, progressbar=False)
    assert isinstance(err.value, RuntimeError)
    assert err.value.url == info.url


def test_corrupted_cached_file_is_downloaded_again(server, tmp_path):
    info = make_info(server.add("model.pth", PAYLOAD), PAYLOAD)
    path = fetch_checkpoint(info, cache_dir=tmp_path, progressbar=False)
    damaged = bytearray(PAYLOAD)
    damaged[1000] ^= 0xFF  # one flipped byte, same size
    path.write_bytes(bytes(damaged))

    again = fetch_checkpoint(info, cache_dir=tmp_path, progressbar=False)
    assert again == path
    assert again.read_bytes() == PAYLOAD
    assert server.requests == ["model.pth", "model.pth"]


def test_corrupted_cached_file_is_never_left_in_place_when_offline(server, tmp_path):
    url = server.url("gone.pth")  # the server no longer has it
    info = make_info(url, PAYLOAD)
    path = tmp_path / "checkpoints" / info.filename
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD[: len(PAYLOAD) // 2])  # an earlier partial copy
    with pytest.raises(DownloadError):
        fetch_checkpoint(info, cache_dir=tmp_path, progressbar=False)
    assert not path.exists()


def test_file_placed_by_hand_is_used_without_downloading(server, tmp_path):
    info = make_info(server.url("model.pth"), PAYLOAD)
    path = tmp_path / "checkpoints" / info.filename
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD)
    assert fetch_checkpoint(info, cache_dir=tmp_path, progressbar=False) == path
    assert server.requests == []


def test_abandoned_partial_downloads_are_cleaned_up(server, tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    old = folder / "tmpab12_x9z"  # the kind of name pooch gives its temporary files
    fresh = folder / "tmpzz34_y8w"  # maybe another napari window downloading now
    mine = folder / "tmp_notes.txt"  # not a pooch temporary file
    for f in (old, fresh, mine):
        f.write_bytes(b"partial")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    os.utime(mine, (two_days_ago, two_days_ago))

    info = make_info(server.add("model.pth", PAYLOAD), PAYLOAD)
    fetch_checkpoint(info, cache_dir=tmp_path, progressbar=False)
    assert files_in(folder) == sorted(["test_model.pth", fresh.name, mine.name])


class RecordingProgress:
    """Stands in for a progress bar of the user interface."""

    def __init__(self):
        self.total = None
        self.updates = []
        self.closed = False

    def update(self, n):
        self.updates.append(n)

    def reset(self):
        self.updates.clear()

    def close(self):
        self.closed = True


def test_progress_is_reported_to_a_given_progress_object(server, tmp_path):
    info = make_info(server.add("model.pth", PAYLOAD), PAYLOAD)
    progress = RecordingProgress()
    fetch_checkpoint(info, cache_dir=tmp_path, progressbar=progress)
    assert progress.total == len(PAYLOAD)
    assert sum(progress.updates) == len(PAYLOAD)
    assert progress.closed


def test_fetch_by_unknown_name():
    with pytest.raises(ValueError, match="Known models"):
        fetch_checkpoint("vit_z")


# --- models shipped inside the package ------------------------------------------------


@pytest.fixture
def package_root(tmp_path, monkeypatch):
    root = tmp_path / "installed_package"
    (root / "data").mkdir(parents=True)
    monkeypatch.setattr(zoo, "_package_root", lambda: root)
    return root


def shipped_info(data: bytes, hash=None, model_type="custom") -> ModelInfo:
    return ModelInfo(
        name="demo", model_type=model_type, package_file="data/demo.pth", size=len(data),
        hash=hash or sha256_of(data), filename="demo.pth", description="a small demo model",
        licence="BSD-3-Clause",
    )


def test_shipped_model_is_checked_and_used_in_place(package_root, server):
    (package_root / "data" / "demo.pth").write_bytes(PAYLOAD)
    path = fetch_checkpoint(shipped_info(PAYLOAD), progressbar=False)
    assert path == package_root / "data" / "demo.pth"
    assert zoo.cached_checkpoint_path(shipped_info(PAYLOAD)) == path


def test_damaged_shipped_model_is_refused(package_root):
    (package_root / "data" / "demo.pth").write_bytes(PAYLOAD[:-1])
    with pytest.raises(CheckpointError, match="damaged") as err:
        fetch_checkpoint(shipped_info(PAYLOAD))
    assert "demo.pth" in str(err.value)


def test_missing_shipped_model_is_reported(package_root):
    with pytest.raises(CheckpointError, match="missing"):
        fetch_checkpoint(shipped_info(PAYLOAD))


# --- load_model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build.build_sam(build.tiny_config())
    path = tmp_path_factory.mktemp("tiny") / "my_tiny_sam.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def assert_loaded_weights(model, expected_state):
    state = model.state_dict()
    assert set(state) == set(expected_state)
    for key, value in expected_state.items():
        assert torch.equal(state[key].cpu(), value), key


def test_load_model_from_local_file(tiny_checkpoint):
    path, expected = tiny_checkpoint
    model = load_model(path, device="cpu")
    assert not model.training
    assert next(model.parameters()).device.type == "cpu"
    assert_loaded_weights(model, expected)
    assert model.model_name == "my_tiny_sam"
    assert model.checkpoint_path == path
    assert model.checkpoint_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_model_accepts_str_path_and_training_checkpoint(tiny_checkpoint, tmp_path):
    path, expected = tiny_checkpoint
    wrapped = tmp_path / "best.pt"
    torch.save({"model_state": {f"sam.{k}": v for k, v in expected.items()}, "epoch": 3}, wrapped)
    model = load_model(str(wrapped), device="cpu")
    assert_loaded_weights(model, expected)
    assert model.model_name == "best"


def test_load_model_from_zoo_entry_downloads_and_verifies(tiny_checkpoint, server, isolated_cache):
    path, expected = tiny_checkpoint
    data = path.read_bytes()
    info = make_info(server.add("tiny.pth", data), data, name="tiny_test", filename="tiny_test.pth",
                     model_type=build.tiny_config().model_type)
    model = load_model(info, device="cpu")
    assert_loaded_weights(model, expected)
    assert model.model_name == "tiny_test"
    assert model.checkpoint_path == isolated_cache / "checkpoints" / "tiny_test.pth"
    assert model.checkpoint_sha256 == info.hash_hex


def test_load_model_by_registered_name(tiny_checkpoint, server, keep_registry):
    path, expected = tiny_checkpoint
    data = path.read_bytes()
    zoo.register_model(make_info(server.add("tiny.pth", data), data, name="tiny_test"))
    model = load_model("tiny_test", device="cpu")
    assert_loaded_weights(model, expected)
    assert model.model_name == "tiny_test"


def test_zoo_entry_whose_file_is_another_architecture_is_refused(tiny_checkpoint, server):
    path, _ = tiny_checkpoint
    data = path.read_bytes()
    info = make_info(server.add("tiny.pth", data), data, model_type="vit_b")
    with pytest.raises(CheckpointError, match="should be vit_b"):
        load_model(info, device="cpu")


def test_load_model_unknown_name_lists_known_models():
    with pytest.raises(ValueError, match="neither a known model") as err:
        load_model("vit_bb", device="cpu")
    assert "vit_b, vit_l" in str(err.value)
    assert not isinstance(err.value, CheckpointError)


def test_load_model_refuses_foreign_weights(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.ones(3)}, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path, device="cpu")
    assert str(path) in str(err.value)


def test_load_model_refuses_sam_names_with_wrong_shapes(tiny_checkpoint, tmp_path):
    _, expected = tiny_checkpoint
    broken = dict(expected)
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    assert key in broken
    broken[key] = torch.zeros(3, 3)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path, device="cpu")
    assert str(path) in str(err.value)


def test_load_model_bad_device_fails_before_loading(tiny_checkpoint):
    path, _ = tiny_checkpoint
    with pytest.raises(ValueError, match="device"):
        load_model(path, device="warp-drive")
