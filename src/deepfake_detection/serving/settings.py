"""A logged detector's settings with their defaults: the one parser of what ``log_detector`` wrote
into a detector's ``model_config`` and metadata (and ``export`` into an ONNX sidecar).

Every reader goes through :meth:`DetectorSettings.from_metadata`: the pyfunc when it loads
(:class:`~deepfake_detection.serving.pyfunc.DeepfakeDetector`), ``predict`` (ONNX sidecar and
a logged detector's threshold), ``explain`` and ``export``. A key a detector logged before it
existed gets its default here, once: ``threshold`` :data:`DEFAULT_THRESHOLD`, ``max_pixels``
:data:`~deepfake_detection.data.images.MAX_PIXELS`, ``view`` ``resize``, ``faces`` off and the
default :class:`~deepfake_detection.config.FacesParams`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deepfake_detection.config import FacesParams
from deepfake_detection.data.images import MAX_PIXELS

PATCHES = "patches"
"""The view whose detectors score a grid of native-resolution crops of each whole image."""
DEFAULT_THRESHOLD = 0.5
"""The decision threshold of a detector (or an ONNX file) that carries none."""
DEFAULT_BATCH_SIZE = 64


def face_settings(value) -> FacesParams:
    """A :class:`FacesParams` from itself, its ``model_dump()`` or None (the defaults)."""
    if value is None:
        return FacesParams()
    if isinstance(value, FacesParams):
        return value
    return FacesParams(**dict(value))


@dataclass(frozen=True)
class DetectorSettings:
    """What a logged detector carries besides its networks, defaults filled in.

    ``has_threshold``: whether the metadata named a threshold (``threshold`` is then that one,
    else :data:`DEFAULT_THRESHOLD`). ``image_size``, ``patch_size``: ``None`` where not logged
    (the caller falls back on its networks' input sizes). ``member_views``: one view per member,
    or ``None`` where not logged (:meth:`views` gives ``view`` for every member)."""

    threshold: float = DEFAULT_THRESHOLD
    has_threshold: bool = False
    threshold_method: str | None = None
    image_size: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    max_pixels: int = MAX_PIXELS
    faces: bool = False
    face_settings: FacesParams = field(default_factory=FacesParams)
    has_face_settings: bool = False
    view: str = "resize"
    member_views: tuple[str, ...] | None = None
    patch_size: int | None = None
    ensemble: dict | None = None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> DetectorSettings:
        """The settings of a detector's ``model_config`` or metadata (or an ONNX sidecar); any key
        may be missing (a detector logged before it existed, a bare ``.keras`` file: ``{}``)."""
        m = dict(metadata or {})
        threshold = m.get("threshold")
        views = m.get("member_views")
        return cls(
            threshold=DEFAULT_THRESHOLD if threshold is None else float(threshold),
            has_threshold=threshold is not None,
            threshold_method=m.get("threshold_method"),
            image_size=_positive(m.get("image_size")),
            batch_size=int(m.get("batch_size") or DEFAULT_BATCH_SIZE),
            max_pixels=int(m.get("max_pixels") or MAX_PIXELS),
            faces=bool(m.get("faces", False)),
            face_settings=face_settings(m.get("face_settings")),  # a FacesParams.model_dump(), or None
            has_face_settings=m.get("face_settings") is not None,
            view=m.get("view") or "resize",  # detectors logged before the patch view: resize
            member_views=tuple(views) if views else None,
            patch_size=_positive(m.get("patch_size")),
            ensemble=m.get("ensemble") or None,
        )

    @property
    def faces_allowed(self) -> bool:
        """Whether the detector can score face crops: not under the patch view, whose networks
        read grids of native-resolution crops of whole images."""
        return self.view != PATCHES

    def views(self, n_members: int) -> list[str]:
        """Each member's view (detectors logged before per-member views: ``view`` for all)."""
        return list(self.member_views or [self.view] * n_members)


def _positive(value) -> int | None:
    return int(value) if value else None
