"""The face detector and crop (data/faces.py) on photos with zero, one and two faces.

The photos come from packages, not downloads: scikit-image's astronaut.png (a portrait) and
scikit-learn's china.jpg (no face), pasted onto larger canvases.
"""

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from sklearn.datasets import load_sample_image

from deepfake_detection.config import FacesParams
from deepfake_detection.data.faces import crop_box, crop_faces, detect_faces


def _portrait(size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(skdata.astronaut()).resize((size, size)))


def _canvas(*placements, shape=(700, 900)) -> np.ndarray:
    canvas = np.full((*shape, 3), 90, np.uint8)
    for top, left, size in placements:
        canvas[top : top + size, left : left + size] = _portrait(size)
    return canvas


def test_no_face_in_a_landscape_photo():
    assert detect_faces(load_sample_image("china.jpg")) == []


def test_too_small_an_image_has_no_face_and_no_error():
    assert detect_faces(np.zeros((5, 5, 3), np.uint8)) == []


def test_one_face_found_and_cropped_around_it():
    canvas = _canvas((100, 200, 300))
    (face, crop), *rest = crop_faces(canvas, 64)
    assert rest == []
    x, y, w, h = face.box
    assert 200 <= x and x + w <= 500 and 100 <= y and y + h <= 400  # inside the pasted portrait
    left, top, right, bottom = face.crop_box
    assert left <= x and top <= y and right >= x + w and bottom >= y + h  # the crop holds the face
    assert right - left == bottom - top  # square
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8


def test_two_faces_largest_first():
    faces = detect_faces(_canvas((20, 20, 400), (350, 550, 250)))
    assert len(faces) == 2
    assert faces[0].box[2] * faces[0].box[3] > faces[1].box[2] * faces[1].box[3]
    assert faces[0].box[0] < 420 and faces[1].box[0] >= 550


def test_min_confidence_filters_detections():
    canvas = _canvas((100, 200, 300))
    (face,) = detect_faces(canvas, FacesParams(min_confidence=0.5))
    assert face.confidence < 1.0
    assert detect_faces(canvas, FacesParams(min_confidence=float(np.nextafter(face.confidence, 1.0)))) == []


@pytest.mark.parametrize(
    ("box", "size", "margin", "expected"),
    [
        ((40, 40, 20, 20), (100, 100), 0.5, (30, 30, 70, 70)),  # grown by half the side on each side
        ((0, 0, 20, 20), (100, 100), 0.5, (0, 0, 40, 40)),  # moved inside at the corner
        ((90, 90, 10, 10), (100, 100), 0.0, (90, 90, 100, 100)),
        ((10, 10, 80, 80), (100, 60), 0.5, (0, 0, 100, 60)),  # larger than the image: clipped
    ],
)
def test_crop_box(box, size, margin, expected):
    assert crop_box(box, *size, margin) == expected


def test_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="margin"):
        FacesParams(margin=-1)
    with pytest.raises(ValueError, match="min_face_size"):
        FacesParams(min_face_size=4)


def test_rejects_non_rgb_arrays():
    with pytest.raises(ValueError, match="uint8 RGB"):
        detect_faces(np.zeros((64, 64), np.uint8))


def test_a_large_photo_is_searched_downscaled_and_boxes_map_back():
    big = np.full((3000, 2400, 3), 90, np.uint8)
    big[1000:1900, 1200:2100] = _portrait(900)
    (face,) = detect_faces(big)
    small = np.full((1000, 800, 3), 90, np.uint8)
    small[333:633, 400:700] = _portrait(300)
    (reference,) = detect_faces(small)
    # the same face, found at a third of the size: its box is about three times the reference's
    assert np.allclose(face.box, [3 * v for v in reference.box], atol=12)
    x, y, w, h = face.box
    assert 1200 <= x and x + w <= 2100 and 1000 <= y and y + h <= 1900
