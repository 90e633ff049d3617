"""Label Studio JSON: ``tasks.json`` (a list of tasks, the shape Label Studio imports) and
``label_config.xml`` (the labelling interface the results refer to).

Each task is ``{"data": {"image": URL, ...}, "annotations" | "predictions": [{"result":
[...]}]}``. Every region gives two results sharing one ``id`` (``<image id>-<k>``): a
``polygonlabels`` result (points in percent of the image size, with ``original_width``/
``original_height``) and a per-region ``textarea`` result holding the LaTeX (Label Studio attaches
a result to the region whose ``id`` it shares). The polygon is the region's quad; a mask-only
region's polygon is the outline of the mask's *largest connected part* only (a polygon is one
ring), so a formula brushed in several parts is not whole in it.

The pixels themselves come in a brush region: after all the polygon pairs, every region with a mask
(mask-only or quad and mask) gives a ``brushlabels`` result, ``{"format": "rle", "rle": [...],
"brushlabels": [category]}`` in Label Studio's own RLE (:mod:`.lsbrush`; every part of the mask,
pixel for pixel), and a ``textarea`` result with the same LaTeX, both with the id
``<image id>-<k>-mask``; the textarea repeats the brush's ``format``/``rle`` as Label Studio writes
a per-region result's value (the polygon's textarea likewise repeats its points). In Label Studio
such a formula shows as two regions, the polygon and the brush. Decode a brush with
``label_studio_sdk.converter.brush.decode_rle(rle)`` reshaped to ``(height, width, 4)``: the mask is
where the last channel is not 0.

Points are clipped to the image (0 to
100 percent): Label Studio validates imported predictions against the labeling config
(``label_studio_sdk`` ``LabelInterface.validate_prediction``: polygon points ``confloat(le=100)``,
schema minimum 0) and refuses a formula drawn past the image edge. ``label_config.xml`` lists every
category of the export as a ``<Label>`` of both the ``<PolygonLabels>`` and the ``<BrushLabels>``
control (``formula`` when there is none, so a region can still be drawn).

``image_url`` maps an image to the URL Label Studio should load. The default is Label Studio's
local-files URL of the image inside the unpacked export, ``/data/local-files/?d=images/<file>``
(a bare relative path is not a URL Label Studio can load). To import:

1. unpack the zip into ``$DIR`` and start Label Studio with
   ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=$DIR``;
2. create a project with ``label_config.xml`` as its labeling interface;
3. add a *Local files* source storage with the absolute path ``$DIR/images`` (do not sync it);
4. import ``tasks.json``.
"""
from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np

from .base import ExportWriter, JsonArrayPart, split_name
from .lsbrush import mask_to_ls_rle
from .records import DEFAULT_CATEGORY, ExportImage, mask_polygon

POLYGON_FROM = "label"
BRUSH_FROM = "mask"
BRUSH_ID_SUFFIX = "-mask"
LATEX_FROM = "latex"
IMAGE_TO = "image"
LOCAL_FILES_PREFIX = "/data/local-files/?d="


class LabelStudioWriter(ExportWriter):
    format = "label-studio"

    def __init__(self, sink, *, image_url: Callable[[ExportImage], str] | None = None,
                 as_predictions: bool = False, model_version: str = "", **kwargs) -> None:
        super().__init__(sink, **kwargs)
        self._image_url = image_url or self.local_files_url
        self._key = "predictions" if as_predictions else "annotations"
        self._model_version = model_version
        self._tasks = JsonArrayPart(sink.part("tasks.json"))

    def local_files_url(self, image: ExportImage) -> str:
        """Label Studio's URL of the image under a local-files document root set to the unpacked zip."""
        return LOCAL_FILES_PREFIX + quote(self.image_member(image), safe="/")

    def add(self, image: ExportImage, data: bytes | None) -> None:
        self.write_image(image, data)
        size = np.array([image.width, image.height], dtype=np.float64)
        result, brushes = [], []
        for k, region in enumerate(image.regions):
            pts = region.points if region.points is not None else mask_polygon(region.mask_rle)
            if pts is None:
                continue
            rid = f"{image.image_id}-{k}"
            percent = np.clip(np.asarray(pts, dtype=np.float64) / size * 100.0, 0.0, 100.0).tolist()
            common = {"id": rid, "to_name": IMAGE_TO, "original_width": image.width,
                      "original_height": image.height, "image_rotation": 0}
            self.category_id(region.category_slug)
            result.append({**common, "from_name": POLYGON_FROM, "type": "polygonlabels",
                           "value": {"points": percent, "closed": True,
                                     "polygonlabels": [region.category_slug]}})
            result.append({**common, "from_name": LATEX_FROM, "type": "textarea",
                           "value": {"points": percent, "closed": True, "text": [region.latex]}})
            rle = None if region.mask_rle is None else mask_to_ls_rle(region.mask_rle, image.width, image.height)
            if rle is not None:  # the mask itself, every part of it (the outline is one part)
                brush = {**common, "id": rid + BRUSH_ID_SUFFIX}
                brushes.append({**brush, "from_name": BRUSH_FROM, "type": "brushlabels",
                                "value": {"format": "rle", "rle": rle, "brushlabels": [region.category_slug]}})
                brushes.append({**brush, "from_name": LATEX_FROM, "type": "textarea",
                                "value": {"format": "rle", "rle": rle, "text": [region.latex]}})
            self.regions += 1
        result += brushes
        body: dict = {"result": result}
        if self._key == "predictions" and self._model_version:
            body["model_version"] = self._model_version
        task = {"data": {"image": self._image_url(image), "image_id": image.image_id,
                         "split": split_name(image.split), "licence": image.licence.code,
                         "source": image.source.name},
                self._key: [body]}
        self._tasks.append(task)

    def finish(self) -> None:
        self._tasks.close()
        if not self.categories:  # a PolygonLabels/BrushLabels without a Label would let no formula be drawn
            self.category_id(DEFAULT_CATEGORY)
        labels = "\n".join(f"    <Label value={quoteattr(slug)}/>" for slug in self.categories)
        self.sink.write("label_config.xml", f"""<View>
  <Image name="{IMAGE_TO}" value="$image" zoom="true"/>
  <PolygonLabels name="{POLYGON_FROM}" toName="{IMAGE_TO}">
{labels}
  </PolygonLabels>
  <BrushLabels name="{BRUSH_FROM}" toName="{IMAGE_TO}">
{labels}
  </BrushLabels>
  <TextArea name="{LATEX_FROM}" toName="{IMAGE_TO}" perRegion="true" editable="true" maxSubmissions="1"
            rows="2" placeholder="LaTeX" displayMode="region-list"/>
</View>
""")
