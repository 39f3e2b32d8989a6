"""A stand-in for ``napari-sam-annotator train`` in fine-tuning tests: the same lines, files and exit statuses.

Run as ``fake_train.py train --data DIR --init BASE --out OUT --steps N [--held-out F --report R] ...``.
It prints train's step lines, writes the shipped demo model to OUT atomically
(so it loads) and, with --report, the report of the held-out contract. Like
train, SIGTERM saves OUT.partial and exits 143 with train's message; a later
run finds the partial and only writes the model. The environment variable
FAKE_TRAIN picks a behaviour: ok (default), slow (0.2 s a step), quiet (slow, no step lines), disk_full,
no_report, bad_model; FAKE_TRAIN_PID_FILE: a file to write this process's pid to.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import napari_sam
from napari_sam.atomic import write_atomically

DEMO = Path(napari_sam.__file__).with_name("models") / "demo_nuclei.pt"
PROG = "napari-sam-annotator train"
SCORES_BEFORE = {"one_click_iou": 0.61, "noc90": 7.5, "accepted_share": 0.2, "msa": 0.31, "objects": 12}
SCORES_AFTER = {"one_click_iou": 0.83, "noc90": 3.25, "accepted_share": 0.55, "msa": 0.52, "objects": 12}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("command")
    p.add_argument("--data", required=True)
    p.add_argument("--init", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--held-out", type=float, default=0.0)
    p.add_argument("--report")
    args, _ = p.parse_known_args()
    mode = os.environ.get("FAKE_TRAIN", "ok")
    if os.environ.get("FAKE_TRAIN_PID_FILE"):
        Path(os.environ["FAKE_TRAIN_PID_FILE"]).write_text(str(os.getpid()))
    out = Path(args.out)
    partial = out.with_name(out.name + ".partial")
    done = 0
    if partial.exists():
        done = int(partial.read_text())
        print(f"resuming {partial} at step {done} of {args.steps}", flush=True)

    def on_sigterm(signum, frame):
        partial.write_text(str(done))
        print(f"{PROG}: stopped by SIGTERM after step {done}; the run was saved to {partial}: run the same "
              "command again to continue", file=sys.stderr, flush=True)
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_sigterm)
    print(f"training demo from model '{args.init}' on a folder {args.data}, device cpu", flush=True)
    for step in range(done, args.steps):
        if mode in ("slow", "quiet"):
            time.sleep(0.2)
        done = step + 1
        if mode == "quiet":  # a long step: nothing printed, so a dead reader breaks no pipe
            continue
        left = (args.steps - done) * (0.2 if mode == "slow" else 0.0)
        print(f"step {done}/{args.steps}  loss {1.0 / done:.4f}  mIoU 0.700 first prompt, 0.800 after 3 round(s)  "
              f"lr 4.00e-04  5.00 it/s  ETA {int(left) // 60}:{int(left) % 60:02d}", flush=True)
    if mode == "disk_full":
        print(f"{PROG}: error: cannot write {out}: the disk is full (or the quota is used up); the trained run is "
              f"kept in {partial}: make room (or fix the folder) and run the same command again to write the model",
              file=sys.stderr, flush=True)
        partial.write_text(str(done))
        return 2
    if mode == "bad_model":
        write_atomically(out, lambda f: f.write(b"not a model"))
    else:
        write_atomically(out, lambda f: shutil.copyfileobj(DEMO.open("rb"), f))
    partial.unlink(missing_ok=True)
    if args.report and mode != "no_report":
        report = {"before": SCORES_BEFORE, "after": SCORES_AFTER, "held_out": ["img0"], "auto_settings": {},
                  "steps": args.steps, "minutes": 0.01}
        write_atomically(Path(args.report), lambda f: f.write(json.dumps(report).encode()))
    print(f"saved {out} after {args.steps} steps (0:00 this session)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
