"""serving/settings.py: the one parser of a logged detector's settings, defaults filled in once."""

from deepfake_detection.config import FacesParams
from deepfake_detection.data.images import MAX_PIXELS
from deepfake_detection.serving.settings import DEFAULT_THRESHOLD, DetectorSettings, face_settings


def test_a_detector_logged_before_the_settings_existed_gets_the_defaults():
    s = DetectorSettings.from_metadata({})
    assert s.threshold == DEFAULT_THRESHOLD and not s.has_threshold
    assert s.max_pixels == MAX_PIXELS and s.view == "resize" and s.faces is False
    assert s.face_settings == FacesParams() and not s.has_face_settings
    assert s.image_size is None and s.patch_size is None and s.ensemble is None
    assert s.views(3) == ["resize"] * 3
    assert DetectorSettings.from_metadata(None) == s


def test_the_logged_values_are_read():
    faces = FacesParams(margin=0.1)
    s = DetectorSettings.from_metadata(
        {
            "threshold": 0.0,  # a threshold of 0 is a threshold
            "threshold_method": "f1",
            "image_size": 96,
            "batch_size": 8,
            "max_pixels": 1000,
            "faces": True,
            "face_settings": faces.model_dump(),
            "view": "patches",
            "member_views": ["patches", "native"],
            "patch_size": 64,
        }
    )
    assert s.threshold == 0.0 and s.has_threshold and s.threshold_method == "f1"
    assert (s.image_size, s.batch_size, s.max_pixels, s.patch_size) == (96, 8, 1000, 64)
    assert s.faces is True and s.face_settings == faces and s.has_face_settings
    assert s.view == "patches" and s.views(2) == ["patches", "native"]


def test_face_settings_from_itself_its_dump_or_none():
    faces = FacesParams(margin=0.2)
    assert face_settings(None) == FacesParams()
    assert face_settings(faces) is faces
    assert face_settings(faces.model_dump()) == faces


def test_faces_are_allowed_unless_the_detector_scores_patches():
    assert DetectorSettings.from_metadata({}).faces_allowed  # logged before views: resize
    assert DetectorSettings.from_metadata({"view": "resize", "faces": True}).faces_allowed
    assert not DetectorSettings.from_metadata({"view": "patches", "patch_size": 32}).faces_allowed
