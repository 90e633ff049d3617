"""The PyTorch reader gives back what was exported."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from curation.exporters import ExportImage, ExportRegion, export, rle_to_mask
from curation.reader import ExportDataset
from tests.datasets.helpers import IM2MARKUP, MIT, make_image, png_bytes

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _images():
    rng = np.random.default_rng(0)
    return [make_image(i, rng=rng, split="train" if i != 3 else "test", n_quads=2, n_masks=1) for i in (1, 2, 3)]


@pytest.mark.parametrize("fmt", ["coco", "jsonl"])
def test_reader_yields_images_quads_masks_and_latex(tmp_path, fmt):
    images = _images()
    path = tmp_path / f"{fmt}.zip"
    export(iter(images), path, format=fmt)
    ds = ExportDataset(path, split="train")
    assert ds.format == fmt and len(ds) == 2
    by_id = {im.image_id: im for im in images}
    for k in range(len(ds)):
        image, target = ds[k]
        src = by_id[target["image_id"]]
        assert image.dtype == torch.uint8 and tuple(image.shape) == (3, src.height, src.width)
        assert target["latex"] == [r.latex for r in src.regions]
        assert target["quads"].shape == (3, 4, 2)
        np.testing.assert_allclose(target["quads"][:2].numpy(), np.stack([r.points for r in src.regions[:2]]),
                                   atol=1e-4)
        assert torch.isnan(target["quads"][2]).all()  # the mask-only region has no quad
        assert target["masks"].shape == (3, src.height, src.width)
        np.testing.assert_array_equal(target["masks"][2].numpy(), rle_to_mask(src.regions[2].mask_rle))
        assert target["masks"][0].sum() > 0  # the quad is rasterised
    assert len(ExportDataset(path)) == 3
    loader = DataLoader(ds, batch_size=2, collate_fn=ExportDataset.collate)
    batch_images, batch_targets = next(iter(loader))
    assert len(batch_images) == 2 and len(batch_targets) == 2


def test_reader_works_in_dataloader_worker_processes(tmp_path):
    path = tmp_path / "coco.zip"
    export(iter(_images()), path, format="coco")
    ds = ExportDataset(path)
    ds[0]  # the parent has an open zip handle now; workers must open their own
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=ExportDataset.collate)
    ids = sorted(t["image_id"] for _, targets in loader for t in targets)
    assert ids == [1, 2, 3]


def test_reader_crops_mode_reads_im2latex_exports(tmp_path):
    data = png_bytes(100, 50, (10, 20, 30))
    image = ExportImage(5, "p.png", 100, 50, "train", MIT, IM2MARKUP, open_bytes=lambda: data,
                        regions=[ExportRegion(points=[[10, 10], [70, 10], [70, 30], [10, 30]], latex="x^2")])
    path = tmp_path / "im2latex.zip"
    export([image], path, format="im2latex")
    ds = ExportDataset(path, mode="crops", split="train")
    crop, latex = ds[0]
    assert latex == "x ^ { 2 }"
    assert tuple(crop.shape) == (3, 20, 60)
    assert crop[:, 5, 5].tolist() == [10, 20, 30]
    assert len(ExportDataset(path, mode="crops", split="test")) == 0


def test_reader_refuses_archives_it_cannot_read(tmp_path):
    path = tmp_path / "yolo.zip"
    export(iter(_images()), path, format="yolo-obb")
    with pytest.raises(ValueError, match="neither a COCO nor a JSONL"):
        ExportDataset(path)
    with pytest.raises(ValueError, match="not an im2latex export"):
        ExportDataset(path, mode="crops")
    with pytest.raises(ValueError, match="mode"):
        ExportDataset(path, mode="video")
