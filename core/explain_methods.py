"""The names of the heatmap methods and the default per model, without importing torch.

``diesight --help`` and the GUI's method menu list them; the work is in core.explain.
"""

from __future__ import annotations

METHODS: dict[str, str] = {
    "gradcam": "Grad-CAM at the last residual stage (coarse)",
    "gradcam-fine": "Grad-CAM one stage earlier (twice the resolution)",
    "layercam": "gradient x activation at the last three stages, combined",
    "occlusion": "logit drop when a window is greyed out (slow: many forward passes)",
    "integrated-gradients": "integrated gradients from mean grey, smoothed",
    "golden": "where the part departs from its golden reference, beyond a typical good "
              "part (runs with a golden weight; core.golden_score)",
    "fused": "per image, the map of the part that weighs more in its fused score: golden "
             "where the golden reference does, integrated gradients where the network "
             "does (runs with a golden weight)",
}
GOLDEN_METHOD = "golden"
FUSED_METHOD = "fused"
NEEDS_GOLDEN = (GOLDEN_METHOD, FUSED_METHOD)
# The network's map inside "fused": the one measured best without a golden reference.
FUSED_NETWORK_METHOD = "integrated-gradients"

# The default per model, chosen by measured localisation (the pointing game on the demo
# sets' defect boxes, tests/benchmarks/bench_explain.py; the numbers and the reasons are in
# the README's "Heatmaps: which method, and why"). A run with a golden reference uses
# "golden" instead (default_method).
DEFAULT_METHODS: dict[str, str] = {"designed_resnet": "integrated-gradients"}
FALLBACK_METHOD = "integrated-gradients"


def default_method(run) -> str:
    """The method used for ``run`` (a run record) when none is asked for: ``golden`` for a
    run with a golden reference (it localised local defects best: README, "Heatmaps"),
    else the one measured best for its model (DEFAULT_METHODS)."""
    from core.golden_score import has_golden

    if has_golden(run):
        return GOLDEN_METHOD
    return DEFAULT_METHODS.get(run.model, FALLBACK_METHOD)


def check_method(method: str) -> str:
    """``method`` when known; ValueError naming the valid ones otherwise."""
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; valid methods are: "
                         + ", ".join(METHODS))
    return method
