"""The model card (`README.md`) of an export: what the model is, where it came from, how
well it did, what each file is and how close each format came to PyTorch."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automl.export.context import ExportContext
    from automl.export.formats import ExportedFormat

CARD_FIELDS = (
    "trial_id", "status", "soup_members", "ensemble_members", "backbone", "weights",
    "unfreeze_fraction", "unfreeze_depth", "layer_groups", "head_lr", "backbone_lr",
    "layer_decay", "lp_ft_epochs", "weight_decay", "batch_size", "pooling", "max_length",
    "metric", "val_accuracy",
    "val_balanced_accuracy", "val_macro_f1", "val_se", "test_accuracy",
    "test_balanced_accuracy", "test_macro_f1", "test_se", "val_loss", "best_epoch", "epochs",
    "train_accuracy", "overfit_gap", "transfer_gain", "trainable_params", "total_params",
    "latency_ms", "trial_time_s", "device_hours",)


def model_card(config: dict[str, Any], checks: list[ExportedFormat], context: ExportContext,
               checked_on: str, sizes: dict[str, int]) -> str:
    """Markdown for the export's README.md (`sizes`: bytes per format)."""
    names = config["class_names"]
    accuracy = config["metrics"].get("val_accuracy")
    lines = [
        f"# {config['backbone']} — {config['task']} classifier ({len(names)} classes)",
        "",
        f"Exported by automl from a transfer-learning search: backbone `{config['backbone']}` "
        f"({config['library']}, weights `{config['weights_source']}`)"
        + (f", validation accuracy **{accuracy:.4f}**" if accuracy is not None else "") + "."
        + _test_line(context.trial),
        "",
        f"Classes: {', '.join(f'`{n}`' for n in names)}",
    ]
    lines += ["", _calibration_line(context)]
    if context.refit:
        refit = context.refit
        lines += ["", f"**Refit**: these weights were retrained on train + validation "
                  f"({refit.get('examples', '?')} examples) for {refit.get('epochs')} "
                  f"epoch(s), the epochs the selected trial needed. The validation accuracy "
                  "above is the trial's, measured before the refit; the refit model has no "
                  "held-out score."]
    if config.get("ensemble"):
        lines += ["", f"**Ensemble**: the weighted mean of {len(config['ensemble'])} trials' "
                  "probabilities (weights chosen on the validation split; the validation "
                  "accuracy above is cross-fitted: each row predicted by weights chosen on "
                  "the other half). One graph in "
                  "TorchScript/ONNX; each member's plan and weights are in `members/`. Every "
                  "member reads the input below and takes its own view of it in the graph."]
    if context.trial:
        lines += ["", "## The trial (its leaderboard row)", "", "| field | value |",
                  "|---|---|"]
        lines += [f"| {k} | {_fmt(context.trial[k])} |" for k in CARD_FIELDS
                  if k in context.trial and _fmt(context.trial[k]) != ""]
    data = context.data
    if data:
        lines += ["", "## Data", "", f"- source: `{data.get('source')}`",
                  f"- examples: {data.get('train_rows')} train / {data.get('val_rows')} "
                  "validation (stratified, seeded split)"]
        found = data.get("duplicates") or {}
        if found.get("across") or found.get("within"):
            lines.append(f"- exact duplicates: {found.get('across')} across splits "
                         f"({found.get('removed', 0)} removed from validation/test), "
                         f"{found.get('within', 0)} within a split")
    if context.search:
        search = context.search
        lines += ["", "## The search", "", f"- space: `{search.get('space')}`",
                  f"- run: `{search.get('run_dir')}`",
                  f"- trials: {search.get('outcome', search.get('trials'))}",
                  f"- selection: {search.get('selection', 'best val_accuracy')}"]
    lines += ["", "## Preprocessing", "", "```json", _json(config["preprocessing"]), "```",
              "", "## Files and checks", "",
              f"Every format was run on {checked_on} and on the first of them alone, and "
              "compared with the PyTorch model:", "",
              "| format | file | size | max \\|Δ logit\\| | top-1 agreement |",
              "|---|---|---|---|---|"]
    for c in checks:
        size = sizes.get(c.name)
        lines.append(f"| {c.name} | `{c.path}` | {_mib(size)} | {c.max_abs_diff:.2g} | "
                     f"{c.top1_agreement:.0%} |")
    lines += ["", "`manifest.json` holds the SHA-256 of every file; automl refuses files that "
              "do not match it.", "", "## Use", "", "```bash",
              "automl predict . INPUT... --top-k 3            # PyTorch",
              "automl predict . INPUT... --runtime onnx       # onnxruntime", "```", "",
              "```python", "import automl", "model = automl.load('.')",
              "model.predict([...]); model.predict_proba([...])", "```"]
    if "hf" in config["formats"]:
        lines += ["", "Without automl, with transformers alone (`hf_modeling.py` in the folder "
                  "defines the pooling head):", "", "```python",
                  "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
                  "tok = AutoTokenizer.from_pretrained('huggingface', trust_remote_code=True)",
                  "model = AutoModelForSequenceClassification.from_pretrained('huggingface', "
                  "trust_remote_code=True)",
                  "logits = model(**tok(texts, truncation=True, padding=True, "
                  "return_tensors='pt')).logits", "```"]
    return "\n".join(lines) + "\n"


def _calibration_line(context: ExportContext) -> str:
    """Whether `predict_proba` returns calibrated probabilities, and how well."""
    found = context.calibration
    if not found:
        why = ("the refit has no held-out data to fit a temperature on" if context.refit
               else "no temperature was fitted (search.calibrate: false, or an older run)")
        return f"Probabilities are the model's softmax, not calibrated: {why}."
    line = (f"**Calibrated probabilities**: logits are divided by a temperature of "
            f"{found['temperature']:.3g}, fitted on validation after selection and folded "
            "into the classifier (every format below carries it; predictions are unchanged). "
            f"Expected calibration error on validation {found['val_ece']:.3f} → "
            f"{found['val_ece_calibrated']:.3f}")
    if isinstance(found.get("test_ece"), float):
        line += f"; on the test split {found['test_ece']:.3f} → {found['test_ece_calibrated']:.3f}"
    return line + "."


def _test_line(trial: dict[str, Any]) -> str:
    """The test split's score of a trial that was selected with one (the run's untouched
    examples), with the selection's optimism on validation."""
    metric = trial.get("metric") if isinstance(trial.get("metric"), str) else "accuracy"
    test, val = trial.get(f"test_{metric}"), trial.get(f"val_{metric}")
    if not isinstance(test, (int, float)) or test != test or not isinstance(val, (int, float)):
        return ""
    return (f" On the run's test split, which no trial, ranking or selection saw: "
            f"{metric} **{test:.4f} ± {trial.get('test_se', float('nan')):.4f}** "
            f"(validation − test: {val - test:+.4f}).")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _mib(size: int | None) -> str:
    return "" if size is None else f"{size / 2**20:.1f} MiB"


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, default=str)
