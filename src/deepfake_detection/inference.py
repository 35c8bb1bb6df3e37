"""Compatibility only: the one class path that detectors logged before :mod:`deepfake_detection.serving` need.

Detectors logged before ``serving/`` was split out of this module (623eba0) pickle their model as
``deepfake_detection.inference.DeepfakeDetector``; unpickling looks that name up here, so it stays,
as the very class of :mod:`deepfake_detection.serving.pyfunc` (their instance attributes are read
with defaults there). Nothing else lives here: new code imports from :mod:`deepfake_detection.serving`
(``io``, ``pyfunc``, ``predict``, ``export``). ``tests/model/test_old_detectors.py`` loads such a
detector (``tests/model/fixtures/detector_inference_path``).
"""

from deepfake_detection.serving.pyfunc import DeepfakeDetector

__all__ = ["DeepfakeDetector"]
