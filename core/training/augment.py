"""Training-time augmentation that never manufactures a defect.

In this inspection task the *geometry* of a part is the label: a part that is rotated,
shifted off its pad or mirrored (its marking text reversed) IS a defect. So the only
geometric change here is a translation of a few pixels (well inside how much good parts
already wander in the images), filled by repeating the edge pixels rather than by black
borders that could look like a missing chunk. Everything else is photometric and global
(brightness, contrast, gamma, sensor noise): lighting changes between lines and cameras,
which must not change the verdict. No flips, no rotations, no crops that cut the part.

All of it runs on whole batches on the training device, one random draw per image from a
seeded ``torch.Generator`` so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentSettings:
    """Ranges of the random changes (per image, uniform unless noted).

    Attributes:
        max_shift: largest translation in pixels, rows and columns independently (see
            :func:`settings_for_rows` for the default at a given resolution).
        brightness: added offset in [-brightness, +brightness] (image range 0..1).
        contrast: contrast factor in [1 - contrast, 1 + contrast] around the image mean.
        gamma: gamma exponent exp(u), u in [-gamma, +gamma].
        noise: Gaussian noise with a standard deviation in [0, noise].
    """

    max_shift: int = 3
    brightness: float = 0.06
    contrast: float = 0.12
    gamma: float = 0.15
    noise: float = 0.02


DEFAULT_AUGMENT = AugmentSettings()


def settings_for_rows(rows: int, native_rows: int = 267) -> AugmentSettings:
    """Default settings with the shift scaled to the working resolution.

    ``max_shift`` is meant in native (267-row) pixels, where good parts already wander by a
    few pixels; at 128 rows the same physical wobble is about half as many pixels.
    """
    shift = max(1, round(DEFAULT_AUGMENT.max_shift * rows / native_rows))
    return AugmentSettings(max_shift=shift, brightness=DEFAULT_AUGMENT.brightness,
                           contrast=DEFAULT_AUGMENT.contrast, gamma=DEFAULT_AUGMENT.gamma,
                           noise=DEFAULT_AUGMENT.noise)


def augment_batch(x: torch.Tensor, generator: torch.Generator,
                  settings: AugmentSettings = DEFAULT_AUGMENT) -> torch.Tensor:
    """Randomly jitter a batch of images in the 0..1 range.

    Args:
        x: (B, 1, H, W) float images scaled to 0..1 (before normalisation).
        generator: a generator on ``x``'s device.
        settings: ranges of the changes.

    Returns:
        A new (B, 1, H, W) tensor, clamped to 0..1.
    """
    x = photometric_jitter(x, generator, settings)
    x = add_noise(x, generator, settings.noise)
    return translate(x, generator, settings.max_shift)


def _uniform(generator: torch.Generator, n: int, low: float, high: float,
             like: torch.Tensor) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=like.device, dtype=torch.float32)
    return (low + (high - low) * u).to(like.dtype).view(n, 1, 1, 1)


def photometric_jitter(x: torch.Tensor, generator: torch.Generator,
                       settings: AugmentSettings) -> torch.Tensor:
    """Gamma, then contrast about each image's mean, then a brightness offset."""
    n = x.shape[0]
    gamma = torch.exp(_uniform(generator, n, -settings.gamma, settings.gamma, x))
    x = x.clamp(0, 1).pow(gamma)
    contrast = _uniform(generator, n, 1 - settings.contrast, 1 + settings.contrast, x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    brightness = _uniform(generator, n, -settings.brightness, settings.brightness, x)
    return ((x - mean) * contrast + mean + brightness).clamp(0, 1)


def add_noise(x: torch.Tensor, generator: torch.Generator, max_std: float) -> torch.Tensor:
    """Gaussian sensor noise with a random strength per image."""
    if max_std <= 0:
        return x
    std = _uniform(generator, x.shape[0], 0.0, max_std, x)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + noise * std).clamp(0, 1)


def translate(x: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels, repeating the edge pixels.

    Clamped gather indices do in one operation what replicate-padding plus a random crop
    would do per image.
    """
    if max_shift <= 0:
        return x
    b, c, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator,
                           device=x.device)
    rows = (torch.arange(h, device=x.device)[None, :] - shifts[0][:, None]).clamp(0, h - 1)
    cols = (torch.arange(w, device=x.device)[None, :] - shifts[1][:, None]).clamp(0, w - 1)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = x[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous(memory_format=_memory_format(x))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
            and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
