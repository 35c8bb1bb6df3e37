"""What ``explain`` needs of a detector, loaded once (:func:`load_explainer`): its Keras members,
the ensemble combining them, its settings (``serving.settings``) and how its images are read
(resized, or at their own resolution: ``views.scorer``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfake_detection.data.views import scorer
from deepfake_detection.evaluation.ensemble import Ensemble
from deepfake_detection.explain.gradcam import ensemble_gradcam, gradcam_with_scores
from deepfake_detection.explain.maps import native_map
from deepfake_detection.serving.members import input_size, load_keras_detector
from deepfake_detection.serving.settings import DetectorSettings


class _Detector:
    """What ``explain`` needs of a model: its Keras member(s), the ensemble combining them (or
    None), the threshold, pixel limit and metadata it carries, and each member's input size."""

    def __init__(self, model_uri_or_path: str | Path):
        self.models, description, self.metadata = load_keras_detector(model_uri_or_path)
        self.ensemble = Ensemble.from_dict(description) if description else None
        self.settings = DetectorSettings.from_metadata(self.metadata)
        self.threshold = self.settings.threshold
        self.max_pixels = self.settings.max_pixels
        self.sizes = sorted({input_size(m) for m in self.models} - {None})
        self.view = self.settings.view
        views = self.settings.views(len(self.models))
        self.member_views = ["native" if input_size(m) is None else v for m, v in zip(self.models, views)]
        self.forensic = "native" in self.member_views
        self.native = any(scorer(v).native for v in [self.view, *self.member_views])  # decoded at own resolution
        self.map_name = "Grad-CAM"
        if self.forensic:
            only = self.ensemble is None or all(v == "native" for v in self.member_views)
            self.map_name = "residual energy (forensic: no Grad-CAM)" if only else "Grad-CAM + residual energy"

    def explain(self, pixels: dict[int, np.ndarray], layer_name: str | None):
        """Heatmaps at the largest input size, P(fake) and the members' P(fake) (``None`` for
        one model) of pixels decoded at every input size."""
        if self.ensemble is None:
            heat, probs = gradcam_with_scores(
                self.models[0], pixels[self.sizes[0]], layer_name, threshold=self.threshold
            )
            return heat, probs, None
        self._check_layer(layer_name)
        return ensemble_gradcam(self.models, self.ensemble, pixels, threshold=self.threshold)

    def explain_native(self, images: list[np.ndarray], layer_name: str | None):
        """:meth:`explain` under the patch view: native-resolution images, one stitched heat map
        each (lists, as the sizes differ), P(fake) and the members' P(fake) (None for one model).
        A forensic network gets its residual-energy map (``explain.maps.energy_map``)."""
        self._check_layer(layer_name)
        patch = self.sizes[0] if self.sizes else None
        out = [
            native_map(self.models, self.ensemble, im, patch, threshold=self.threshold, layer_name=layer_name)
            for im in images
        ]
        heat = [h for h, _, _ in out]
        probs = np.array([p for _, p, _ in out])
        return heat, probs, None if self.ensemble is None else np.stack([P for _, _, P in out])

    def _check_layer(self, layer_name: str | None) -> None:
        """A named layer belongs to one network: an ensemble's members each use their own."""
        if self.ensemble is not None and layer_name is not None:
            raise ValueError(
                "layer_name names a layer of one network; an ensemble's members are explained at their own"
            )

    def caption(self, member_probs) -> str:
        """'soft_vote of 4: resnet50 0.51, light_se_cnn 0.93, ...' (empty for one model)."""
        if self.ensemble is None:
            return ""
        members = ", ".join(f"{n} {q:.2f}" for n, q in zip(self.ensemble.members, member_probs))
        return f"{self.ensemble.kind} of {len(self.ensemble.members)}: {members}"


def load_explainer(model_uri_or_path: str | Path) -> _Detector:
    """A detector's Keras member(s) loaded once, to pass to :func:`explain_files` many times
    (the web app explains every upload without reloading the model)."""
    return _Detector(model_uri_or_path)
