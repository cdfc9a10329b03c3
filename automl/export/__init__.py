"""Export a trial to the formats people deploy (safetensors + config, TorchScript, ONNX,
Hugging Face), load an export back and predict with it. Importing this imports no Ray."""

from automl.export.context import ExportContext
from automl.export.formats import ONNX_FILE, TORCHSCRIPT_FILE, ExportedFormat
from automl.export.load import ExportedModel, Prediction, load, load_exported, predict
from automl.export.writer import (
    ALL_FORMATS,
    CONFIG_FILE,
    EXPORT_FORMAT,
    MANIFEST_FILE,
    export_checkpoint,
    parse_formats,
)

__all__ = ["ALL_FORMATS", "CONFIG_FILE", "EXPORT_FORMAT", "MANIFEST_FILE", "ONNX_FILE",
           "TORCHSCRIPT_FILE", "ExportContext", "ExportedFormat", "ExportedModel", "Prediction",
           "export_checkpoint", "load", "load_exported", "parse_formats", "predict"]
