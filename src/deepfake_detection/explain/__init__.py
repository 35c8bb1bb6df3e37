"""Explaining a detector's decisions: Grad-CAM heatmaps (Selvaraju et al. 2017), and overlays.

``gradcam`` takes the gradient of the model's decision score with respect to a 4-D feature
map (by default ``zoo.last_conv_layer_name(model)``: the last feature map before the head's
pooling), averages it over space into one weight per channel, and returns
``relu(sum_c weight_c * map_c)`` upsampled to the image size and scaled to [0, 1] per image.

The score is the sigmoid's input (the logit of P(fake)) when the output layer is a sigmoid
``Dense`` (all our models), so a saturated P(fake) = 1.0 still has gradients; otherwise the
output itself. ``target="predicted"`` (default) explains the model's decision for each image
(evidence for fake where it says fake, for real where it says real), ``"fake"``/``"real"`` one
class for all images. A map of 1 x 1 (EfficientNetB0 at 32 px: the backbone divides by 32)
can only give a constant heatmap; use 64 px or more, or name an earlier layer.

An ensemble is explained as a whole (:func:`ensemble_gradcam`), and a patch-view model
(``data.view: patches``) on its grid of native crops, their maps stitched over the whole image
(:func:`patch_gradcam`).

``explain_files(..., faces=True)`` (``explain --faces``) explains each face of a photo: the
crop the detector scores (:mod:`deepfake_detection.serving.face_rows`) is explained and its heatmap
blended back into the whole photo, face boxes drawn (:func:`faces_overlay`).

Images are float32 RGB pixels in [0, 255], ``(n, S, S, 3)``, as the models take them. Plots are
plain ``matplotlib.figure.Figure`` objects (no pyplot state), for ``mlflow.log_figure`` or
``savefig``.

The package: :mod:`.gradcam` (Grad-CAM of a network, an ensemble, a patch grid), :mod:`.maps`
(whole native-resolution images: residual energy of forensic members), :mod:`.overlay` (heat maps
drawn over images), :mod:`.detector` (a logged detector loaded for explaining) and :mod:`.files`
(:func:`explain_files`).
"""

from deepfake_detection.explain.detector import _Detector, load_explainer
from deepfake_detection.explain.files import distinct_labels, explain_files
from deepfake_detection.explain.gradcam import (
    TARGETS,
    ensemble_gradcam,
    gradcam,
    gradcam_with_scores,
    member_influence,
    patch_gradcam,
)
from deepfake_detection.explain.maps import mixed_maps, native_map
from deepfake_detection.explain.overlay import COLORMAP, FAKE_COLOUR, REAL_COLOUR, faces_overlay, overlay, overlay_grid

__all__ = [
    "COLORMAP",
    "FAKE_COLOUR",
    "REAL_COLOUR",
    "TARGETS",
    "_Detector",
    "distinct_labels",
    "ensemble_gradcam",
    "explain_files",
    "faces_overlay",
    "gradcam",
    "gradcam_with_scores",
    "load_explainer",
    "member_influence",
    "mixed_maps",
    "native_map",
    "overlay",
    "overlay_grid",
    "patch_gradcam",
]
