#!/usr/bin/env python
"""ASAL vs Random initialisation (Kim & Bae 2023, seed 001): PRINTS learning-curve figures.

Not a test and not a timed harness. Two settings, each with >= 3 seeds on the same split:

* ``textures``: the embedded texture-defect set (brick, grass, gravel), merged and re-split 80/20 as the
  seed; DRAEM_mixed (short CPU settings) ranks the pool (ASAL's score), DRAEM_normal is a reference line;
  small CNN classifier.
* ``loco``: the real MVTec LOCO juice_bottle subset in ``../shared/data`` (all its images merged and re-split
  80/20), handled exactly as the textures (DRAEM_mixed scores, small CNN).
* ``adbench``: ADBench's MVTec-AD ImageNet-ResNet-18 embeddings (512-d, ``adbench_cv_resnet18/MVTec-AD_*.npz``),
  merged train+test by ADBench, re-split 80/20 here. **IsolationForest on the unlabelled pool** replaces DRAEM
  as ASAL's score (``IForest_mixed``); ``IForest_normal`` (pool normals only) and ``OCSVM_mixed`` are reference
  lines; MLP classifier on the standardised embeddings (features of the pretrained backbone, which is the
  closest CPU stand-in for the seed's ImageNet ResNet-18).

Printed: test AUROC (mean ± std over seeds) at several label budgets and averaged over the curve, the
anomalies in the initial set, the reference lines, per data set ``ASAL >= Random (curve mean)? MET/MISSED``, and
the issue's target: ASAL's AUROC at 10 labels >= Random's + 0.05 on average over the image data sets (embedded
textures and LOCO juice_bottle; the ADBench embeddings are reported beside it).
The seed publishes no numbers (only a figure), so there is no paper column.

Usage (from the repository root):
    python benchmarks/asal.py                                  # both settings, 3 seeds, writes benchmarks/results/
    python benchmarks/asal.py --settings adbench --categories bottle cable --seeds 5 --no-save
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np
import pandas as pd
import torch

from _common import default_data_dir, eprint, load_avg  # noqa: E402
from kdal_lib.asal import asal_data_from_arrays, asal_data_from_task, compare_inits
from kdal_lib.metrics import auroc

TEXTURES = ("brick", "grass", "gravel")
MVTEC = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw",
         "tile", "toothbrush", "transistor", "wood", "zipper")


def run_textures(args, seeds, data_dir=None):
    from kdal_lib.asal import scores_from_files
    from kdal_lib.data import load_image_task
    from kdal_lib.draem import DRAEM, score_pool_for_asal
    from kdal_lib.score_files import read_score_files

    frames, refs, extra = [], {}, []
    scores_root = Path(args.work) / "scores"
    sets = [("embedded", c, f"textures/{c}") for c in args.textures]
    if "loco" in args.settings:
        if data_dir is None:
            eprint("no data folder: skipping the LOCO juice_bottle setting")
        else:
            sets.append(("loco", "juice_bottle", "loco/juice_bottle"))
    for kind, c, label in sets:
        t0 = time.perf_counter()
        task = load_image_task(kind, c, args.image_size, random_state=args.split_seed,
                               **({"data_dir": data_dir} if kind == "loco" else {}))
        data = asal_data_from_task(task, split_seed=args.split_seed)
        make = lambda s: DRAEM(recon_width=16, disc_width=8, epochs=args.draem_epochs, batch_size=8, lr=1e-3,
                               device=args.device, random_state=s)
        recs = score_pool_for_asal(task, make, scores_root, seed=args.split_seed,
                                   checkpoint_dir=Path(args.work) / "draem")
        read_score_files(scores_root, task.name)
        scores = scores_from_files(data, scores_root)
        refs[label] = {r["method"]: r["image_AUROC"] for r in recs}
        extra.append({"dataset": label, "score_pool_AUROC": auroc(data.y_pool, scores),
                      "pool": len(data.y_pool), "pool_anomaly_rate": float(data.y_pool.mean()),
                      "score_s": time.perf_counter() - t0})
        eprint(f"[{label}] DRAEM scores in {time.perf_counter() - t0:.0f} s; refs {refs[label]}")
        data.name = label
        f, _ = compare_inits(data, scores, seeds=seeds, model="small_cnn", norm=args.norm, epochs=args.epochs,
                             n_cycles=args.cycles, k=args.k, device=args.device)
        frames.append(f)
        eprint(f"[{label}] active learning done ({time.perf_counter() - t0:.0f} s in all)")
    return frames, refs, extra


def run_adbench(args, seeds, data_dir):
    from kdal_lib.baselines import IsolationForestDetector, OCSVMDetector

    frames, refs, extra = [], {}, []
    for c in args.categories:
        t0 = time.perf_counter()
        path = Path(data_dir) / "adbench_cv_resnet18" / f"MVTec-AD_{c}.npz"
        if not path.is_file():
            raise SystemExit(f"missing {path}: ADBench MVTec-AD embeddings (see shared/data/MANIFEST.md)")
        z = np.load(path, allow_pickle=True)
        data = asal_data_from_arrays(z["X"], z["y"], f"adbench/{c}", split_seed=args.split_seed)
        mu, sd = data.X_pool.mean(0), data.X_pool.std(0) + 1e-8
        Xp, Xt = (data.X_pool - mu) / sd, (data.X_test - mu) / sd
        iso = IsolationForestDetector(random_state=args.split_seed).fit(Xp)
        scores = iso.decision_function(Xp)
        iso_n = IsolationForestDetector(random_state=args.split_seed).fit(Xp[data.y_pool == 0])
        oc = OCSVMDetector().fit(Xp)
        refs[data.name] = {"IForest_mixed": auroc(data.y_test, iso.decision_function(Xt)),
                           "IForest_normal": auroc(data.y_test, iso_n.decision_function(Xt)),
                           "OCSVM_mixed": auroc(data.y_test, oc.decision_function(Xt))}
        extra.append({"dataset": data.name, "score_pool_AUROC": auroc(data.y_pool, scores), "pool": len(data.y_pool),
                      "pool_anomaly_rate": float(data.y_pool.mean()), "score_s": time.perf_counter() - t0})
        f, _ = compare_inits(data, scores, seeds=seeds, model="mlp", epochs=args.epochs, n_cycles=args.cycles, k=args.k,
                             device=args.device)
        frames.append(f)
        eprint(f"[{data.name}] done in {time.perf_counter() - t0:.0f} s; refs "
               + ", ".join(f"{k} {v:.3f}" for k, v in refs[data.name].items()))
    return frames, refs, extra


def fmt(x: pd.Series) -> str:
    return f"{x.mean():.3f} ± {x.std(ddof=1) if len(x) > 1 else 0.0:.3f}"


def tables(frame, refs, extra, budgets):
    rows, targets = [], []
    ex = {e["dataset"]: e for e in extra}
    for ds, g in frame.groupby("dataset", sort=False):
        curve = {}
        for m, gm in g.groupby("method", sort=False):
            row = {"dataset": ds, "method": m, "init anomalies": f"{gm[gm['cycle'] == 0]['n_anomalies'].mean():.2f}"}
            for b in budgets:
                row[f"AUROC@{b}"] = fmt(gm[gm["n_labels"] == b]["AUROC"]) if (gm["n_labels"] == b).any() else "—"
            per_seed = gm.groupby("seed")["AUROC"].mean()
            curve[m] = per_seed
            row["AUROC curve mean"] = fmt(per_seed)
            last = gm["n_labels"].max()
            row[f"accuracy@{last}"] = fmt(gm[gm["n_labels"] == last]["accuracy"])
            rows.append(row)
        for name, v in refs.get(ds, {}).items():
            rows.append({"dataset": ds, "method": f"{name} (unsupervised reference)", "init anomalies": "",
                         **{f"AUROC@{b}": "" for b in budgets}, "AUROC curve mean": f"{v:.3f}"})
        if {"ASAL", "Random"} <= set(curve):
            a, r = curve["ASAL"].mean(), curve["Random"].mean()
            targets.append(f"{ds:<22} ASAL {a:.3f} >= Random {r:.3f} (AUROC curve mean)?  {'MET' if a >= r else 'MISSED'}"
                           f"   [score ranks the pool with AUROC {ex.get(ds, {}).get('score_pool_AUROC', float('nan')):.3f}; "
                           f"pool anomaly rate {ex.get(ds, {}).get('pool_anomaly_rate', float('nan')):.3f}]")
    first = int(frame["n_labels"].min())
    for group, prefixes in (("image data sets (textures + LOCO)", ("textures/", "loco/")), ("ADBench embeddings", ("adbench/",))):
        gaps = {}
        for ds, g in frame[frame["dataset"].str.startswith(prefixes)].groupby("dataset", sort=False):
            at = g[g["n_labels"] == first].groupby("method")["AUROC"].mean()
            if {"ASAL", "Random"} <= set(at.index):
                gaps[ds] = float(at["ASAL"] - at["Random"])
        if gaps:
            mean_gap = float(np.mean(list(gaps.values())))
            targets.append(f"{group}: AUROC@{first} ASAL - Random = {mean_gap:+.3f} on average (target >= +0.05)?  "
                           f"{'MET' if mean_gap >= 0.05 else 'MISSED'}   [" + ", ".join(f"{k} {v:+.3f}" for k, v in gaps.items()) + "]")
    return pd.DataFrame(rows), targets


def md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) if pd.notna(v) else "" for v in r) + " |" for r in df[cols].itertuples(index=False)]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", nargs="+", default=["textures", "loco", "adbench"], choices=("textures", "loco", "adbench"))
    ap.add_argument("--textures", nargs="+", default=list(TEXTURES))
    ap.add_argument("--categories", nargs="+", default=list(MVTEC), help="ADBench MVTec-AD categories")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--draem-epochs", type=int, default=6)
    ap.add_argument("--norm", default="group", choices=("group", "batch"), help="small CNN normalisation (textures)")
    ap.add_argument("--epochs", type=int, default=20, help="classifier epochs per cycle (seed: 20)")
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-dir", default=None, help="default: $KDAL_DATA, else ../shared/data from the repo root")
    ap.add_argument("--work", default=None, help="DRAEM models and score files (default: a temporary folder)")
    ap.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    import tempfile

    args.work = args.work or tempfile.mkdtemp(prefix="asal_bench_")
    seeds = list(range(args.seeds))
    data_dir = default_data_dir(args.data_dir)
    out_dir = Path(args.out) if args.out else REPO / "benchmarks" / "results"
    cmd = "python " + shlex.join([os.path.relpath(__file__, Path.cwd())] + list(argv if argv is not None else sys.argv[1:]))
    header = ["# ASAL benchmark: ASAL vs Random initialisation (figures, not a timed test)", "",
              f"- date: {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
              f"- machine: {os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
              f"python {platform.python_version()}, CUDA available: {torch.cuda.is_available()}, device={args.device}",
              f"- command: `{cmd}`", f"- data: {data_dir}",
              f"- load average at start (1/5/15 min): {load_avg()} (shared machine; timings are noisy)"]
    print("\n".join(header[2:]))
    t0 = time.perf_counter()
    frames, refs, extra = [], {}, []
    if "textures" not in args.settings:
        args.textures = []
    if args.textures or "loco" in args.settings:
        f, r, e = run_textures(args, seeds, data_dir)
        frames += f; refs.update(r); extra += e
    if "adbench" in args.settings:
        if data_dir is None:
            eprint("no data folder: skipping the ADBench setting")
        else:
            f, r, e = run_adbench(args, seeds, data_dir)
            frames += f; refs.update(r); extra += e
    frame = pd.concat(frames, ignore_index=True)
    first = int(frame["n_labels"].min())
    budgets = sorted({first, first + 2 * args.k, first + 4 * args.k, int(frame["n_labels"].max())})
    table, targets = tables(frame, refs, extra, budgets)
    settings = [
        f"- protocol: per data set merge + stratified 80/20 re-split (split seed {args.split_seed}); {len(seeds)} "
        f"active-learning seeds ({seeds}) on that split; {args.cycles} rounds, cold start 10 labels (ASAL: top 2 of 5 "
        f"score strata; Random: 10 uniform), then K={args.k} least-confident unlabelled item(s) per cycle; warm start, "
        f"Adam 1e-3, batch 10, {args.epochs} epochs per cycle, epoch chosen by validation loss on 20 % of the labelled "
        "items (never the test split). Test AUROC of p(anomaly), mean ± std over seeds.",
        f"- textures: embedded brick/grass/gravel at {args.image_size} px; ASAL score = DRAEM_mixed ({args.draem_epochs} "
        f"epochs, widths 16/8) on the pool; small CNN classifier ({args.norm} norm). LOCO juice_bottle (real, "
        "180 images: 130 good, 50 logical anomalies) the same way.",
        "- adbench: MVTec-AD ImageNet-ResNet-18 embeddings from ADBench; ASAL score = **IsolationForest on the unlabelled "
        "pool (IForest_mixed), in place of DRAEM**; MLP (one hidden layer of 64) on standardised embeddings. "
        "IForest_normal is fitted on the pool's normal items (uses labels: reference only).",
        "- 'unsupervised reference' rows: the detector's test AUROC (no labels used by *_mixed), in the curve-mean column.",
    ]
    body = ["", "## Settings", "", *settings, "", "## AUROC against labels used", "", md_table(table), "",
            "## Targets", "", "```", *targets, "```", "",
            f"Total runtime: {time.perf_counter() - t0:.0f} s; load average at end: {load_avg()}."]
    print("\n".join(body))
    if not args.no_save:
        out_dir.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out_dir / "asal.csv", index=False)
        (out_dir / "asal.md").write_text("\n".join(header + body) + "\n\nPer-seed, per-cycle records: `asal.csv`.\n")
        eprint(f"wrote {out_dir / 'asal.md'} and {out_dir / 'asal.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
