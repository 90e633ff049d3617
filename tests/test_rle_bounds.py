"""A mask whose declared size no image could have is a MaskError (a 400 naming the region), not
an OverflowError inside pycocotools (a 500)."""
import pytest

from common import rle
from common.rle import MaskError


@pytest.mark.parametrize("counts", [[10**20], "0"])
def test_a_mask_larger_than_any_image_is_refused(counts):
    with pytest.raises(MaskError, match="larger than any image"):
        rle.validate({"size": [10**10, 10**10], "counts": counts}, width=100, height=100)
    with pytest.raises(MaskError, match="larger than any image"):
        rle.decode({"size": [10**10, 10**10], "counts": counts})


def test_an_ordinary_mask_still_decodes():
    import numpy as np

    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[1:3, 1:4] = 1
    assert rle.decode(rle.encode(mask)).sum() == 6
