"""Where on the part is the evidence: attribution heatmaps for a run's defect score.

``explain(dataset, run, image_ids, method)`` returns one map per image at the image's own
resolution (the dataset's cached size, 267 x 275 for the Nexperia parts), with values in
0..1: 1 is the image's strongest evidence for "bad", 0 none. Every method comes from
Captum, PyTorch's attribution library, so the gradients are its well-tested ones:

``gradcam``
    ``LayerGradCam`` at the last residual stage (1/32 of the input for the ResNets and
    ``designed_resnet``, 1/16 for ``stratified``): the classic map, coarse (9 x 9 cells).
``gradcam-fine``
    ``LayerGradCam`` one stage earlier: twice the resolution, less semantic.
``layercam``
    ``LayerGradientXActivation`` at the last three stages in ONE backward pass, each stage's
    positive channel sum upsampled and normalised, then averaged: coarse stages say which
    region, finer ones sharpen it (the idea of LayerCAM, Jiang et al. 2021).
``occlusion``
    ``Occlusion``: the drop of the logit when a window of the image is greyed out. Model
    agnostic and faithful by construction, but hundreds of forward passes per image.
``integrated-gradients``
    ``IntegratedGradients`` from a mean-grey image, positive part, smoothed (pixel
    attributions are speckled; a defect is a region).
``golden`` (runs with a golden weight)
    Not an attribution: the golden score's ratio map (``core.golden_score``) above what a
    typical good part reaches.
``fused`` (runs with a golden weight)
    Per image, the map of whichever part weighs more in its fused score: ``golden`` where
    the golden reference lifts it more than the network, integrated gradients where the
    network does (a missing marking is within the good parts' spread, so only the network
    sees it).

Maps are computed at the run's input size and bilinearly resized to the image's size. Each
map is normalised by its own maximum; the maximum itself (``peaks``, in the method's units)
is kept, so "strong evidence here" and "the strongest of very little" can be told apart.

Computed maps are cached per run and method in the run's folder of the workspace
(``runs/<id>/heatmaps-<method>.npy`` float16 (n, H, W), ``...-ids.npy``, ``...-peaks.npy`` and
a stamp naming the checkpoint they came from), written atomically; a later call for cached
images reads them back instead of running the network, and a new checkpoint (a resumed run)
makes the cache stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.device import select_device, torch_threads
from core.explain_maps import (  # noqa: F401  (re-exported)
    HeatmapCache,
    heat_colours,
    heatmap_png16,
    overlay,
)
from core.explain_methods import (  # noqa: F401  (re-exported)
    DEFAULT_METHODS,
    FUSED_METHOD,
    FUSED_NETWORK_METHOD,
    GOLDEN_METHOD,
    METHODS,
    NEEDS_GOLDEN,
    check_method,
    default_method,
)
from core.golden_score import bank_path, load_bank, load_reference, ratio_maps
from core.progress import CancelCheck, ProgressFn, Throttle, check_cancel, report
from core.run_model import load_model_from_run
from core.score_store import aligned_parts, as_run
from core.training.data import normalise, prepare_images
from core.training.predict import predict

DEFAULT_BATCH_CUDA = 64
DEFAULT_BATCH_CPU = 8
LAYERCAM_STAGES = 3
IG_STEPS = 8                   # 16 localised no better on the benchmark, at twice the cost
IG_SMOOTH_FRACTION = 1 / 30    # Gaussian sigma as a share of the image side (~9 px)
OCCLUSION_FRACTION = 1 / 8     # window side as a share of the image side (stride: half)
CPU_OCCLUSION_PASS = 64        # images per forward pass while occluding on the CPU


@dataclass
class Heatmaps:
    """Maps of some images, aligned with ``image_ids`` (in the order asked for).

    Attributes:
        run_id: the run whose checkpoint was explained.
        method: one of :data:`METHODS`.
        image_ids: int64 (n,).
        maps: float16 (n, H, W), 0..1, at the dataset's image size.
        peaks: float32 (n,), each map's maximum before normalising (the method's units).
        computed: how many maps were computed now (the rest came from the cache).
        seconds: wall time of the call.
    """

    run_id: int
    method: str
    image_ids: np.ndarray
    maps: np.ndarray
    peaks: np.ndarray
    computed: int = 0
    seconds: float = 0.0


def explain(dataset, run, image_ids: Sequence[int] | np.ndarray, method: str | None = None,
            *, batch_size: int | None = None, device: str = "auto",
            progress: ProgressFn | None = None, cancel: CancelCheck | None = None,
            store: bool = True, use_cache: bool = True,
            explainer: Explainer | None = None) -> Heatmaps:
    """Heatmaps of ``image_ids`` for ``run``'s defect logit.

    Args:
        dataset: an opened ``core.dataset.Dataset``.
        run: a run record, its id, 'latest' or 'OTHER_DATA@ID'.
        image_ids: the images (present in ``dataset``); repeats are allowed.
        method: one of :data:`METHODS` (default: the model's measured best).
        batch_size: images per attribution pass (default 64 on CUDA, 8 on the CPU).
        device: 'auto', 'cuda' or 'cpu'.
        progress: receives ``Progress('explain', done, total, ...)``.
        cancel: checked between batches; nothing is stored when it stops the call.
        store: merge the new maps into the run's cache (the viewer, explaining one image
            at a time, passes False rather than rewrite a large file per key press).
        use_cache: read maps already cached instead of computing them again.
        explainer: a ready :class:`Explainer` of this run and method (it wins over
            ``device``); built from the checkpoint when None.

    Raises:
        core.progress.Cancelled: ``cancel`` returned True.
        core.checkpoint.CheckpointError: the run's checkpoint is missing or unreadable.
        ValueError: unknown method, an id not in the dataset, or a bad batch size.
    """
    started = time.perf_counter()
    run = as_run(dataset.workspace, run)
    method = check_method(method or default_method(run))
    wanted = np.asarray(image_ids, dtype=np.int64).ravel()
    _check_present(dataset, wanted)
    cache = HeatmapCache(dataset.workspace.run_dir(run.id), method, run.checkpoint)
    cached = cache.load() if use_cache else None
    missing = np.unique(wanted if cached is None else wanted[~np.isin(wanted, cached[0])])
    fresh = None
    if len(missing):
        if explainer is None or (explainer.run_id, explainer.method) != (run.id, method):
            explainer = Explainer(run, method, device)
        fresh = _compute(dataset, explainer, missing, batch_size, progress, cancel)
        if store:
            cache.store(*_merged(cached, (missing, *fresh)))
    maps, peaks = _gather(wanted, cached, missing, fresh, dataset.image_size)
    report(progress, "explain", len(wanted), len(wanted),
           f"{len(wanted)} heatmaps ({len(missing)} computed)")
    return Heatmaps(run.id, method, wanted, maps, peaks, len(missing),
                    time.perf_counter() - started)


def fused_map_source(dataset, run, image_id: int) -> str | None:
    """Whose map the fused heatmap of ``image_id`` is: ``FUSED_NETWORK_METHOD`` where the
    network's part of its stored score weighs more, else ``GOLDEN_METHOD``; None when the
    run has no golden reference or the image no stored fused score."""
    run = as_run(dataset.workspace, run)
    reference = load_reference(run.checkpoint) if run.checkpoint else None
    parts = aligned_parts(dataset, run.id) if reference else None
    position = int(dataset.positions([image_id])[0])
    if parts is None or np.isnan(parts.golden[position]):
        return None
    network = reference.network_decides([parts.network_logits[position]],
                                        [parts.golden[position]])[0]
    return FUSED_NETWORK_METHOD if network else GOLDEN_METHOD


def _check_present(dataset, image_ids: np.ndarray) -> None:
    if len(image_ids) == 0:
        raise ValueError("no images to explain")
    absent = image_ids[dataset.positions(image_ids) < 0]
    if len(absent):
        raise ValueError(f"image id(s) {absent[:5].tolist()} are not present in {dataset.root}")


def _gather(wanted, cached, missing, fresh, size) -> tuple[np.ndarray, np.ndarray]:
    """Maps and peaks of ``wanted`` (in order) from the cache and the fresh maps."""
    maps = np.empty((len(wanted), *size), dtype=np.float16)
    peaks = np.empty(len(wanted), dtype=np.float32)
    sources = [s for s in (cached, (missing, *fresh) if fresh is not None else None) if s]
    for ids, source_maps, source_peaks in sources:
        order = np.argsort(ids)
        found = np.searchsorted(ids, wanted, sorter=order).clip(0, len(ids) - 1)
        rows = order[found]
        hit = np.flatnonzero(ids[rows] == wanted)
        if len(hit):
            # Fancy indexing a memmap reads just these rows.
            maps[hit] = source_maps[rows[hit]]
            peaks[hit] = source_peaks[rows[hit]]
    return maps, peaks


def _merged(cached, fresh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cache's entries plus the fresh ones (fresh wins), sorted by id."""
    if cached is None:
        ids, maps, peaks = fresh
    else:
        keep = ~np.isin(cached[0], fresh[0])
        ids = np.concatenate([cached[0][keep], fresh[0]])
        maps = np.concatenate([np.asarray(cached[1][keep]), fresh[1]])
        peaks = np.concatenate([cached[2][keep], fresh[2]])
    order = np.argsort(ids, kind="stable")
    return ids[order], maps[order], peaks[order]


# --- computing ---------------------------------------------------------------------------

class Explainer:
    """A run's model and one method, ready to explain batches (built once, used many times).

    The viewer keeps one per run and method, so a key press costs the attribution pass
    only, not loading the checkpoint and setting Captum up again.
    """

    def __init__(self, run, method: str, device: str = "auto") -> None:
        self.run_id, self.method = run.id, check_method(method)
        self.device = select_device(device)
        # The golden map needs no network: the run's bank of good parts is the model.
        self.golden = _golden_bank(run) if method in NEEDS_GOLDEN else None
        if method == GOLDEN_METHOD:
            return
        model, config = load_model_from_run(run)
        self.model = model.to(self.device).eval()
        self.input_shape = config.input_shape
        self.logit_offset = run.logit_offset
        network_method = FUSED_NETWORK_METHOD if method == FUSED_METHOD else method
        self.attribute = make_attributor(self.model, network_method, self.input_shape,
                                         self.device)

    def warm_up(self) -> Explainer:
        """Run the method once on a blank image: the first pass pays for lazy set-up
        (allocations, hooks) that a user pressing H should not wait for."""
        # One image is too little work to share: two threads waiting on each other's slice
        # were 40x slower than one on a busy 2-core machine (README, heatmap benchmark).
        if self.golden is not None:
            self.golden.warm_up()
        if self.method == GOLDEN_METHOD:
            return self
        with torch_threads(1 if self.device.type == "cpu" else None):
            self.attribute(torch.zeros((1, 1, *self.input_shape), device=self.device))
        return self

    def maps(self, dataset, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(maps float16 (n, H, W) at the dataset's size, peaks float32 (n,)): one batch."""
        positions = np.asarray(positions)
        if self.method == GOLDEN_METHOD:
            return _golden_maps(self.golden, dataset, positions)[:2]
        with torch_threads(1 if self.device.type == "cpu" and len(positions) == 1 else None):
            images = prepare_images(dataset, positions, self.input_shape, self.device)
            images = images.to(self.device)
            if self.method == FUSED_METHOD:
                return self._fused_maps(dataset, positions, images)
            return _to_image_size(self.attribute(normalise(images)), dataset.image_size)

    def _fused_maps(self, dataset, positions: np.ndarray, images: torch.Tensor
                    ) -> tuple[np.ndarray, np.ndarray]:
        """The golden map, replaced by the network's where the network weighs more."""
        maps, peaks, golden = _golden_maps(self.golden, dataset, positions)
        with torch.no_grad():  # the logits exactly as scoring stores them
            logits = predict(self.model, images, self.logit_offset)[0].cpu().numpy()
        network_decides = np.flatnonzero(self.golden.reference.network_decides(logits, golden))
        if len(network_decides):
            chosen = normalise(images[torch.from_numpy(network_decides).to(images.device)])
            maps[network_decides], peaks[network_decides] = _to_image_size(
                self.attribute(chosen), dataset.image_size)
        return maps, peaks


def _compute(dataset, explainer: Explainer, image_ids: np.ndarray, batch_size: int | None,
             progress: ProgressFn | None, cancel: CancelCheck | None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(maps float16 (n, H, W), peaks float32 (n,)) of ``image_ids`` (ascending)."""
    batch = batch_size or (DEFAULT_BATCH_CUDA if explainer.device.type == "cuda"
                           else DEFAULT_BATCH_CPU)
    if batch < 1:
        raise ValueError(f"batch size must be at least 1, got {batch}")
    positions = dataset.positions(image_ids)
    n = len(positions)
    maps = np.empty((n, *dataset.image_size), dtype=np.float16)
    peaks = np.empty(n, dtype=np.float32)
    throttle, started = Throttle(0.25), time.perf_counter()
    for start in range(0, n, batch):
        check_cancel(cancel)
        stop = min(start + batch, n)
        maps[start:stop], peaks[start:stop] = explainer.maps(dataset, positions[start:stop])
        if throttle.ready(final=stop == n):
            rate = stop / max(time.perf_counter() - started, 1e-9)
            report(progress, "explain", stop, n, f"{rate:.1f} images/s", images_per_s=rate)
    return maps, peaks


def _golden_bank(run):
    """The run's golden bank; ValueError when it has none (trained without a golden weight)."""
    bank = load_bank(bank_path(run.checkpoint)) if run.checkpoint else None
    if bank is None or bank.reference is None:
        raise ValueError(f"run {run.id} has no golden reference (trained with golden weight "
                         f"0, or stopped before it was built): use another method")
    return bank


def _golden_maps(bank, dataset, positions: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The golden deviation above what the good parts typically reach (core.golden_score):
    a part no further from its golden than a typical good part shows nothing. Maps, peaks
    and the images' golden scores (each ratio map's maximum)."""
    typical = float(np.exp(bank.reference.golden_median))
    ratios = ratio_maps(bank, dataset, positions)
    maps, peaks = _to_image_size(torch.from_numpy(ratios - typical), dataset.image_size)
    return maps, peaks, ratios.max(axis=(1, 2))


def _to_image_size(raw: torch.Tensor, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Positive evidence, resized to ``size`` and normalised by each map's maximum."""
    raw = raw.detach().float().clamp_min(0)
    if raw.ndim == 3:
        raw = raw[:, None]
    resized = F.interpolate(raw, size=size, mode="bilinear", align_corners=False)[:, 0]
    peaks = resized.flatten(1).amax(dim=1)
    # An all-zero map (no evidence for "bad" at all) stays zero instead of dividing by 0.
    normalised = resized / peaks.clamp_min(torch.finfo(torch.float32).tiny)[:, None, None]
    return normalised.cpu().numpy().astype(np.float16), peaks.cpu().numpy()


Attributor = Callable[[torch.Tensor], torch.Tensor]


def make_attributor(model: nn.Module, method: str, input_shape: tuple[int, int],
                    device: torch.device) -> Attributor:
    """A function from normalised images (B, 1, h, w) to raw maps (B, 1, h', w')."""
    from captum import attr

    if method == "occlusion":
        return _occlusion(attr.Occlusion(model), input_shape, device)
    if method == "integrated-gradients":
        return _integrated_gradients(attr.IntegratedGradients(model), input_shape)
    # The layer methods need the model's residual stages (the others work on any model).
    stages = feature_stages(model, input_shape, device)
    if method == "gradcam":
        return _gradcam(attr.LayerGradCam(model, stages[-1]))
    if method == "gradcam-fine":
        return _gradcam(attr.LayerGradCam(model, stages[-2] if len(stages) > 1 else stages[-1]))
    if method == "layercam":
        chosen = stages[-LAYERCAM_STAGES:]
        return _layercam(attr.LayerGradientXActivation(model, chosen), input_shape)
    raise ValueError(check_method(method))


def _gradcam(cam) -> Attributor:
    def attribute(x: torch.Tensor) -> torch.Tensor:
        # The model has one output per image (the defect logit), so no target is needed.
        return cam.attribute(x, relu_attributions=True)
    return attribute


def _layercam(method, input_shape: tuple[int, int]) -> Attributor:
    def attribute(x: torch.Tensor) -> torch.Tensor:
        per_stage = method.attribute(x)
        combined = torch.zeros((x.shape[0], 1, *input_shape), device=x.device)
        for stage_map in per_stage:
            positive = stage_map.sum(dim=1, keepdim=True).clamp_min(0)
            up = F.interpolate(positive, size=input_shape, mode="bilinear",
                               align_corners=False)
            # Each stage counts the same whatever its units: normalise before averaging.
            combined += up / up.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None, None]
        return combined / len(per_stage)
    return attribute


def _occlusion(method, input_shape: tuple[int, int], device: torch.device) -> Attributor:
    rows, cols = input_shape
    window = max(4, round(min(rows, cols) * OCCLUSION_FRACTION))
    stride = max(2, window // 2)

    def attribute(x: torch.Tensor) -> torch.Tensor:
        per_pass = (CPU_OCCLUSION_PASS if device.type == "cpu" else 512) // x.shape[0]
        # Baseline 0 in normalised units is the dataset's mean grey.
        return method.attribute(x, sliding_window_shapes=(1, window, window),
                                strides=(1, stride, stride), baselines=0.0,
                                perturbations_per_eval=max(1, per_pass))
    return attribute


def _integrated_gradients(method, input_shape: tuple[int, int]) -> Attributor:
    sigma = max(1.0, min(input_shape) * IG_SMOOTH_FRACTION)

    def attribute(x: torch.Tensor) -> torch.Tensor:
        raw = method.attribute(x, baselines=0.0, n_steps=IG_STEPS,
                               internal_batch_size=max(x.shape[0], 8))
        return _gaussian_blur(raw.clamp_min(0), sigma)
    return attribute


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))


def feature_stages(model: nn.Module, input_shape: tuple[int, int],
                   device: torch.device) -> list[nn.Module]:
    """The last residual block of each resolution, finest first.

    Found by running one blank image and watching every residual block's output size, so
    it works for any registered model built from torchvision blocks (the ResNets, and the
    trunks of ``designed_resnet`` and ``stratified``) without a per-model list of names.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck

    sizes: dict[nn.Module, tuple[int, int]] = {}
    hooks = [m.register_forward_hook(lambda mod, _i, out: sizes.__setitem__(mod, out.shape[2:]))
             for m in model.modules() if isinstance(m, BasicBlock | Bottleneck)]
    try:
        with torch.no_grad():
            model(torch.zeros((1, 1, *input_shape), device=device))
    finally:
        for hook in hooks:
            hook.remove()
    last_of_size: dict[tuple[int, int], nn.Module] = {}
    for module, size in sizes.items():  # in execution order
        last_of_size[tuple(size)] = module
    if not last_of_size:
        raise ValueError(f"{type(model).__name__} has no residual blocks to explain")
    return list(last_of_size.values())
