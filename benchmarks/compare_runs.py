"""Compare two runs scored on the same validation images: McNemar's paired test, and the spread between seeds.

    python benchmarks/compare_runs.py results/full_run_seeds_recipe-cpu-X-2cpu.json results/full_run-cpu-Y-2cpu.json

Each JSON is one `full_run.py` wrote (it saves which validation images the final model got right, `val_correct`, with a
digest of the split). The two must come from the same validation images. The first run is called a win, a loss or a
tie against the second: a win or a loss needs the paired test's p < 0.05 (`--alpha`) *and* a difference larger than the
seed spread, how far apart the same recipe lands with another seed (`--seed-spread`, in points; default 0.20, seeds 0
and 1 of the recipe in `benchmarks/README.md`). `--tta` compares the flip-TTA answers instead of the plain ones.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cifar_gradcam.evaluate import paired_test, verdict
from full_run import unpack_correct

#: How far apart the recipe landed at seeds 0 and 1 (89.16% and 89.36%, benchmarks/README.md), in points.
SEED_SPREAD = 0.20


def compare(a: dict, b: dict, tta: bool = False, seed_spread: float = SEED_SPREAD, alpha: float = 0.05) -> dict:
    "The paired test of run `a` against run `b` (two full_run.py reports) and its verdict for `a`."
    for r in (a, b):
        if "val_correct" not in r:
            raise SystemExit(f"{r.get('benchmark', 'a report')} has no val_correct (per-image answers): report the run again "
                             "with full_run.py --from-run DIR, or train it with full_run.py")
    if a["val_correct"]["val_sha1"] != b["val_correct"]["val_sha1"] or a["val_images"] != b["val_images"]:
        raise SystemExit("the two runs were scored on different validation images: a paired test needs the same images")
    key = "flip_tta" if tta else "plain"
    t = paired_test(*(unpack_correct(r["val_correct"][key], r["val_images"]) for r in (a, b)))
    return {**t, "answers": key, "seed_spread_points": seed_spread, "alpha": alpha,
            "verdict": verdict(t, seed_spread=seed_spread / 100, alpha=alpha)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", type=Path, help="a full_run.py JSON: the run being judged")
    p.add_argument("b", type=Path, help="a full_run.py JSON: the run it is judged against")
    p.add_argument("--tta", action="store_true", help="compare the flip-TTA answers")
    p.add_argument("--seed-spread", type=float, default=SEED_SPREAD, help="points (default %(default)s)")
    p.add_argument("--alpha", type=float, default=0.05)
    args = p.parse_args()
    a, b = (json.loads(path.read_text()) for path in (args.a, args.b))
    r = compare(a, b, args.tta, args.seed_spread, args.alpha)
    print(f"{args.a.name} against {args.b.name} on {r['n']:,} validation images ({r['answers']} answers):\n"
          f"  accuracy {r['acc_a']:.2%} against {r['acc_b']:.2%}: {100 * r['diff']:+.2f} points\n"
          f"  images only the first got right {r['only_a']}, only the second {r['only_b']}; McNemar's exact p = {r['p_value']:.3g}\n"
          f"  seed spread {r['seed_spread_points']:.2f} points -> {r['verdict'].upper()} for the first run")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
