"""Scoring a folder of images with an exported ONNX model: onnxruntime, numpy and Pillow only.

This is the line-side path: a PC next to the inspection machine scores each new lot with the
``.onnx`` file ``diesight export-model`` wrote, without PyTorch installed. Nothing here (nor
anything it imports) imports torch; ``tests/core/test_onnx.py`` checks that in a fresh
interpreter.

The images go through DieSight's own steps, so each logit equals the one ``diesight score``
stores for the same file with the same run:

1. the folder walk of ``core.folderscan`` (hidden entries skipped, unreadable ones reported);
2. decoding to 8-bit grey at the folder's most common size (``core.imagefile.decode_gray``,
   ``core.cache.most_common_size``), as a dataset's image cache does;
3. the run's resize (``core.resize.resize_uint8``, PyTorch's antialiased bilinear, exactly);
4. the graph, whose scaling and prior correction are built in (``core.onnx_export``).

The ranked CSV (rank, path, logit, probability, defective at the run's threshold) is written
atomically once every image is scored; a cancelled pass writes nothing.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.atomic import atomic_write
from core.cache import most_common_size
from core.folderscan import scan_folder
from core.imagefile import UnreadableImage, decode_gray
from core.metrics import sigmoid
from core.progress import CancelCheck, ProgressFn, Throttle, check_cancel, report
from core.resize import resize_uint8

FORMAT_VERSION = 1
INPUT_NAME = "image"
LOGIT_OUTPUT = "logit"
EMBEDDING_OUTPUT = "embedding"
# The largest |logit difference| allowed between onnxruntime and torch (fp32 both).
PARITY_TOLERANCE = 1e-4
DEFAULT_BATCH = 64
CSV_COLUMNS = ("rank", "path", "logit", "probability", "defective")

METADATA_KEYS = ("diesight_onnx_format", "diesight_version", "model", "run_id",
                 "input_name", "input_shape", "input_dtype", "image_size", "input_scaling",
                 "resize", "outputs", "logit_offset", "threshold")
"""Metadata every model written by ``core.onnx_export`` carries (and this module needs)."""


class OnnxModelError(ValueError):
    """The model file is missing, unreadable, or not a DieSight export (one-line message)."""


@dataclass
class OnnxModel:
    """A loaded DieSight ONNX model with what its metadata says.

    Attributes:
        source: the file (or a description) for messages.
        metadata: the model's ``metadata_props``.
        image_size: (rows, cols) the graph expects.
        threshold: the run's probability threshold (defective when probability >= it).
    """

    source: str
    session: object
    metadata: dict[str, str]
    image_size: tuple[int, int]
    threshold: float

    @classmethod
    def load(cls, path: str | os.PathLike) -> OnnxModel:
        """Open ``path`` with onnxruntime on the CPU.

        Raises:
            OnnxModelError: missing, a folder, unreadable, not ONNX, or not a DieSight export.
        """
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise OnnxModelError(f"ONNX model not found: {path}") from None
        except IsADirectoryError:
            raise OnnxModelError(f"ONNX model {path} is a folder, not a file") from None
        except OSError as exc:
            raise OnnxModelError(f"ONNX model {path} cannot be read: "
                                 f"{exc.strerror or exc}") from None
        return cls.from_bytes(data, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> OnnxModel:
        """Open a serialised model (``source`` names it in messages)."""
        import onnxruntime

        if not data:
            raise OnnxModelError(f"ONNX model {source} is empty (0 bytes)")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: no optimiser chatter on the line PC
        try:
            session = onnxruntime.InferenceSession(data, options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for every bad file
            raise OnnxModelError(f"ONNX model {source} cannot be read ({_first_line(exc)})"
                                 ) from None
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        return cls(source, session, metadata, *_checked_metadata(metadata, source))

    @property
    def model_name(self) -> str:
        return self.metadata["model"]

    @property
    def run_id(self) -> str:
        return self.metadata["run_id"]

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prior-corrected logits (float64, (B,)) and embeddings (float32, (B, D)).

        Args:
            images: uint8 ``(B, 1, rows, cols)`` at :attr:`image_size`.
        """
        logits, embeddings = self.session.run([LOGIT_OUTPUT, EMBEDDING_OUTPUT],
                                              {INPUT_NAME: np.ascontiguousarray(images)})
        return logits.astype(np.float64), embeddings


def _checked_metadata(metadata: dict[str, str], source: str) -> tuple[tuple[int, int], float]:
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise OnnxModelError(f"ONNX model {source} was not exported by DieSight (its metadata "
                             f"lacks {', '.join(missing[:3])}); export one with "
                             f"`diesight export-model DATA --run ID --onnx FILE`")
    version = metadata["diesight_onnx_format"]
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise OnnxModelError(f"ONNX model {source} uses DieSight ONNX format {version!r}; "
                             f"this DieSight reads format {FORMAT_VERSION} (please upgrade)")
    try:
        rows, cols = (int(v) for v in metadata["image_size"].split(","))
        threshold = float(metadata["threshold"])
    except ValueError:
        raise OnnxModelError(f"ONNX model {source} has damaged metadata (image_size "
                             f"{metadata['image_size']!r}, threshold "
                             f"{metadata['threshold']!r})") from None
    return (rows, cols), threshold


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:160] + "...") if len(text) > 160 else (text or type(exc).__name__)


@dataclass
class OnnxScoreResult:
    """One folder scored: aligned arrays in ranked order (highest logit first).

    Attributes:
        relpaths: image paths relative to the folder.
        logits: float64 prior-corrected logits.
        probabilities: float64 sigmoid of the logits.
        defective: bool, probability >= threshold.
        threshold: the model's threshold.
        skipped: (relpath, reason) of files that could not be scored.
        out_path: the CSV written (None when none was asked for).
        seconds: wall time (reading, decoding, resizing and the network).
    """

    relpaths: list[str]
    logits: np.ndarray
    probabilities: np.ndarray
    defective: np.ndarray
    threshold: float
    skipped: list[tuple[str, str]] = field(default_factory=list)
    out_path: Path | None = None
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return len(self.relpaths) / self.seconds if self.seconds > 0 else 0.0


def score_folder(folder: str | os.PathLike, model: OnnxModel | str | os.PathLike,
                 out_csv: str | os.PathLike | None = None, *, batch_size: int = DEFAULT_BATCH,
                 progress: ProgressFn | None = None,
                 cancel: CancelCheck | None = None) -> OnnxScoreResult:
    """Score every image under ``folder`` with an exported model; write the ranked CSV.

    Args:
        folder: the image folder (walked recursively, hidden entries skipped).
        model: an :class:`OnnxModel` or the path of a ``.onnx`` file.
        out_csv: where to write the ranked CSV (atomically); None writes nothing.
        batch_size: images per onnxruntime call.
        progress: receives 'score' reports.
        cancel: checked between batches; a cancelled pass writes nothing.

    Raises:
        OnnxModelError: the model cannot be used.
        ValueError: the folder is missing or holds no readable image; a bad batch size.
        core.progress.Cancelled: ``cancel`` returned True.
        OSError: the CSV cannot be written (naming it).
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if not isinstance(model, OnnxModel):
        model = OnnxModel.load(model)
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"{folder} is not a folder")
    scan = scan_folder(root)
    skipped = [(entry.relpath, entry.reason) for entry in scan.skipped]
    relpaths = [image.relpath for image in scan.images]
    paths = [os.path.join(root, relpath) for relpath in relpaths]
    cache_size = most_common_size(paths)
    if cache_size is None:
        raise ValueError(f"{folder} has no readable images to score")
    scored, logits = _score_paths(model, relpaths, paths, cache_size, batch_size, skipped,
                                  progress, cancel)
    if not scored:
        raise ValueError(f"{folder} has no readable images to score ({len(skipped)} skipped)")
    result = _ranked(scored, logits, model.threshold, skipped)
    if out_csv is not None:
        result.out_path = write_ranked_csv(result, out_csv)
    result.seconds = time.perf_counter() - started
    return result


def _score_paths(model: OnnxModel, relpaths: list[str], paths: list[str],
                 cache_size: tuple[int, int], batch_size: int, skipped: list,
                 progress: ProgressFn | None, cancel: CancelCheck | None
                 ) -> tuple[list[str], np.ndarray]:
    """Decode, resize and score in batches; unreadable files go to ``skipped``."""
    rows, cols = model.image_size
    scored: list[str] = []
    logits: list[np.ndarray] = []
    throttle = Throttle(0.25)
    started = time.perf_counter()
    for start in range(0, len(paths), batch_size):
        check_cancel(cancel)
        pixels, names = [], []
        for relpath, path in zip(relpaths[start:start + batch_size],
                                 paths[start:start + batch_size], strict=True):
            try:
                pixels.append(decode_gray(path, cache_size)[0])
                names.append(relpath)
            except UnreadableImage as exc:
                skipped.append((relpath, str(exc)))
        if pixels:
            batch = resize_uint8(np.stack(pixels), rows, cols)[:, None]
            logits.append(model.predict(batch)[0])
            scored.extend(names)
        done = min(start + batch_size, len(paths))
        if throttle.ready(final=done == len(paths)):
            rate = done / max(time.perf_counter() - started, 1e-9)
            report(progress, "score", done, len(paths), f"{rate:.0f} images/s",
                   images_per_s=rate)
    return scored, (np.concatenate(logits) if logits else np.empty(0))


def _ranked(relpaths: list[str], logits: np.ndarray, threshold: float,
            skipped: list[tuple[str, str]]) -> OnnxScoreResult:
    """The result in ranked order: highest logit first, ties by path."""
    order = sorted(range(len(relpaths)), key=lambda i: (-logits[i], relpaths[i]))
    logits = logits[order]
    probabilities = sigmoid(logits)
    return OnnxScoreResult([relpaths[i] for i in order], logits, probabilities,
                           probabilities >= threshold, threshold, skipped)


def write_ranked_csv(result: OnnxScoreResult, path: str | os.PathLike) -> Path:
    """Write ``result`` as a CSV (one row per image, ranked) atomically; returns the path."""
    path = Path(path)
    with atomic_write(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for rank, (relpath, logit, probability, defective) in enumerate(zip(
                result.relpaths, result.logits, result.probabilities, result.defective,
                strict=True), start=1):
            writer.writerow((rank, relpath, repr(float(logit)), repr(float(probability)),
                             int(defective)))
    return path


def skipped_line(skipped: list[tuple[str, str]], shown: int = 3) -> str:
    """One line naming the files that could not be scored (the first few, with reasons)."""
    listed = "; ".join(f"{relpath} ({reason})" for relpath, reason in skipped[:shown])
    more = f"; and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"Skipped {len(skipped)} unreadable file(s): {listed}{more}"
