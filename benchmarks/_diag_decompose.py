"""Diagnostics (not a benchmark): where each nucleus' 3D IoU loss comes from after Propagate all, and the ceiling.

    python _diag_decompose.py CACHE ['{options}'] [--patch CODE] [--bound] [--levels -2,-1,0,1,2]
                              [--held-out | --seeds 7,3,11]

For every nucleus of bench_propagation.py's stacks (one click on its largest slice, the benchmark's "score"
user), the voxels wrong after Propagate all are split into shares of 1 - IoU (each over the union of truth and
mask, so the shares add up to the loss):

* ``rim-``: missed voxels on true slices where the mask is present (boundary too small);
* ``rim+``: extra voxels on true slices, not on another nucleus (boundary too large);
* ``pole``: missed voxels on true slices where the mask is absent (end slices lost);
* ``extra``: voxels on slices beyond the true z range, not on another nucleus;
* ``bleed``: voxels of other nuclei taken.

``dr`` is the mean signed difference of equivalent radii (found - true, pixels) over the true slices with a mask.

With ``--bound``: the ceiling of the demo model's 2D answers: each true slice prompted with its TRUE box and its
centre point, and of the three candidates the best against the truth; its 3D IoU per nucleus, with the masks cut
at each logit level of ``--levels`` (SAM's is 0) and at the best level per slice.
"""
import sys
from pathlib import Path

import numpy as np
import torch

from _propagation_cases import Case, Timer, all_at_once, seeds_from
from napari_sam.geometry import interior_point, mask_box
from napari_sam.model import SamPredictor, load_model
from napari_sam.volume.propagation.signal import calibrate, fit_to_signal, smoothed

PARTS = ("rim-", "rim+", "pole", "extra", "bleed")


def decompose(truth: np.ndarray, oid: int, mine: np.ndarray) -> dict:
    obj = truth == oid
    neighbours = (truth > 0) & ~obj
    union = (obj | mine).sum()
    has_truth, has_mask = obj.any(axis=(1, 2)), mine.any(axis=(1, 2))
    missed, extra = obj & ~mine, mine & ~obj
    shares = {
        "rim-": missed[has_truth & has_mask].sum(),
        "rim+": (extra & ~neighbours)[has_truth].sum(),
        "pole": missed[has_truth & ~has_mask].sum(),
        "extra": (extra & ~neighbours)[~has_truth].sum(),
        "bleed": (extra & neighbours).sum(),
    }
    out = {k: v / union for k, v in shares.items()}
    out["iou"] = (obj & mine).sum() / union
    both = np.flatnonzero(has_truth & has_mask)
    radius = lambda a: np.sqrt(a / np.pi)  # noqa: E731
    out["dr"] = float(np.mean(radius(mine[both].sum(axis=(1, 2))) - radius(obj[both].sum(axis=(1, 2))))) if both.size else np.nan
    tz, fz = np.flatnonzero(has_truth), np.flatnonzero(has_mask)
    out["z"] = f"{tz[0]}-{tz[-1]}/" + (f"{fz[0]}-{fz[-1]}" if fz.size else "none")
    return out


def bound(predictor, case: Case, oid: int, levels) -> dict:
    """3D IoU of the best of three candidates per slice, prompted with the true box and centre point."""
    obj = case.truth == oid
    found = {level: np.zeros_like(obj) for level in levels}
    best_any = np.zeros_like(obj)
    z0, clicked = case.clicks[oid][:2]
    edge = calibrate(case.stack[z0], clicked)  # as the walk calibrates on the committed click
    fitted = np.zeros_like(obj)
    for z in np.flatnonzero(obj.any(axis=(1, 2))):
        predictor.set_embedding(case.embeddings.get(int(z)))
        x, y = interior_point(obj[z])
        logits, _, _ = predictor.predict(point_coords=[[x, y]], point_labels=[1], box=mask_box(obj[z]),
                                         multimask_output=True, return_logits=True)
        logits = np.asarray(logits, dtype=np.float32)
        best_slice, best_iou = None, -1.0
        for level in levels:
            cands = logits > level
            ious = [(c & obj[z]).sum() / max((c | obj[z]).sum(), 1) for c in cands]
            found[level][z] = cands[int(np.argmax(ious))]
            if max(ious) > best_iou:
                best_iou, best_slice = max(ious), found[level][z]
        best_any[z] = best_slice
        chosen = found[0.0][z] if 0.0 in found else found[levels[0]][z]
        if edge is not None and chosen.any():
            fitted[z] = fit_to_signal(chosen, case.stack[z], edge)
    iou3 = lambda m: (m & obj).sum() / (m | obj).sum()  # noqa: E731
    out = {f"t{level:+g}": iou3(m) for level, m in found.items()}
    out["best"] = iou3(best_any)
    out["fit"] = iou3(fitted) if edge is not None else np.nan
    out.update(signal_bounds(case, oid, edge))
    return out


def signal_bounds(case: Case, oid: int, level) -> dict:
    """3D IoU of the smoothed signal cut at one level near the truth (its true slices, 3 px around it): at the
    walk's edge level, and at the best fraction of the contrast for this nucleus (an oracle)."""
    obj = case.truth == oid
    from scipy import ndimage
    near = ndimage.binary_dilation(obj, structure=np.array([[[0] * 3] * 3, [[0, 1, 0], [1, 1, 1], [0, 1, 0]],
                                                            [[0] * 3] * 3], bool), iterations=3)
    zs = np.flatnonzero(obj.any(axis=(1, 2)))
    smooth = np.stack([smoothed(case.stack[z]) for z in zs])
    o, n = obj[zs], near[zs]
    iou3 = lambda m: (m & o).sum() / (m | o).sum()  # noqa: E731
    if level is None:
        return {"sig": np.nan, "sigbest": np.nan, "sigf": np.nan}
    cut = lambda lv: (smooth >= lv if level.bright else smooth <= lv) & n  # noqa: E731
    fractions = np.linspace(0.05, 0.95, 19)
    ious = [iou3(cut(level.around_signal + f * (level.inside_signal - level.around_signal))) for f in fractions]
    return {"sig": iou3(cut(level.level)), "sigbest": max(ious), "sigf": fractions[int(np.argmax(ious))]}


def main() -> None:
    args = sys.argv[1:]
    seeds = seeds_from(args)  # the tuning stacks unless --held-out or --seeds
    patch, levels, with_bound = "", [0.0], "--bound" in args
    if with_bound:
        args.remove("--bound")
    if "--patch" in args:
        i = args.index("--patch"); patch = args[i + 1]; del args[i:i + 2]
    if "--levels" in args:
        i = args.index("--levels"); levels = [float(v) for v in args[i + 1].split(",")]; del args[i:i + 2]
    options = eval(args[1]) if len(args) > 1 and args[1] else {}
    torch.set_num_threads(2)
    exec(patch or "pass")
    predictor = SamPredictor(load_model("demo", device="cpu"), device="cpu")
    cases = [Case(predictor, s, Path(args[0]) / "demo") for s in seeds]
    rows = []
    for case in cases:
        found, labels = all_at_once(case, Timer(), **options)
        for oid in case.ids:
            row = decompose(case.truth, oid, labels == oid)
            row.update(seed=case.seed, oid=oid, size=int((case.truth == oid).sum()), click=case.iou2d(oid))
            if with_bound:
                row.update(bound(predictor, case, oid, levels))
            rows.append(row)
    rows.sort(key=lambda r: r["iou"])
    extra_cols = ([f"t{level:+g}" for level in levels] + ["best", "fit", "sig", "sigbest", "sigf"]) if with_bound else []
    print(f"{'nucleus':>9s} {'voxels':>6s} {'click':>5s} {'iou':>5s} " + " ".join(f"{p:>5s}" for p in PARTS)
          + f" {'dr px':>6s} {'z true/found':>13s} " + " ".join(f"{c:>5s}" for c in extra_cols))
    for r in rows:
        print(f"s{r['seed']:>2d} #{r['oid']:<4d} {r['size']:6d} {r['click']:.3f} {r['iou']:.3f} " + " ".join(f"{r[p]:.3f}" for p in PARTS)
              + f" {r['dr']:+6.2f} {r['z']:>13s} " + " ".join(f"{r[c]:.3f}" for c in extra_cols))
    n = len(rows)
    groups = {"all": rows, f"middle half (ranks {n // 4}-{n - n // 4 - 1})": rows[n // 4: n - n // 4], "worst quarter": rows[: n // 4],
              "best quarter": rows[n - n // 4:]}
    print("\nmean share of 1 - IoU per group (and mean IoU, mean dr):")
    for name, group in groups.items():
        print(f"  {name:28s} iou {np.mean([r['iou'] for r in group]):.3f} loss {1 - np.mean([r['iou'] for r in group]):.3f} = "
              + " + ".join(f"{p} {np.mean([r[p] for r in group]):.3f}" for p in PARTS)
              + f"; dr {np.nanmean([r['dr'] for r in group]):+.2f} px"
              + ("".join(f"; {c} {np.mean([r[c] for r in group]):.3f}" for c in extra_cols)))
    if with_bound:
        for c in extra_cols:
            vals = np.array([r[c] for r in rows])
            print(f"  bound {c:6s} mean {vals.mean():.3f} median {np.median(vals):.3f} min {vals.min():.3f}")


if __name__ == "__main__":
    main()
