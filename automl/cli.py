"""`automl` command line: search | validate | leaderboard | report | compare | export |
predict | backbones.

Each command imports what it needs inside its branch: `automl --help` and `automl
leaderboard` start in a fraction of a second instead of paying for torch, Ray and Optuna.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from automl import paths
from automl.errors import AutomlError, SearchFailed, SearchInterrupted
from automl.ownership import check_file_target, write_atomic
from automl.runs.board_io import FORMATS

if TYPE_CHECKING:
    from automl.runs.selection import Constraints

EXIT_USAGE = 2
"""A problem the user can fix before anything runs: config, data, backbone, resources, address."""
EXIT_NO_RESULT = SearchFailed.exit_code
"""The search ran but no trial produced a result (see the printed cause and logs)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="automl", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="run a transfer search and export the best model")
    s.add_argument("space", nargs="?", help="search space YAML (see search_spaces/); without "
                   "it, --data alone runs a zero-config search")
    s.add_argument("--resume", metavar="RUN_DIR",
                   help="finish an interrupted search in RUN_DIR, a path or URI (keeps "
                   "finished trials)")
    s.add_argument("--data", help="image folder (one sub-folder per class), image manifest "
                   "(CSV/Parquet with path,label) or text table; a path or s3:// URI")
    s.add_argument("--run-dir", help="where the leaderboard, trials and export go: a path "
                   "or a storage URI (default: STORAGE/<space>-<time>)")
    s.add_argument("--storage", help="root of the run dirs, shared by every node of a "
                   "cluster: a local/NFS path or s3://bucket/prefix, gs://... (default: runs/)")
    s.add_argument("--num-samples", type=int, help="number of trials (overrides the YAML)")
    s.add_argument("--epochs", type=int, help="max epochs per trial (overrides train.epochs)")
    s.add_argument("--time-budget", metavar="DURATION", help="stop the search after this long, "
                   "e.g. 30m, 1h30m (overrides search.time_budget; without --num-samples, "
                   "trials run until it is spent)")
    s.add_argument("--address", help="Ray cluster address (default: embedded local Ray)")
    z = s.add_argument_group("zero-config (no SPACE): the task is detected from --data")
    z.add_argument("--preset", choices=("quick", "medium", "best"), help="shipped space in "
                   "search_spaces/presets/ (default: the one that fits --time-budget, else "
                   "quick ≈ 10m; medium ≈ 1h; best ≈ 4h)")
    z.add_argument("--task", choices=("image", "text"), help="override the detected task")
    z.add_argument("--text-column", help="text tables: the text column (default: detected)")
    z.add_argument("--label-column", help="tables: the label column (default: detected)")

    v = sub.add_parser("validate", help="check a search space without building anything")
    v.add_argument("space")

    lb = sub.add_parser("leaderboard", help="the ranked trials of a search (also running, "
                        "interrupted or remote ones)")
    lb.add_argument("run_dir", help="run dir (path or URI)")
    lb.add_argument("--top", type=int, help="only the best N")
    lb.add_argument("--sort", help="order by this column instead of rank (COL:desc for descending)")
    lb.add_argument("--format", default="table", choices=FORMATS)
    lb.add_argument("--out", help="write to this file instead of printing")
    _constraint_args(lb)

    r = sub.add_parser("report", help="write the run's self-contained HTML report")
    r.add_argument("run_dir", help="run dir (path or URI)")
    r.add_argument("--out", help="HTML file (default: RUN/report.html)")
    _constraint_args(r)

    c = sub.add_parser("compare", help="best configurations and curves of runs side by side")
    c.add_argument("run_dirs", nargs="+", metavar="RUN", help="two or more run dirs")
    c.add_argument("--out", help="also write an HTML comparison to this file")

    e = sub.add_parser("export", help="export the best (or a chosen) trial, each format "
                       "checked against PyTorch")
    e.add_argument("run_dir")
    e.add_argument("--trial", help="trial id (default: the best eligible trial)")
    e.add_argument("--candidate", help="a soup or the ensemble of `automl combine RUN` by "
                   "name (\"soup 0\", \"ensemble\": one graph)")
    e.add_argument("--out", help="output directory, path or URI (default: RUN/export, "
                   "RUN/export-<trial> or RUN/export-refit)")
    e.add_argument("--format", default="safetensors,torchscript,onnx,hf",
                   help="comma-separated: safetensors (always), torchscript, onnx, hf (text "
                   "models: a Hugging Face folder); default: all that apply")
    e.add_argument("--refit", action="store_true", help="first retrain the configuration on "
                   "train + validation for the epochs it needed (runs on Ray)")
    e.add_argument("--address", help="Ray cluster address for --refit (default: embedded)")
    _constraint_args(e)

    pr = sub.add_parser("predict", help="predict classes with an exported model")
    pr.add_argument("export_dir", help="exported model (path or URI)")
    pr.add_argument("inputs", nargs="+", help="image files or folders; text models: texts "
                    "or table files (CSV/TSV/Parquet/JSONL) with the training text column")
    pr.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                    help="PyTorch (safetensors) or onnxruntime (model.onnx)")
    pr.add_argument("--top-k", type=int, default=1, help="also list the K most likely classes")
    pr.add_argument("--batch-size", type=int, default=32)
    pr.add_argument("--out", help="write the predictions to this CSV instead of printing")

    for name, what in (("soup", "greedy model soups of the trials that share a starting "
                                "point (averaged weights: one model's cost)"),
                       ("ensemble", "ensemble selection over all trials (weighted mean of "
                                    "their probabilities)"),
                       ("combine", "both soups and the ensemble")):
        co = sub.add_parser(name, help=f"{what}, compared with the best single trial on "
                            "validation (cross-fitted), then scored on the test split")
        co.add_argument("run_dir", help="a finished search's run dir (path or URI)")
        co.add_argument("--max-size", type=int, default=20,
                        help="ensemble: at most this many selection steps (default 20)")
        co.add_argument("--address", help="Ray cluster address (default: embedded)")
        _constraint_args(co)

    sub.add_parser("backbones", help="list backbones with packaged (offline) weights")
    return p


def _constraint_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-params", type=float, help="select only models with at most "
                        "this many parameters (e.g. 5e6)")
    parser.add_argument("--max-latency-ms", type=float, help="select only models whose "
                        "per-sample inference latency (measured in the trial) is at most this")


def _constraints(args: argparse.Namespace) -> Constraints:
    from automl.runs.selection import Constraints

    return Constraints(max_params=args.max_params, max_latency_ms=args.max_latency_ms)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Exit 0: done (some trials may have errored, the summary says how many);
    1: the search ran but no trial produced a result; 2: a problem to fix before running
    (config, data, backbone, resources, Ray address). Never a traceback for these."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except SearchInterrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return SearchInterrupted.exit_code
    except SearchFailed as exc:
        if exc.result is not None:
            _print_search_end(exc.result)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_RESULT
    except AutomlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `automl predict ... | head`: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes stdout at exit
        return 0
    except KeyboardInterrupt:  # before the trials started, or a second Ctrl-C
        print("\ninterrupted; trials that finished stay in the run dir; continue with "
              "`automl search --resume RUN_DIR`", file=sys.stderr)
        return SearchInterrupted.exit_code


def _print_search_end(result: object) -> None:
    from automl.api import SearchResult
    from automl.runs.board_io import format_table
    from automl.runs.layout import LOG_DIR

    assert isinstance(result, SearchResult)
    print("\nLeaderboard:\n" + format_table(result.leaderboard))
    run = result.run_dir
    print(f"\nSearch: {result.outcome}; wall time {result.wall_time_s:.0f}s")
    print(f"Leaderboard: {run.uri('leaderboard.csv')}")
    print(f"Run dir: {run} ({run.disk_usage() / 2**20:.0f} MiB)")
    if (result.leaderboard["status"] == "errored").any():
        print(f"Full trial errors: {run.uri(LOG_DIR)}/<trial_id>.error.txt")
    print(f"Report: {run.uri('report.html')}")
    if result.export_dir:
        print(f"Best model exported to {result.export_dir}")
        print(f"  predict: automl predict {result.export_dir} INPUT...")


def _run(args: argparse.Namespace) -> int:
    from automl import api

    if getattr(args, "out", None) and args.command != "export":  # export checks its folder
        check_file_target(paths.resolve(args.out, "--out"))

    if args.command == "validate":
        cfg = api.validate(args.space)
        budget = (f", time budget {cfg.search.time_budget}"
                  if cfg.search.time_budget is not None else "")
        trials = cfg.search.max_trials
        print(f"{args.space}: ok ({cfg.task}, {len(cfg.backbones)} backbone(s), "
              f"{trials or 'unlimited'} trials{budget})")
    elif args.command == "search" and args.resume:
        if (args.space or args.data or args.run_dir or args.num_samples or args.epochs
                or args.storage or args.time_budget or args.preset or args.task
                or args.text_column or args.label_column):
            raise AutomlError("--resume takes only the run dir (and --address): the search "
                              "continues with the config it started with")
        _print_search_end(api.resume_search(args.resume, address=args.address))
    elif args.command == "search":
        if not args.space and not args.data:
            raise AutomlError("search needs --data PATH (zero-config), a search space YAML, "
                              "or --resume RUN_DIR")
        result = api.run_search(args.space, data=args.data, run_dir=args.run_dir,
                                num_samples=args.num_samples, address=args.address,
                                epochs=args.epochs, storage_root=args.storage,
                                time_budget=args.time_budget, preset=args.preset,
                                task=args.task, text_column=args.text_column,
                                label_column=args.label_column)
        _print_search_end(result)
    elif args.command == "leaderboard":
        _leaderboard(args)
    elif args.command == "report":
        print(f"report written to {api.report(args.run_dir, args.out, _constraints(args))}")
    elif args.command == "compare":
        print(api.compare(args.run_dirs, args.out))
    elif args.command == "export":
        out = api.export(args.run_dir, args.out, args.trial, _constraints(args),
                         formats=args.format, refit=args.refit, address=args.address,
                         candidate=args.candidate)
        print(f"exported to {out} (files, checks and hashes: {out}/manifest.json)")
    elif args.command == "predict":
        _predict(args)
    elif args.command in ("soup", "ensemble", "combine"):
        kinds = ("soup", "ensemble") if args.command == "combine" else (args.command,)
        found = api.combine(args.run_dir, kinds, args.max_size, args.max_latency_ms,
                            _constraints(args), args.address)
        print(found.table())
    elif args.command == "backbones":
        from automl.backbones.registry import PACKAGED

        for name, spec in PACKAGED.items():
            print(f"{name}\tweights: package\t({spec.requirement})")
        print("any timm model name (image) or Hugging Face id (text) works with weights: hub")
    return 0


def _predict(args: argparse.Namespace) -> None:
    import pandas as pd

    from automl.export import predict

    preds = predict(args.export_dir, args.inputs, args.batch_size, args.top_k, args.runtime)
    rows = []
    for p in preds:
        row: dict[str, object] = {"input": p.input, "label": p.label,
                                  "probability": round(p.probability, 6)}
        for i, (label, prob) in enumerate(p.top[1:], 2):
            row[f"label_{i}"], row[f"probability_{i}"] = label, round(prob, 6)
        rows.append(row)
    if args.out:
        write_atomic(Path(args.out), pd.DataFrame(rows).to_csv(index=False))
        print(f"{len(rows)} prediction(s) written to {args.out}")
        return
    for row in rows:
        print("\t".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))


def _leaderboard(args: argparse.Namespace) -> None:
    from automl import api
    from automl.runs.board_io import render, select_rows

    board = select_rows(api.leaderboard(args.run_dir, _constraints(args)), args.top, args.sort)
    if args.format == "parquet" and not args.out:
        raise AutomlError("--format parquet is binary: give --out FILE.parquet")
    text = render(board, args.format)
    if args.out:
        target = Path(args.out)
        write_atomic(target, text if isinstance(text, bytes) else text + "\n")
        print(f"{len(board)} trial(s) written to {target}")
        return
    print(text)
    if args.format == "table":
        from automl.runs.location import RunDir
        from automl.runs.read import read_combined

        combined = read_combined(RunDir.at(args.run_dir, "run dir"))
        if combined is not None:
            how = (f"cross-fitted over {combined.select_rows} validation rows"
                   if combined.folds else "val A/B: validation halves of "
                   f"{combined.fit_rows}/{combined.select_rows} rows")
            print(f"\nSoups and ensemble (automl combine; {how}):\n{combined.table()}")


if __name__ == "__main__":
    sys.exit(main())
