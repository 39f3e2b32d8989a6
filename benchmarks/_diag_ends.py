"""Diagnostics (not a benchmark): Propagate all on bench_propagation's stacks for several variants in one process.

    python _diag_ends.py CACHE 'name|{options}|patch' ... [--show N] [--user score|closest|closest+1]
                         [--held-out | --seeds 7,3,11] [--model demo|PATH] [--threads 2]

The stacks are _propagation_cases.TUNING_SEEDS by default; ``--held-out`` runs on HELD_OUT_SEEDS, the stacks
kept for confirming a change chosen on the tuning ones (never for choosing it).

Per variant: mean / median / min 3D IoU; with --show N the N worst nuclei with their true and found z ends, the
walk's stops, and true/found areas per slice. ``patch`` is Python run before the variant (and undone by the next
variant's patch: give each variant its full settings). ``--model`` loads another checkpoint (its embeddings are
cached in a folder of CACHE named after the file, so two models never share one).
"""
import sys
from pathlib import Path
import numpy as np, torch
from _propagation_cases import Case, Timer, all_at_once, seeds_from
from napari_sam.model import SamPredictor, load_model
from napari_sam.volume.propagation.signal import calibrate

args = sys.argv[1:]
def _option(flag, default):
    if flag not in args:
        return default
    value = args[args.index(flag) + 1]; del args[args.index(flag):args.index(flag) + 2]
    return value
model = _option("--model", "demo")
torch.set_num_threads(int(_option("--threads", "2")))
show = 0
if "--show" in args:
    show = int(args[args.index("--show") + 1]); del args[args.index("--show"):args.index("--show") + 2]
user = "score"  # how the simulated user makes the clicked slice's mask (_propagation_cases.Case)
if "--user" in args:
    user = args[args.index("--user") + 1]; del args[args.index("--user"):args.index("--user") + 2]
seeds = seeds_from(args)
predictor = SamPredictor(load_model(model, device="cpu"), device="cpu")
cache = "demo" if model == "demo" else Path(model).stem
cases = [Case(predictor, s, Path(args[0]) / cache, user=user) for s in seeds]
for spec in args[1:]:
    name, opts, patch = (spec.split("|") + ["", ""])[:3]
    exec(patch or "pass")
    timer, rows = Timer(), []
    for case in cases:
        found, labels = all_at_once(case, timer, **(eval(opts) if opts else {}))
        for oid in case.ids:
            iou, res = found[oid]
            obj, mine = case.truth == oid, labels == oid
            ta, fa = obj.sum(axis=(1, 2)), mine.sum(axis=(1, 2))
            tz, fz = np.flatnonzero(ta), np.flatnonzero(fa)
            stops = "; ".join(f"{'up' if s.direction > 0 else 'dn'}:{s.reason}@{s.rejected_slice}" for s in res.stops) if res else ""
            z0, click = case.clicks[oid][:2]
            level = calibrate(case.stack[z0], click) if show else None
            strength = lambda q: f"({level.strength(case.stack[q], mine[q]):.2f})" if level is not None and mine[q].any() else ""
            rows.append((iou, case.seed, oid, tz[0], tz[-1], fz[0] if fz.size else -1, fz[-1] if fz.size else -1, stops,
                         " ".join(f"{z}:{ta[z]}/{fa[z]}{strength(z)}" for z in range(max(0, tz[0] - 2), min(len(ta), tz[-1] + 3)))))
    vals = np.array([r[0] for r in rows])
    print(f"{name:30s} seeds {','.join(map(str, seeds))} mean {vals.mean():.3f} median {np.median(vals):.3f} min {vals.min():.3f} <0.5 {(vals < 0.5).sum()} "
          f"ms/slice {timer.ms_per_slice:.1f}", flush=True)
    print("  deciles " + " ".join(f"{q:.2f}" for q in np.quantile(vals, np.linspace(0, 1, 11))), flush=True)
    for r in sorted(rows)[:show]:
        print(f"  {r[0]:.3f} s{r[1]} #{r[2]} true {r[3]}-{r[4]} found {r[5]}-{r[6]} | {r[7]}\n      {r[8]}")
