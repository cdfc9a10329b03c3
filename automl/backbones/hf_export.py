"""Text models as a Hugging Face folder that transformers loads without automl.

The folder holds `config.json` (the encoder's config, pooling, class names and an `auto_map`),
`model.safetensors`, the tokenizer files and `hf_modeling.py`, the ≈60-line module that
defines the pooling head; transformers imports it when the user passes
`trust_remote_code=True`, the way custom heads are shipped on the Hugging Face Hub.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from automl.backbones import hf_modeling

if TYPE_CHECKING:
    from automl.trial.plan import TrialPlan

MODULE = "hf_modeling"


def save_sequence_classifier(model: nn.Module, directory: Path, plan: TrialPlan,
                             tokenizer_dir: Path) -> None:
    """Write `model` (a TextClassifier) with its tokenizer as a Hugging Face folder."""
    from transformers import AutoTokenizer


    encoder_config = getattr(model, "encoder").config.to_dict()  # noqa: B009
    names = list(plan.classes)
    config = hf_modeling.AutomlTextConfig(
        encoder=encoder_config, pooling=plan.pooling, num_labels=len(names),
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    config.auto_map = {
        "AutoConfig": f"{MODULE}.AutomlTextConfig",
        "AutoModelForSequenceClassification": f"{MODULE}.AutomlTextForSequenceClassification",
    }
    hf_model = hf_modeling.AutomlTextForSequenceClassification(config)
    hf_model.load_state_dict(model.state_dict(), strict=True)
    directory.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.model_max_length = plan.max_length  # truncation=True cuts where training did
    tokenizer.save_pretrained(directory)
    shutil.copyfile(hf_modeling.__file__, directory / f"{MODULE}.py")


def load_sequence_classifier(directory: Path) -> Any:
    """The folder loaded as users load it: `AutoModelForSequenceClassification`, eval mode."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        directory, trust_remote_code=True).eval()
