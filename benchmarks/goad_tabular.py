#!/usr/bin/env python
"""GOAD on the paper's tabular benchmarks (Bergman & Hoshen, ICLR 2020, Table 3): PRINTS figures.

Not a test and not a timed benchmark harness: it fits GOAD and the baselines on Thyroid,
Arrhythmia and KDDCUP99 under the paper's protocols, for several seeds, and prints F1 at the
oracle threshold (the paper's protocol), AUROC, AUPR and fit times beside the paper's figures,
then a "targets" block (GOAD F1 >= paper F1? KDD GOAD fit <= 300 s on this machine?).

Protocols (``load_task(name, protocol="auto", random_state=seed)``):
  thyroid, arrhythmia -- GOAD §5.2: train = the first half of the normal rows (file order),
                         test = the other normals + all anomalies; the split is the same for every seed.
  kdd                 -- DAGMM/GOAD: "normal." traffic is the anomaly class (label inversion);
                         train = a random 50 % of the attacks, drawn per seed, so the task is reloaded per seed.

Usage (from the repository root):
    python benchmarks/goad_tabular.py --quick                      # 2 seeds, thyroid + arrhythmia, prints only
    python benchmarks/goad_tabular.py --kdd-seeds 3                # the full run, writes benchmarks/results/
    python benchmarks/goad_tabular.py --datasets kdd --seeds 1 --methods GOAD --no-save \\
        --goad-override kdd:epochs=2 kdd:batch_size=64             # try other GOAD settings on one seed

Progress goes to stderr (one line per dataset x seed x method); figures go to stdout.
Outputs (unless ``--no-save``): ``<out>/goad_tabular.csv`` (every per-seed record) and
``<out>/goad_tabular.md`` (date, machine, command line, the summary table and the targets).
"""
from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import platform
import shlex
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from _common import default_data_dir, eprint, load_avg, md_table  # noqa: E402
from kdal_lib.baselines import OCSVMDetector  # noqa: E402
from kdal_lib.compare import compare_detectors  # noqa: E402
from kdal_lib.data.tabular import load_task  # noqa: E402
from kdal_lib.goad import preset_for, tabular_detectors  # noqa: E402
from kdal_lib.metrics import summarize  # noqa: E402

#: GOAD paper, Table 3: F1 (%) at the oracle threshold, mean ± std.
PAPER_GOAD_F1 = {"thyroid": (74.5, 1.1), "arrhythmia": (52.0, 2.3), "kdd": (98.4, 0.2)}
#: OC-SVM F1 (%) as reported in the GOAD paper's Table 3 (no std given).
PAPER_OCSVM_F1 = {"thyroid": 38.9, "arrhythmia": 45.8, "kdd": 79.5}
KDD_FIT_TARGET_S = 300.0
DEFAULT_METHODS = ("GOAD", "OCSVM", "IsolationForest", "PCA")
ALL_METHODS = ("GOAD", "GOAD+AE", "AE", "OCSVM", "IsolationForest", "PCA")
CSV_FIELDS = ("dataset", "method", "seed", "F1_oracle", "AUROC", "AUPR", "best_F1", "fit_s", "score_s",
              "n_train", "n_test", "contamination", "settings")


def canonical(name: str) -> str:
    low = name.lower()
    return "kdd" if low in ("kdd", "kddcup", "kddcup99", "kdd99") else low


def parse_overrides(items) -> dict:
    """``["epochs=2", "kdd:batch_size=64"]`` -> ``{"*": {"epochs": 2}, "kdd": {"batch_size": 64}}``."""
    out: dict = {}
    for item in items or []:
        scope, _, kv = item.rpartition(":") if ":" in item.split("=", 1)[0] else ("*", "", item)
        key, sep, val = kv.partition("=")
        if not sep or not key:
            raise SystemExit(f"--goad-override expects KEY=VALUE or DATASET:KEY=VALUE, got {item!r}")
        try:
            value = ast.literal_eval(val)
        except (ValueError, SyntaxError):
            value = val
        out.setdefault(canonical(scope) if scope != "*" else "*", {})[key] = value
    return out


def machine_info(device: str) -> dict:
    cpu_model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model or "unknown",
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "device": device,
    }


def fmt_pm(mu: float, sd: float, scale: float = 100.0, digits: int = 1) -> str:
    return f"{mu * scale:.{digits}f} ± {sd * scale:.{digits}f}"


def summary_rows(records, datasets, methods):
    s = summarize(records, by=("dataset", "method"), metrics=["F1_oracle", "AUROC", "AUPR", "fit_s", "score_s"])
    rows = []
    for ds in datasets:
        for m in methods:
            hit = s[(s["dataset"] == ds) & (s["method"] == m)] if len(s) else s
            if len(hit) == 0:
                continue
            r = hit.iloc[0]
            paper = ""
            if m == "GOAD" and ds in PAPER_GOAD_F1:
                paper = f"{PAPER_GOAD_F1[ds][0]:.1f} ± {PAPER_GOAD_F1[ds][1]:.1f}"
            elif m == "OCSVM" and ds in PAPER_OCSVM_F1:
                paper = f"{PAPER_OCSVM_F1[ds]:.1f}"
            rows.append([ds, m, int(r["n_seeds"]), fmt_pm(r["F1_oracle_mean"], r["F1_oracle_std"]),
                         fmt_pm(r["AUROC_mean"], r["AUROC_std"]), fmt_pm(r["AUPR_mean"], r["AUPR_std"]),
                         f"{r['fit_s_mean']:.1f}", f"{r['score_s_mean']:.1f}", paper or "—"])
    return s, rows


SUMMARY_HEADER = ["dataset", "method", "seeds", "F1 (oracle threshold) %", "AUROC %", "AUPR %",
                  "fit s (mean)", "score s (mean)", "paper F1 (oracle) %"]


def targets_lines(s, datasets, records) -> list[str]:
    lines = []
    for ds in datasets:
        if ds not in PAPER_GOAD_F1:
            continue
        hit = s[(s["dataset"] == ds) & (s["method"] == "GOAD")] if len(s) else s
        if len(hit) == 0:
            lines.append(f"{ds:<11} GOAD F1 (oracle) >= paper {PAPER_GOAD_F1[ds][0]:.1f}?  NOT RUN (no GOAD results)")
            continue
        r = hit.iloc[0]
        mu, sd, n = 100 * r["F1_oracle_mean"], 100 * r["F1_oracle_std"], int(r["n_seeds"])
        ok = mu >= PAPER_GOAD_F1[ds][0]
        lines.append(f"{ds:<11} GOAD F1 (oracle threshold) {mu:.1f} ± {sd:.1f} ({n} seed{'s' if n != 1 else ''}) >= paper "
                     f"{PAPER_GOAD_F1[ds][0]:.1f} ± {PAPER_GOAD_F1[ds][1]:.1f}?  {'MET' if ok else 'MISSED'}"
                     + ("" if ok else f" (by {PAPER_GOAD_F1[ds][0] - mu:.1f} points"
                                      + ("; within the paper's std" if PAPER_GOAD_F1[ds][0] - mu <= PAPER_GOAD_F1[ds][1]
                                         else "") + ")"))
        if ds == "kdd":
            fit_mu = r["fit_s_mean"]
            fits = sorted(float(x["fit_s"]) for x in records if x["dataset"] == ds and x["method"] == "GOAD")
            spread = (f"; per seed min {fits[0]:.0f} / median {fits[len(fits) // 2]:.0f} / max {fits[-1]:.0f} s"
                      if len(fits) > 1 else "")
            lines.append(f"{ds:<11} GOAD fit time {fit_mu:.0f} s (mean over {n} seed{'s' if n != 1 else ''}{spread}) "
                         f"<= {KDD_FIT_TARGET_S:.0f} s on this machine?  {'MET' if fit_mu <= KDD_FIT_TARGET_S else 'MISSED'}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["thyroid", "arrhythmia", "kdd"])
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds (0..n-1) per data set (default 5)")
    ap.add_argument("--kdd-seeds", type=int, default=None, help="seeds for KDD only (default: --seeds)")
    ap.add_argument("--methods", nargs="+", default=None, help=f"default {' '.join(DEFAULT_METHODS)}")
    ap.add_argument("--all-methods", action="store_true", help=f"run {' '.join(ALL_METHODS)}")
    ap.add_argument("--preset", choices=("cpu", "paper"), default="cpu",
                    help="GOAD settings: cpu = preset_for(name, 'auto', cpu=True) (default), paper = the original's")
    ap.add_argument("--goad-override", nargs="+", default=[], metavar="[DATASET:]KEY=VALUE",
                    help="override GOAD settings, e.g. epochs=2 or kdd:batch_size=64 (also applies to GOAD+AE)")
    ap.add_argument("--kdd-ocsvm-max-samples", type=int, default=20000,
                    help="OCSVM fit subsample on KDD (kernel OCSVM is O(n^2); default 20000)")
    ap.add_argument("--ae-epochs", type=int, default=50)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-dir", default=None, help="default: $KDAL_DATA, else ../shared/data from the repo root")
    ap.add_argument("--out", default=None, help="output folder (default benchmarks/results; --quick: no files)")
    ap.add_argument("--no-save", action="store_true", help="print only, write no files")
    ap.add_argument("--quick", action="store_true", help="2 seeds, thyroid + arrhythmia only (a fast check)")
    ap.add_argument("--from-csv", default=None, metavar="CSV",
                    help="fit nothing: summarise the per-seed records of an earlier run's CSV (e.g. one stopped "
                         "early) and write only the .md next to --out")
    ap.add_argument("--note", action="append", default=[], help="a line added to the Settings section (repeatable)")
    args = ap.parse_args(argv)

    if args.quick:
        args.seeds = 2
        args.datasets = [d for d in args.datasets if canonical(d) in ("thyroid", "arrhythmia")] or \
            ["thyroid", "arrhythmia"]
        args.kdd_seeds = None
    save = not args.no_save and not (args.quick and args.out is None)
    out_dir = Path(args.out) if args.out else REPO / "benchmarks" / "results"
    methods = list(ALL_METHODS if args.all_methods else (args.methods or DEFAULT_METHODS))
    datasets = [canonical(d) for d in args.datasets]
    overrides = parse_overrides(args.goad_override)
    data_dir = default_data_dir(args.data_dir)
    if args.seeds < 1 or (args.kdd_seeds is not None and args.kdd_seeds < 1):
        raise SystemExit("--seeds/--kdd-seeds must be >= 1")

    info = machine_info(args.device)
    cmdline = "python " + shlex.join([os.path.relpath(__file__, Path.cwd())] + list(argv if argv is not None else sys.argv[1:]))
    header = [
        "# GOAD tabular benchmark (figures, not a timed test)",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['cpu_count']} CPU cores ({info['cpu_model']}), torch {info['torch']} with "
        f"{info['torch_threads']} threads, python {info['python']}, CUDA available: {info['cuda']}, "
        f"device={info['device']}; {info['platform']}",
        f"- command: `{cmdline}`",
        f"- data: {data_dir}",
        f"- load average at start (1/5/15 min): {load_avg()} (other work shares this machine; timings are noisy)",
    ]
    print("\n".join(line[2:] for line in header[2:]))
    if args.from_csv:
        return summarise_csv(args, header, out_dir)

    settings: dict = {}
    notes: list[str] = []
    records: list[dict] = []
    csv_path = out_dir / "goad_tabular.csv"
    if save:
        out_dir.mkdir(parents=True, exist_ok=True)
        fh = open(csv_path, "w", newline="")
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        fh.flush()
    def _stop(signum, frame):
        raise KeyboardInterrupt

    # Ctrl-C or `kill PID` stops the run and still summarises (and saves) the finished fits
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    t_start = time.perf_counter()
    total_jobs = sum((args.kdd_seeds or args.seeds) if d == "kdd" else args.seeds for d in datasets) * len(methods)
    try:
        run_all(args, datasets, methods, overrides, data_dir, settings, notes, records, save, writer if save else None,
                fh if save else None, t_start, total_jobs)
    except KeyboardInterrupt:
        notes.append(f"run STOPPED (Ctrl-C / SIGTERM) after {len(records)} of {total_jobs} fits; the figures below "
                     "cover what finished.")
        eprint("interrupted: summarising the finished fits")
    if save:
        fh.close()
    total_s = time.perf_counter() - t_start
    settings_lines = [f"- GOAD settings ({args.preset} preset{' + overrides' if overrides else ''}) for {ds}: "
                      f"`{json.dumps(kw, sort_keys=True)}`" for ds, kw in settings.items()]
    report(records, datasets, methods, settings_lines, notes + args.note, header, save, out_dir,
           f"Total runtime: {total_s:.0f} s ({total_s / 60:.1f} min); load average at end: {load_avg()}.")
    return 0


def run_all(args, datasets, methods, overrides, data_dir, settings, notes, records, save, writer, fh, t_start,
            total_jobs) -> None:
    job = 0
    for ds in datasets:
        goad_kwargs = preset_for(ds, "auto", cpu=(args.preset == "cpu"))
        goad_kwargs.update(overrides.get("*", {}))
        goad_kwargs.update(overrides.get(ds, {}))
        factories = tabular_detectors(goad_kwargs, methods=methods, ae_epochs=args.ae_epochs, device=args.device,
                                      verbose=0)
        per_method = {m: "" for m in methods}
        for m in ("GOAD", "GOAD+AE"):
            if m in methods:
                per_method[m] = json.dumps(goad_kwargs, sort_keys=True)
        if "AE" in methods:
            per_method["AE"] = json.dumps({"epochs": args.ae_epochs})
        if "OCSVM" in methods:
            ms = args.kdd_ocsvm_max_samples if ds == "kdd" else OCSVMDetector().max_samples
            if ds == "kdd":
                factories["OCSVM"] = lambda seed, ms=ms: OCSVMDetector(max_samples=ms, random_state=seed)
            per_method["OCSVM"] = json.dumps({"max_samples": ms})
        settings[ds] = goad_kwargs
        n_seeds = (args.kdd_seeds or args.seeds) if ds == "kdd" else args.seeds
        for seed in range(n_seeds):
            t0 = time.perf_counter()
            task = load_task(ds, protocol="auto", random_state=seed, data_dir=data_dir)
            eprint(f"[{ds} seed {seed}] loaded: train {task.X_train.shape}, test {task.X_test.shape}, "
                   f"contamination {task.contamination:.3f}, protocol {task.meta.get('protocol')} "
                   f"({time.perf_counter() - t0:.1f}s)")
            if seed == 0 and ds == "kdd" and "OCSVM" in methods and len(task.X_train) > (args.kdd_ocsvm_max_samples or 0):
                notes.append(f"OCSVM on kdd: fitted on a seeded random subsample of {args.kdd_ocsvm_max_samples} of the "
                             f"{len(task.X_train)} training rows (kernel OCSVM is O(n^2)); scored on all "
                             f"{len(task.X_test)} test rows.")
            for m in methods:
                job += 1
                comp = compare_detectors(task, {m: factories[m]}, seeds=[seed], verbose=0)
                rec = comp.records[0]
                rec.update(dataset=ds, n_train=len(task.X_train), n_test=len(task.X_test),
                           contamination=round(task.contamination, 5), settings=per_method[m])
                records.append(rec)
                if save:
                    writer.writerow({k: rec.get(k) for k in CSV_FIELDS})
                    fh.flush()
                eprint(f"[{job:>3}/{total_jobs}] {ds:<10} seed {seed} {m:<15} F1(oracle) {rec['F1_oracle']:.4f}  "
                       f"AUROC {rec['AUROC']:.4f}  AUPR {rec['AUPR']:.4f}  fit {rec['fit_s']:.1f}s  "
                       f"score {rec['score_s']:.1f}s  (elapsed {time.perf_counter() - t_start:.0f}s)")


def summarise_csv(args, header, out_dir) -> int:
    """``--from-csv``: rebuild the summary and targets from an earlier run's per-seed records."""
    with open(args.from_csv, newline="") as fh:
        raw = list(csv.DictReader(fh))
    if not raw:
        raise SystemExit(f"{args.from_csv} holds no records")
    records, datasets, methods, settings_lines, notes = [], [], [], [], []
    for r in raw:
        rec = {k: r.get(k) for k in CSV_FIELDS}
        for k in ("F1_oracle", "AUROC", "AUPR", "best_F1", "fit_s", "score_s"):
            rec[k] = float(r[k])
        rec["seed"] = int(r["seed"])
        records.append(rec)
        if rec["dataset"] not in datasets:
            datasets.append(rec["dataset"])
        if rec["method"] not in methods:
            methods.append(rec["method"])
        if rec["method"] == "GOAD":
            line = f"- GOAD settings for {rec['dataset']}: `{rec['settings']}`"
            if line not in settings_lines:
                settings_lines.append(line)
        if rec["method"] == "OCSVM" and rec["dataset"] == "kdd" and rec["settings"]:
            ms = json.loads(rec["settings"]).get("max_samples")
            note = (f"OCSVM on kdd: fitted on a seeded random subsample of {ms} of the {r['n_train']} training rows "
                    f"(kernel OCSVM is O(n^2)); scored on all {r['n_test']} test rows.")
            if note not in notes:
                notes.append(note)
    notes.append(f"summarised from `{args.from_csv}` ({len(records)} per-seed records).")
    report(records, datasets, methods, settings_lines, notes + args.note, header, not args.no_save, out_dir, "")
    return 0


def report(records, datasets, methods, settings_lines, notes, header, save, out_dir, footer) -> None:
    csv_path = out_dir / "goad_tabular.csv"
    s, rows = summary_rows(records, datasets, methods)
    table = md_table(SUMMARY_HEADER, rows)
    targets = targets_lines(s, datasets, records)
    proto = ("- protocols: thyroid/arrhythmia = GOAD §5.2 (train on the first half of the normals, same split "
             "every seed); kdd = DAGMM/GOAD (normal traffic is the anomaly class; train on a random 50 % of the "
             "attacks, drawn per seed). Standard scaling fitted on the training rows.")
    metric_note = ("- F1 (oracle threshold) = F1 of the anomaly class when the threshold is set at the test set's "
                   "true anomaly fraction (the GOAD/DAGMM protocol; it assumes that fraction is known and is "
                   "optimistic). All metrics in %, mean ± std (ddof=1) over seeds. Fit/score times in seconds on "
                   "this machine (shared with other work, so noisy: see the load averages). Paper F1: GOAD and OC-SVM rows of "
                   "the GOAD paper's Table 3.")
    body = ["", "## Settings", "", proto, *settings_lines, *[f"- {n}" for n in notes], metric_note, "",
            "## Summary", "", table, "", "## Targets", "", "```", *targets, "```", "",
            footer]
    print("\n".join(body))
    if save:
        out_dir.mkdir(parents=True, exist_ok=True)
        md_path = out_dir / "goad_tabular.md"
        md_path.write_text("\n".join(header + body) + "\n" +
                           f"\nPer-seed records: `{csv_path.name}`.\n")
        eprint(f"wrote {md_path}" + ("" if footer == "" else f" and {csv_path}"))


if __name__ == "__main__":
    raise SystemExit(main())
