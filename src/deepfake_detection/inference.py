"""Compatibility only: the names that lived here before :mod:`deepfake_detection.serving`.

Detectors logged before the split pickle their model as
``deepfake_detection.inference.DeepfakeDetector``; loading them in a process where this package
is already imported (``register``'s champion gate, ``predict``) resolves that name here, so it
must stay. New code imports from :mod:`deepfake_detection.serving.io`, ``.pyfunc``, ``.predict``
and ``.export`` (and :mod:`deepfake_detection.data.decode` for decoding).
"""

from deepfake_detection.data.decode import check_images, decode_images
from deepfake_detection.serving.export import EXPORT_FORMATS, ONNX_OPSET, export_model
from deepfake_detection.serving.io import (
    INPUT_COLUMNS,
    LOCAL_ACCESS,
    MAX_BYTES_ENV,
    OUTSIDE_ROOT,
    PATH_ROOT_ENV,
    PATHS_DISABLED,
    InvalidInputError,
    PathAccess,
    RowError,
    encode_image_file,
    local_files,
    path_access,
    read_image_file,
    read_inputs,
)
from deepfake_detection.serving.predict import RUNTIMES, OnnxDetector, expand_inputs, model_threshold, predict_files
from deepfake_detection.serving.pyfunc import (
    DEFAULT_THRESHOLD,
    ENSEMBLE_ARTIFACT,
    MEMBER_PREFIX,
    OUTPUT_COLUMNS,
    DeepfakeDetector,
    detector_signature,
    load_keras_members,
    log_detector,
    result_frame,
    score_rows,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "ENSEMBLE_ARTIFACT",
    "EXPORT_FORMATS",
    "INPUT_COLUMNS",
    "LOCAL_ACCESS",
    "MAX_BYTES_ENV",
    "MEMBER_PREFIX",
    "ONNX_OPSET",
    "OUTPUT_COLUMNS",
    "OUTSIDE_ROOT",
    "PATHS_DISABLED",
    "PATH_ROOT_ENV",
    "RUNTIMES",
    "DeepfakeDetector",
    "InvalidInputError",
    "OnnxDetector",
    "PathAccess",
    "RowError",
    "check_images",
    "decode_images",
    "detector_signature",
    "encode_image_file",
    "expand_inputs",
    "export_model",
    "load_keras_members",
    "local_files",
    "log_detector",
    "model_threshold",
    "path_access",
    "predict_files",
    "read_image_file",
    "read_inputs",
    "result_frame",
    "score_rows",
]
