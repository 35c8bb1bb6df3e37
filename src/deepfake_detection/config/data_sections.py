"""The ``data`` section of params.yaml: the image size, view and batch, the split, the face
crops, the training augmentation and the sample set."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from .base import _ordered_pair, _Section


class SplitParams(_Section):
    valid: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _leaves_training_data(self):
        if self.valid + self.test >= 1:
            raise ValueError("valid + test must leave something to train on (sum < 1)")
        return self


class DegradeParams(_Section):
    """CNNDetection's degradation augmentation (Wang et al., CVPR 2020): with probability
    ``blur_prob`` a training image is blurred with a Gaussian of sigma ~ U(``blur_sigma``) pixels,
    then with probability ``jpeg_prob`` re-compressed as JPEG at a quality ~ U(``jpeg_quality``);
    at native resolution, before the resize or crop. Both probabilities 0 (the default): off."""

    blur_prob: float = Field(0.0, ge=0, le=1)
    blur_sigma: tuple[float, float] = (0.0, 3.0)
    jpeg_prob: float = Field(0.0, ge=0, le=1)
    jpeg_quality: tuple[int, int] = (30, 100)

    @field_validator("blur_sigma")
    @classmethod
    def _sigma_range(cls, v):
        return _ordered_pair(v, 0, 10)

    @field_validator("jpeg_quality")
    @classmethod
    def _quality_range(cls, v):
        return _ordered_pair(v, 1, 100)


class AugmentParams(_Section):
    flip: StrictBool = True  # YAML true/false only: "no" or 0 is an error, not False
    rotation: float = Field(0.03, ge=0, le=0.5)
    zoom: float = Field(0.1, ge=0, lt=1)
    brightness: float = Field(0.1, ge=0, le=1)
    contrast: float = Field(0.1, ge=0, le=1)
    jpeg_quality: tuple[int, int] | None = None
    # Self-blended fakes (Shiohara & Yamasaki, CVPR 2022): the probability that a real training
    # image becomes a fake one, blended with a colour- and geometry-jittered copy of itself
    # through a soft elliptical mask over its centre. Training only; 0 turns it off.
    self_blend: float = Field(0.0, ge=0, le=1)
    # Region-swap fakes (CIPLAB-style composites): the probability that a real training image
    # becomes a fake one with the eyes, nose or mouth of another real training face pasted in
    # (feathered mask, colour-matched). Training only; 0 turns it off. data/synthetic.py.
    region_swap: float = Field(0.0, ge=0, le=1)
    # Probabilistic blur and JPEG re-compression at native resolution (DegradeParams); the
    # jpeg_quality above re-encodes every image, after the resize.
    degrade: DegradeParams = DegradeParams()

    @field_validator("jpeg_quality")
    @classmethod
    def _quality_range(cls, v):
        if v is not None and not (1 <= v[0] <= v[1] <= 100):
            raise ValueError("must be [low, high] with 1 <= low <= high <= 100")
        return v


class SampleParams(_Section):
    images_per_class: int = Field(600, ge=10)
    size: int = Field(96, ge=32, le=512)
    quality: int = Field(90, ge=1, le=100)


MIN_DETECTABLE_SIDE = 12
"""MTCNN's smallest pyramid level: an image whose shorter side is below this has no face to find."""


class FacesParams(_Section):
    """How faces are found and cropped (``data.faces``; data/faces.py): ``ingest --faces``,
    ``predict --faces``, ``explain --faces`` and the pyfunc model's ``faces`` flag all crop this way.
    The one face-settings type: a logged detector keeps its ``model_dump()``."""

    margin: float = Field(0.25, ge=0, le=2)  # added on each side, as a fraction of the face box's longer side
    min_confidence: float = Field(0.9, ge=0, le=1)  # detections below this are ignored
    min_face_size: int = Field(20, ge=MIN_DETECTABLE_SIDE)  # pixels: smaller faces are not searched for


class DataParams(_Section):
    dir: Path = Path("data")
    image_size: int = Field(64, ge=32, le=1024)
    batch_size: int = Field(32, ge=1)  # the GLOBAL batch: train.distribute splits it across the replicas
    # resize: the whole image resized to image_size. patches: no resampling; training sees random
    # patch_size crops at native resolution, and an image's score averages the crop logits over
    # a fixed grid of crops that covers it (data/views.py).
    view: Literal["resize", "patches"] = "resize"
    patch_size: int = Field(64, ge=32, le=1024)
    split: SplitParams = SplitParams()
    faces: FacesParams = FacesParams()
    augment: AugmentParams = AugmentParams()
    sample: SampleParams = SampleParams()
