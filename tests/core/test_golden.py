"""Golden reference: sub-pixel phase correlation, median of aligned good parts, difference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from core.golden import aligned, golden_reference, phase_shift


def part(shape=(96, 100), seed=0) -> np.ndarray:
    """A dark body with bright leads and texture: structure at several scales."""
    rng = np.random.default_rng(seed)
    image = np.full(shape, 60.0)
    image[30:66, 25:75] = 25
    image[18:30, 35:42] = image[66:78, 58:65] = 210
    return ndimage.gaussian_filter(image + rng.normal(0, 4, shape), 1.0)


@pytest.mark.parametrize("shift", [(3.4, -2.7), (-0.35, 0.6), (9.75, 6.2), (0.0, 0.0)])
def test_phase_shift_recovers_subpixel_translations(shift):
    reference = part()
    moving = ndimage.shift(reference, shift, order=3, mode="nearest")
    moving += np.random.default_rng(1).normal(0, 2, moving.shape)
    found = phase_shift(reference, moving)
    assert found == pytest.approx((-shift[0], -shift[1]), abs=0.1)
    back, _ = aligned(reference, moving)
    assert np.abs(back - reference)[12:-12, 12:-12].mean() < 3


class Stack:
    """The bits of a Dataset golden_reference reads."""

    def __init__(self, images):
        self.images = np.stack(images).astype(np.uint8)
        self.image_ids = np.arange(len(images))


def test_golden_is_the_median_of_aligned_parts_and_the_difference_shows_the_defect():
    base = part(seed=2)
    goods = [ndimage.shift(base, s, order=3, mode="nearest")
             + np.random.default_rng(i).normal(0, 3, base.shape)
             for i, s in enumerate([(2.5, -1.5), (-3.2, 2.1), (1.1, 3.3), (-0.6, -2.8),
                                    (0, 0)])]
    defect = ndimage.shift(base, (1.7, 0.4), order=3, mode="nearest")
    defect[45:52, 50:57] = 240  # a particle on the body
    data = Stack([np.clip(x, 0, 255) for x in [defect, *goods]])
    result = golden_reference(data, 0, [1, 2, 3, 4, 5])
    assert result.golden.shape == result.difference.shape == base.shape
    assert result.shifts.shape == (5, 2)
    inside = result.difference[45:52, 50:57].mean()
    elsewhere = np.median(result.difference[12:-12, 12:-12])
    assert inside > 150 and elsewhere < 8
    row, col = np.unravel_index(np.argmax(ndimage.uniform_filter(result.difference, 5)),
                                base.shape)
    assert 44 <= row <= 53 and 49 <= col <= 58
    with pytest.raises(ValueError):
        golden_reference(data, 0, [])


def test_golden_for_uses_good_parts_that_look_alike_not_other_products():
    from types import SimpleNamespace

    from core.golden import golden_for

    other = np.full((96, 100), 40.0)
    other[20:76, 10:90] = 120  # another product: a wide, bright body
    images = [part(seed=9)]  # position 0: the query
    images += [part(seed=s) for s in range(1, 5)]            # 1-4: same product, good
    images += [ndimage.gaussian_filter(other, 1) + s for s in range(4)]  # 5-8: other, good
    images += [part(seed=20)]                                 # 9: same product, bad
    data = Stack([np.clip(x, 0, 255) for x in images])
    index = SimpleNamespace(dataset=data, candidates=np.arange(1, 10),
                            labels=np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1]))
    result = golden_for(index, 0, k=4)
    assert sorted(result.positions.tolist()) == [1, 2, 3, 4]
