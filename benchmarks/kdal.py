#!/usr/bin/env python
"""KDAL on the seed's tabular sets (Kim & Bae, KIIE Spring 2024): PRINTS figures.

Not a test and not a timed harness. For Thyroid, Arrhythmia and KDDCUP99 (and KDDCUP-Rev) under the KDAL
protocol (rows merged, stratified seeded 80/20 split, the 80 % is the unlabelled pool with its anomalies),
for several seeds, it runs KDAL, random-query AL, least-confidence AL (random cold start) and an ASAL-style
stratified cold start with the same MLP, and prints test AUROC/AUPR against labels used beside the
detector alone (OCSVM; Nyström OCSVM above 10,000 pool rows) and IsolationForest/PCA fitted on the same
pool, the labels each method needs to reach the detector's AUROC and a target, the time per cycle, and
MET/MISSED for the issue's targets:
  * cycle 0 (no label) KDAL AUROC >= the detector's AUROC (mean over seeds);
  * at every budget, KDAL AUROC >= random-query AL (mean over seeds).
The KDAL README reports no numbers, so there is no paper column.

Usage (from the repository root):
    python benchmarks/kdal.py                                  # thyroid arrhythmia kdd kddrev, 3 seeds
    python benchmarks/kdal.py --datasets thyroid --seeds 1 --no-save
Progress goes to stderr; figures to stdout. Outputs (unless --no-save): <out>/kdal.csv, <out>/kdal.md.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import default_data_dir, eprint, md_table  # noqa: E402
from kdal_lib.baselines import IsolationForestDetector, OCSVMDetector, PCADetector  # noqa: E402
from kdal_lib.kdal import (EXTRA_METHODS, METHODS, detector_scores, load_kdal_task, make_detector,  # noqa: E402
                           run_comparison)
from kdal_lib.metrics import aupr, auroc  # noqa: E402

KERNEL_CAP = 5000  # kernel-OCSVM fit cap used to price the Nyström approximation on large pools


def pm(values, digits=3) -> str:
    v = np.asarray(list(values), dtype=float)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.{digits}f}"


def every_budget_line(ds: str, name: str, diff, note: str = "", tail: str = "") -> str:
    """The target line "``name`` >= Random at every budget?" from the per-budget gaps ``diff``."""
    verdict = "MET" if (diff >= 0).all() else "MISSED"
    return (f"{ds:<11} {name} >= Random at every budget{' ' + note if note else ''}?  {verdict} "
            f"({int((diff >= 0).sum())}/{len(diff)} budgets; worst {diff.min():+.3f} at {int(diff.idxmin())} labels{tail})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--datasets", nargs="+", default=["thyroid", "arrhythmia", "kdd", "kddrev"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--detector", default="auto")
    ap.add_argument("--soft-trust", default=None, choices=["none", "labelled_auroc"],
                    help="KDAL's soft-weight rule (default: the library default)")
    ap.add_argument("--no-trust-variant", action="store_true",
                    help="skip KDAL-trust (KDAL with the soft weight scaled by the detector's labelled AUROC)")
    ap.add_argument("--soft-weight", type=float, default=None, help="w_soft (default: the library default)")
    ap.add_argument("--no-kernel-check", action="store_true", help="skip the kernel-OCSVM price of Nyström")
    ap.add_argument("--nu-grid", type=float, nargs="*", default=[0.05, 0.1, 0.2, 0.5],
                    help="OCSVM nu values whose detector-alone test AUROC is printed (seed 0; nothing is chosen "
                         "from it; empty: skip)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    data_dir = default_data_dir(args.data_dir)
    if data_dir is None:
        raise SystemExit("no data folder: pass --data-dir or set KDAL_DATA")
    seeds = list(range(args.seeds))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    started = time.perf_counter()
    blocks, csv_rows, targets = [], [], []
    for ds in args.datasets:
        t_ds = time.perf_counter()
        extra = {}  # IsolationForest / PCA on the same pool, and the kernel-OCSVM check

        def loader(seed, ds=ds):
            t0 = time.perf_counter()
            task = load_kdal_task(ds, data_dir=data_dir, random_state=seed)
            load_s = time.perf_counter() - t0
            for name, det in (("IsolationForest", IsolationForestDetector(random_state=seed)),
                              ("PCA", PCADetector(random_state=seed))):
                det.fit(task.X_train)
                s = detector_scores(det, task.X_test)
                extra.setdefault(name, []).append((auroc(task.y_test, s), aupr(task.y_test, s)))
            if seed == 0 and len(task.X_train) > 10000 and not args.no_kernel_check:
                t1 = time.perf_counter()
                det = OCSVMDetector(max_samples=KERNEL_CAP, random_state=0).fit(task.X_train)
                det.decision_function(task.X_train)  # what KDAL would need: every pool row scored
                s = det.decision_function(task.X_test)
                extra["kernel"] = (auroc(task.y_test, s), time.perf_counter() - t1)
            if seed == 0 and args.nu_grid and args.detector == "auto":
                # sensitivity only: the detector KDAL distils at other nu (never used to pick a setting)
                for nu in args.nu_grid:
                    det, _ = make_detector("auto", len(task.X_train), nu=nu, random_state=0)
                    det.fit(task.X_train)
                    extra.setdefault("nu", []).append((nu, auroc(task.y_test, detector_scores(det, task.X_test))))
            eprint(f"[{ds}] seed {seed}: loaded in {load_s:.1f}s, pool {len(task.X_train)}")
            return task

        overrides = {k: v for k, v in (("soft_trust", args.soft_trust), ("soft_weight", args.soft_weight))
                     if v is not None}
        methods = METHODS if args.no_trust_variant else METHODS + EXTRA_METHODS
        comp = run_comparison(ds, seeds=seeds, methods=methods, detector=args.detector, data_dir=data_dir, task_loader=loader,
                              settings=overrides,
                              verbose=2 if os.environ.get("KDAL_VERBOSE") else 0)
        wall = time.perf_counter() - t_ds
        info, st = comp.dataset, comp.settings
        ref = comp.reference
        det_name = comp.detector_name
        lines = [f"### {info['name']} ({ds})", "",
                 f"pool {info['n_pool']} rows ({info['pool_anomalies']} anomalies), test {info['n_test']} "
                 f"({info['test_anomalies']} anomalies), d = {info['d']}; K = {st['k']}, {st['n_rounds']} rounds "
                 f"(budget {st['k'] * st['n_rounds']}), epochs {st['epochs']}, soft_samples {st['soft_samples']}, "
                 f"soft {st['soft_form']} × {st['soft_weight']} (trust: {st['soft_trust']}), T = {st['temperature']}; "
                 f"{len(seeds)} seeds; wall {wall:.0f} s", ""]
        rows = [[f"{det_name} alone (pool fit)", pm(ref.AUROC), pm(ref.AUPR), f"{ref.fit_s.mean():.1f} s fit+score pool"]]
        for name in ("IsolationForest", "PCA"):
            v = np.array(extra.get(name, []))
            if len(v):
                rows.append([f"{name} alone (pool fit)", pm(v[:, 0]), pm(v[:, 1]), ""])
        if "kernel" in extra:
            rows.append([f"kernel OCSVM, fit on {KERNEL_CAP} pool rows (seed 0)", f"{extra['kernel'][0]:.3f}", "",
                         f"{extra['kernel'][1]:.1f} s fit+score pool+test"])
        lines += [md_table(["reference", "AUROC", "AUPR", "time"], rows), ""]
        if "nu" in extra:
            lines += [f"{det_name} alone at other nu (seed 0, test AUROC; sensitivity only, the default nu = 0.1 "
                      "stays): " + ", ".join(f"nu {nu:g}: {a:.3f}" for nu, a in extra["nu"]), ""]
        budgets = sorted(comp.frame["n_labels"].unique())
        show = budgets if len(budgets) <= 8 else [budgets[i] for i in (0, 1, 2, 3, len(budgets) // 2, -2, -1)]
        for metric in ("AUROC", "AUPR"):
            head = ["method"] + [f"{int(b)} labels" for b in show]
            body = []
            for m in methods:
                g = comp.frame[comp.frame.method == m]
                body.append([m] + [pm(g[g.n_labels == b][metric]) if (g.n_labels == b).any() else "—" for b in show])
            lines += [f"test {metric} (mean ± std over seeds) against labels used:", "", md_table(head, body), ""]
        ref_auc = comp.reference_auroc()
        target = (ref_auc + 1) / 2
        saved = comp.labels_saved({f"{det_name} AUROC {ref_auc:.3f}": ref_auc, f"target {target:.3f}": target})
        body = [[m] + ["never" if np.isnan(v) else int(v) for v in saved.loc[m]] for m in saved.index]
        lines += ["labels needed for the mean curve to reach (target = halve the detector's AUROC gap to 1):", "",
                  md_table(["method"] + list(saved.columns), body), ""]
        secs = comp.cycle_seconds()
        lines += ["seconds per cycle (train + test scoring + query; loaded machine): " +
                  ", ".join(f"{m} {v:.2f}" for m, v in secs.items()), "", comp.verdict(), ""]
        kd = comp.mean_curve("KDAL")
        c0_ok = kd.iloc[0] >= ref_auc
        targets.append(f"{ds:<11} cycle-0 KDAL AUROC {kd.iloc[0]:.3f} >= {det_name} {ref_auc:.3f}?  "
                       f"{'MET' if c0_ok else 'MISSED'}")
        targets.append(every_budget_line(ds, "KDAL", comp.wins_over("Random"), "(mean over seeds)"))
        if "KDAL-trust" in methods:
            targets.append(every_budget_line(ds, "(extension) KDAL-trust", comp.wins_over("Random", "KDAL-trust"),
                                             "", f"; at the full budget {comp.mean_curve('KDAL-trust').iloc[-1]:.3f}"
                                                 f" vs KDAL {kd.iloc[-1]:.3f}"))
        block = "\n".join(lines)
        print(block, flush=True)
        blocks.append(block)
        for r in comp.records():
            csv_rows.append({"dataset": ds, **{k: r.get(k) for k in ("method", "seed", "cycle", "n_labels",
                                                                       "n_anomalies", "AUROC", "AUPR", "seconds")}})
        for name in ("IsolationForest", "PCA"):
            for seed, (a, p) in zip(seeds, extra.get(name, [])):
                csv_rows.append({"dataset": ds, "method": name, "seed": seed, "cycle": -1, "n_labels": 0,
                                 "n_anomalies": None, "AUROC": a, "AUPR": p, "seconds": None})
        eprint(f"[{ds}] done in {wall:.0f}s")
    target_block = "## Targets\n\n```\n" + "\n".join(targets) + "\n```"
    print(target_block)
    total = time.perf_counter() - started
    try:
        load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "n/a"
    header = ["# KDAL benchmark (benchmarks/kdal.py)", "",
              f"- date: {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; machine: {os.cpu_count()} CPUs, "
              f"torch {torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}; "
              f"load average at the end {load}; total {total:.0f} s",
              f"- command: `python benchmarks/kdal.py {shlex.join(sys.argv[1:] if argv is None else argv)}`",
              "- protocol: KDAL README: rows merged, stratified seeded 80/20 split (seed = split seed); the 80 % is "
              "the unlabelled pool, anomalies included; the detector is fitted on the pool only; standard scaling "
              "with pool statistics. KDD = all 494,021 rows, DAGMM label convention (`normal.` traffic = anomaly, "
              "20 %); KDD-Rev = `normal.` traffic normal, attacks sampled 4:1 as anomalies.",
              "- the KDAL README publishes no numbers: no paper column.", ""]
    if not args.no_save:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "kdal.md").write_text("\n".join(header) + "\n" + "\n\n".join(blocks) + "\n\n" + target_block + "\n")
        import csv

        with open(out / "kdal.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(csv_rows[0]))
            w.writeheader()
            w.writerows(csv_rows)
        eprint(f"wrote {out / 'kdal.md'} and {out / 'kdal.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
