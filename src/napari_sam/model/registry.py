"""The models napari-sam-annotator knows by name: one :class:`ModelInfo` per model in :data:`MODELS`.

An entry says where the file comes from (a download address, or a file
shipped inside the package), how big it is, its checksum and a line
describing it for the model chooser. Getting and verifying the file is
:mod:`.zoo`'s part.
"""

from __future__ import annotations

import dataclasses
import re

#: Hash algorithms a zoo entry may name, with the length of their hex digest.
HASH_DIGITS = {"sha256": 64, "xxh128": 32}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """One entry of the model zoo.

    Exactly one of ``url`` (downloaded into the cache) and ``package_file``
    (a path inside the installed ``napari_sam`` package, for small models
    shipped with the plugin) is set. ``hash`` is ``"sha256:<64 hex digits>"``
    (or ``"xxh128:<32 hex digits>"``, which needs the xxhash package). ``size``
    is in bytes, or None where it is not published.
    """

    name: str
    model_type: str
    hash: str
    filename: str
    description: str
    licence: str
    url: str | None = None
    size: int | None = None
    package_file: str | None = None
    # Recommended settings of the automatic mask generator (napari_sam.auto) for this model, as
    # {setting name: value}; None: Segment Anything's defaults, which suit the SA-1B models.
    auto_settings: dict | None = None

    def __post_init__(self) -> None:
        for field in ("name", "model_type", "filename", "description", "licence"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"ModelInfo.{field} must be a non-empty string, got {value!r}")
        if (self.url is None) == (self.package_file is None):
            raise ValueError(
                f"model '{self.name}': give exactly one of url (downloaded) and "
                "package_file (shipped with the plugin)"
            )
        if self.url is not None and not re.match(r"^(https?|ftp)://", self.url):
            raise ValueError(f"model '{self.name}': url must start with http(s):// or ftp://, got {self.url!r}")
        if self.filename in (".", "..") or re.search(r"[/\\\x00]", self.filename):
            # ".." is its own Path.name, and would put the file above the checkpoint folder.
            raise ValueError(f"model '{self.name}': filename must be a bare file name, got {self.filename!r}")
        if self.size is not None and (not isinstance(self.size, int) or self.size <= 0):
            raise ValueError(f"model '{self.name}': size must be a positive number of bytes or None")
        match = re.fullmatch(r"([a-z0-9_]+):([0-9a-fA-F]+)", self.hash or "")
        if match is None:
            raise ValueError(
                f"model '{self.name}': hash must look like 'sha256:<hex digits>', got {self.hash!r}"
            )
        algorithm, digits = match.groups()
        if algorithm not in HASH_DIGITS:
            # md5 and sha1 no longer protect against a file made to match.
            raise ValueError(
                f"model '{self.name}': unknown hash algorithm '{algorithm}' (accepted: sha256, or xxh128 with "
                "the xxhash package); give 'sha256:<64 hex digits>'"
            )
        if len(digits) != HASH_DIGITS[algorithm]:
            raise ValueError(
                f"model '{self.name}': a {algorithm} hash has {HASH_DIGITS[algorithm]} hex digits, "
                f"got {len(digits)}"
            )

    @property
    def hash_algorithm(self) -> str:
        return self.hash.split(":", 1)[0]

    @property
    def hash_hex(self) -> str:
        return self.hash.split(":", 1)[1].lower()

    @property
    def size_text(self) -> str:
        """Download size for people, e.g. '375 MB' or '2.6 GB'."""
        if self.size is None:
            return "size unknown"
        if self.size >= 1_000_000_000:
            return f"{self.size / 1e9:.1f} GB"
        if self.size >= 1_000_000:
            return f"{self.size / 1e6:.0f} MB"
        return f"{max(self.size / 1e3, 1):.0f} kB"


_SAM_LICENCE = "Apache-2.0"
_SAM_DATA = "trained by Meta on 11 million everyday photos (SA-1B)"

MODELS: dict[str, ModelInfo] = {}

#: The demo model's small, dim nuclei need a finer grid and lower thresholds than SAM's defaults.
DEMO_AUTO_SETTINGS = {"points_per_side": 24, "pred_iou_thresh": 0.6, "stability_score_thresh": 0.9,
                      "box_nms_thresh": 0.4, "min_mask_region_area": 20,
                      # napari_sam.auto.consensus: on 14 held-out generated images mSA 0.722 -> 0.768 and
                      # nuclei found at IoU 0.5 0.848 -> 0.898 (0.727 -> 0.743 on 14 tuning images)
                      "nms_score": "stability_score", "merge_duplicates_iou": 0.8, "gap_fill_iou_thresh": 0.7,
                      # its masks come out a little small at SAM's 0: mSA 0.768 -> 0.783 (0.743 -> 0.749)
                      "mask_threshold": -0.5,
                      # napari_sam.auto.convexity: a merged pair of nuclei loses the NMS to a convex nucleus;
                      # chosen on 42 tuning images (0.5 to 1 alike): mSA 0.753 -> 0.759; on the 14 held-out
                      # 0.772 -> 0.775 (bench_auto_quality on an AMD EPYC, whose decoder runs in bf16)
                      "nms_convexity": 0.75}


def register_model(info: ModelInfo, *, replace: bool = False) -> ModelInfo:
    """Add ``info`` to :data:`MODELS` (e.g. a demo model shipped with the plugin)."""
    if not isinstance(info, ModelInfo):
        raise TypeError(f"register_model expects a ModelInfo, got {type(info).__name__}")
    if info.name in MODELS and not replace:
        raise ValueError(f"a model named '{info.name}' is already registered")
    MODELS[info.name] = info
    return info


for _info in (
    ModelInfo(
        name="vit_b",
        model_type="vit_b",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        size=375_042_383,
        hash="sha256:ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        filename="sam_vit_b_01ec64.pth",
        description=(
            f"Segment Anything, base size; {_SAM_DATA}. Good general choice: "
            "a few seconds to 15 s per image on a CPU, well under 1 s on a GPU."
        ),
        licence=_SAM_LICENCE,
    ),
    ModelInfo(
        name="vit_l",
        model_type="vit_l",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        size=1_249_524_607,
        hash="sha256:3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        filename="sam_vit_l_0b3195.pth",
        description=(
            f"Segment Anything, large size; {_SAM_DATA}. Somewhat more precise than "
            "vit_b but about 3 times slower; a GPU is recommended."
        ),
        licence=_SAM_LICENCE,
    ),
    ModelInfo(
        name="vit_h",
        model_type="vit_h",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        size=2_564_550_879,
        hash="sha256:a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        filename="sam_vit_h_4b8939.pth",
        description=(
            f"Segment Anything, huge size; {_SAM_DATA}. The most precise original SAM, "
            "about 6 times slower than vit_b; needs a GPU to be pleasant."
        ),
        licence=_SAM_LICENCE,
    ),
    ModelInfo(
        name="vit_t",
        model_type="vit_t",
        url="https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        size=40_728_226,
        hash="sha256:6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        filename="mobile_sam.pt",
        description=(
            "MobileSAM: a small, fast copy of SAM learned from the same everyday photos. "
            "About 1 s per image on a CPU; outlines slightly less precise."
        ),
        licence=_SAM_LICENCE,
    ),
    ModelInfo(
        name="vit_b_lm",
        model_type="vit_b",
        url="https://zenodo.org/record/8250281/files/vit_b_lm.pth?download=1",
        size=None,
        hash="sha256:5a59cc4064092d54cd4d92cd967e39168f3760905431e868e474d60fe5464ecd",
        filename="vit_b_lm.pth",
        description=(
            "vit_b fine-tuned by the micro-sam project on light microscopy (cells and nuclei, "
            "fluorescence and label-free). First release (Zenodo record 8250281), not the "
            "newer BioImage.IO version. Speed as vit_b."
        ),
        licence="not verified here; see https://zenodo.org/record/8250281",
    ),
    ModelInfo(
        name="vit_b_em_organelles",
        model_type="vit_b",
        url="https://zenodo.org/record/8250260/files/vit_b_em.pth?download=1",
        size=None,
        hash="sha256:c04a714a4e14a110f0eec055a65f7409d54e6bf733164d2933a0ce556f7d6f81",
        filename="vit_b_em.pth",
        description=(
            "vit_b fine-tuned by the micro-sam project on electron microscopy (organelles such "
            "as mitochondria and nuclei). First release 'vit_b_em' (Zenodo record 8250260), "
            "not the newer BioImage.IO version. Speed as vit_b."
        ),
        licence="not verified here; see https://zenodo.org/record/8250260",
    ),
    ModelInfo(
        name="demo",
        model_type="custom",
        package_file="models/demo_nuclei.pt",
        size=3_963_883,
        hash="sha256:88df018e74cfa41cf74e59f1e03c5f9f7469705e434a12a6b93b21a19e075637",
        filename="demo_nuclei.pt",
        description=(
            "Demo model trained on generated nuclei only — for trying the plugin offline; "
            "use vit_t / vit_b / vit_b_lm for real data. Ships with the plugin (no download)."
        ),
        licence="BSD-3-Clause",
        # Measured with benchmarks/bench_auto_quality.py on held-out generated nuclei.
        auto_settings=DEMO_AUTO_SETTINGS,
    ),
):
    register_model(_info)
del _info


def list_models() -> list[ModelInfo]:
    """All known models in a sensible order for a chooser (as registered)."""
    return list(MODELS.values())


def get_model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; ValueError listing the known names if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(
            f"Unknown model '{name}'. Known models: {', '.join(MODELS)}."
        ) from None
