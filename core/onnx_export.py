"""Exporting a run's best checkpoint as a self-describing ONNX model for line-side scoring.

The exported graph takes the run's input images as uint8 grey levels, ``image`` of shape
``(batch, 1, rows, cols)`` with a dynamic batch, and returns:

* ``logit`` ``(batch,)`` float32: the prior-corrected logit DieSight stores when it scores
  (``core.training.predict.predict``: network logit + the run's ``logit_offset``), so a
  probability is ``sigmoid(logit)`` and the run's threshold applies unchanged;
* ``embedding`` ``(batch, D)`` float32: the penultimate activations (D = 32 for the
  designed network).

The input scaling (``core.training.data.normalise``) is part of the graph, so a consumer
passes the resized pixels and nothing else. Everything a consumer needs to feed the model
and read its answer is written into the model's ``metadata_props``
(:data:`core.onnx_scoring.METADATA_KEYS` lists them): input name, shape and dtype, the
scaling, the image size, the resize rule, the prior correction, the run's threshold, the
model name, the run id and the DieSight version. ``core.onnx_scoring`` reads them back and
scores a folder with onnxruntime alone.

The graph is produced by ``torch.onnx.export(dynamo=True)`` (opset 18) and then checked:
onnxruntime must load it and reproduce the torch logits of a probe batch to 1e-4.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

import core
from core.atomic import atomic_write
from core.golden_score import has_golden
from core.onnx_scoring import (
    EMBEDDING_OUTPUT,
    FORMAT_VERSION,
    INPUT_NAME,
    LOGIT_OUTPUT,
    PARITY_TOLERANCE,
    OnnxModel,
)
from core.progress import CancelCheck, ProgressFn, check_cancel, report
from core.run_model import load_model_from_run
from core.runs import RunRecord
from core.training.data import MEAN, STD, normalise

OPSET = 18
# Images in the probe batch that checks the exported graph against torch.
_PROBE_IMAGES = 3


class ExportedNetwork(nn.Module):
    """What the ONNX graph computes: uint8 images in, (prior-corrected logit, embedding) out."""

    def __init__(self, model: nn.Module, logit_offset: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("logit_offset", torch.tensor(float(logit_offset)))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embeddings = self.model.forward_with_embedding(normalise(image))
        return logits + self.logit_offset, embeddings


def export_onnx(run: RunRecord, out_path: str | os.PathLike, *,
                default_threshold: float = 0.5, progress: ProgressFn | None = None,
                cancel: CancelCheck | None = None) -> Path:
    """Write ``run``'s best checkpoint as an ONNX model at ``out_path`` (atomically).

    Args:
        run: a run with a checkpoint.
        out_path: the ``.onnx`` file to write (its folder is created).
        default_threshold: the threshold written when the run has none of its own.
        progress: receives 'export' reports.
        cancel: checked between the steps (export, check, write).

    Returns:
        The path written.

    Raises:
        core.checkpoint.CheckpointError: the run has no readable checkpoint.
        RuntimeError: the exported graph does not reproduce the torch logits.
        OSError: the file cannot be written (naming it).
    """
    out_path = Path(out_path)
    model, config = load_model_from_run(run)
    network = ExportedNetwork(model, run.logit_offset).eval()
    rows, cols = config.input_shape
    report(progress, "export", 0, 3, f"exporting run {run.id} ({config.model}) to ONNX")
    onnx_model = network_to_onnx(network, rows, cols)
    check_cancel(cancel)
    fused = has_golden(run)
    if fused:
        report(progress, "notice", message=(
            f"Run {run.id} adds a golden-reference score (weight {config.golden_weight:g}) "
            f"that the ONNX model does not contain: line-side scores are the network's "
            f"alone, so the run's threshold (placed on the fused score) is not written; "
            f"the default {default_threshold:g} is."))
    own_threshold = run.threshold is not None and not fused
    threshold = run.threshold if own_threshold else default_threshold
    _set_metadata(onnx_model, _metadata(run, config, rows, cols, threshold,
                                        threshold_source="run" if own_threshold
                                        else "default"))
    data = onnx_model.SerializeToString()
    report(progress, "export", 1, 3, "checking the ONNX graph against torch")
    _check_parity(network, data, rows, cols)
    check_cancel(cancel)
    report(progress, "export", 2, 3, f"writing {out_path}")
    with atomic_write(out_path, "wb") as fh:
        fh.write(data)
    report(progress, "export", 3, 3, f"wrote {out_path}")
    return out_path


def network_to_onnx(network: nn.Module, rows: int, cols: int):
    """The ONNX ``ModelProto`` of ``network`` (an :class:`ExportedNetwork`) for uint8 images
    of ``rows`` x ``cols``, with a dynamic batch dimension and no metadata yet."""
    example = torch.zeros((2, 1, rows, cols), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.onnx.export(
            network, (example,), dynamo=True, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[LOGIT_OUTPUT, EMBEDDING_OUTPUT],
            dynamic_shapes={"image": {0: batch}}, verbose=False)
    program.optimize()
    return program.model_proto


def _metadata(run: RunRecord, config, rows: int, cols: int, threshold: float,
              threshold_source: str) -> dict[str, str]:
    return {
        "diesight_onnx_format": str(FORMAT_VERSION),
        "diesight_version": core.__version__,
        "model": config.model,
        "run_id": str(run.id),
        "best_epoch": "" if run.best_epoch is None else str(run.best_epoch),
        "val_auc": "" if run.val_auc is None else repr(float(run.val_auc)),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input_name": INPUT_NAME,
        "input_shape": f"batch,1,{rows},{cols}",
        "input_dtype": "uint8",
        "image_size": f"{rows},{cols}",
        "input_scaling": (f"uint8 grey levels 0..255; the graph computes "
                          f"(x / 255 - {MEAN}) / {STD} itself"),
        "resize": ("decode to 8-bit grey, then resize to image_size (rows, cols) with "
                   "antialiased bilinear interpolation rounded half to even (PyTorch "
                   "F.interpolate(mode='bilinear', antialias=True), core.resize)"),
        "outputs": (f"{LOGIT_OUTPUT}: (batch,) float32 prior-corrected logit; "
                    f"{EMBEDDING_OUTPUT}: (batch, D) float32 penultimate activations"),
        "logit_offset": repr(float(run.logit_offset)),
        "logit_offset_note": ("prior correction from the training draws' defect share to "
                              "the labelled defect rate; already added to the logit output"),
        "train_prior": "" if run.train_prior is None else repr(float(run.train_prior)),
        "defect_rate": "" if run.defect_rate is None else repr(float(run.defect_rate)),
        "threshold": repr(float(threshold)),
        "threshold_source": threshold_source,
        "threshold_rule": "defective when sigmoid(logit) >= threshold",
        "golden_weight": (f"{config.golden_weight:g}: the workstation's scores add a "
                          f"golden-reference score this model does not contain"
                          if has_golden(run) else "0"),
    }


def _set_metadata(onnx_model, values: dict[str, str]) -> None:
    del onnx_model.metadata_props[:]
    for key, value in values.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx_model.doc_string = (f"DieSight run {values['run_id']} ({values['model']}): uint8 "
                             f"images in, prior-corrected logit and embedding out")


def _check_parity(network: nn.Module, data: bytes, rows: int, cols: int) -> None:
    """Refuse to write a graph whose logits differ from torch's on random images."""
    generator = torch.Generator().manual_seed(0)
    probe = torch.randint(0, 256, (_PROBE_IMAGES, 1, rows, cols), dtype=torch.uint8,
                          generator=generator)
    with torch.inference_mode():
        expected = network(probe)[0].double().numpy()
    got = OnnxModel.from_bytes(data, "the exported model").predict(probe.numpy())[0]
    worst = float(np.max(np.abs(got - expected)))
    if not worst <= PARITY_TOLERANCE:
        raise RuntimeError(f"The ONNX graph does not reproduce the torch logits (largest "
                           f"difference {worst:.3g} > {PARITY_TOLERANCE}); nothing written.")
