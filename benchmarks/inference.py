"""Images per second of the ways to run a detector, in one run on one folder of images.

    python benchmarks/inference.py --data DIR [--model MODEL.keras | --arch light_se_cnn --size 64]
                                   [--batch-size 64] [--limit 200] [--faces N]

Rows:

* ``keras predict, preloaded``: ``model.predict`` on pixels already decoded in memory - the
  ceiling for Keras on this machine;
* ``decode only``: reading + decoding + resizing the files as the detector does
  (``data.decode.decode_images``, the training pipeline's ``decode_resize``), and the tf.data
  pipeline's ``image_dataset_from_paths`` (parallel) for comparison;
* ``pyfunc, files``: ``predict_files`` on the MLflow pyfunc detector (logged to a throwaway
  SQLite store), decoding included - what the CLI and the REST server do;
* ``onnxruntime, preloaded`` / ``onnxruntime, files``: the ONNX export, on preloaded pixels and
  through ``predict_files(runtime="onnx")``.

With ``--faces N`` (``--data`` may then be left out), a second table: the face path on N
photos of 256 px and N of 1024 px, each scikit-image's astronaut pasted at a random place and
scale onto a canvas (one face each), JPEG:

* ``faces off``: the pyfunc detector as today (decode, resize the whole photo, classify);
* ``face detection alone``: MTCNN (``data.faces.detect_faces``) on the decoded photos;
* ``faces on``: the pyfunc detector with the ``faces`` param (decode, detect, crop each face at
  the model's size, classify) - what ``predict --faces`` and a ``faces`` request do.

Each timed step runs after a warm-up on one batch (tracing and session start-up excluded), best
of ``--repeat`` runs (default 3; the machine may be shared).
The model is random unless ``--model`` is given: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402

REPEAT = 3


def _timed(fn) -> float:
    """The best of ``REPEAT`` runs (the machine is shared: the minimum is the least disturbed)."""
    best = math.inf
    for _ in range(REPEAT):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="folder of images (searched recursively)")
    parser.add_argument("--model", type=Path, help="a .keras model (default: build --arch at --size)")
    parser.add_argument("--arch", default="light_se_cnn")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=0, help="use the first N images only (0: all)")
    parser.add_argument("--repeat", type=int, default=3, help="time each row this many times, report the best")
    parser.add_argument("--faces", type=int, default=0, help="also time the face path on N photos per size (0: no)")
    args = parser.parse_args()
    if args.data is None and not args.faces:
        parser.error("give --data DIR, --faces N, or both")
    global REPEAT
    REPEAT = max(1, args.repeat)

    import keras
    import mlflow
    import onnxruntime as ort
    import tensorflow as tf

    from deepfake_detection.config import ModelsParams
    from deepfake_detection.data.pipeline import image_dataset_from_paths
    from deepfake_detection.serving import export, predict, pyfunc

    bs = args.batch_size
    work = Path(tempfile.mkdtemp(prefix="bench-inference-"))

    if args.model:
        model = keras.models.load_model(args.model, compile=False)
        keras_path = args.model
        arch = model.name
    else:
        from deepfake_detection.models.zoo import build_model

        model = build_model(args.arch, args.size, ModelsParams(), seed=0)
        keras_path = work / f"{args.arch}.keras"
        model.save(keras_path)
        arch = args.arch
    size = model.input_shape[1]
    print(
        f"model {arch} at {size} px ({model.count_params():,} params), "
        f"batch {bs}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"TF {tf.__version__}, onnxruntime {ort.__version__}"
    )
    uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("bench", (work / "mlartifacts").as_uri()))
    with mlflow.start_run():
        info = pyfunc.log_detector([keras_path], 0.5, size)
    if args.faces:
        face_table(info.model_uri, args.faces, work, bs)
    if args.data is None:
        return
    files = predict.expand_inputs([args.data])
    if args.limit:
        files = files[: args.limit]
    n = len(files)
    print(f"{n} images from {args.data}")

    rows: list[tuple[str, float]] = []

    # decoding alone
    from deepfake_detection.data.decode import decode_images

    contents = [f.read_bytes() for f in files]
    decode_images(contents[:bs], size)  # trace
    rows.append(
        ("decode only (detector: decode_images)", _timed(lambda: decode_images([f.read_bytes() for f in files], size)))
    )
    ds = image_dataset_from_paths([str(f) for f in files], size, bs)
    rows.append(
        ("decode only (tf.data image_dataset_from_paths)", _timed(lambda: np.concatenate([b.numpy() for b in ds])))
    )
    pixels = np.concatenate([b.numpy() for b in ds])

    # Keras on preloaded pixels: the ceiling
    model.predict(pixels[:bs], batch_size=bs, verbose=0)
    rows.append(("keras model.predict, preloaded", _timed(lambda: model.predict(pixels, batch_size=bs, verbose=0))))

    # the pyfunc detector on files
    predict.predict_files(info.model_uri, files[:bs], batch_size=bs, progress=False)  # warm-up (loads too)
    pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    import pandas as pd

    from deepfake_detection.serving.io import local_files

    frame = pd.DataFrame({"path": [str(f) for f in files]})
    with local_files():  # path rows are read only in process, when asked for
        pyfunc.predict(frame.iloc[:bs])
        out = pyfunc.predict(frame)
        assert out["error"].isna().all(), out["error"].dropna().iloc[0]
        rows.append(("pyfunc predict, files (loaded model)", _timed(lambda: pyfunc.predict(frame))))
    rows.append(
        (
            "pyfunc predict_files, files (incl. model load)",
            _timed(lambda: predict.predict_files(info.model_uri, files, batch_size=bs, progress=False)),
        )
    )

    # ONNX
    onnx_path = export.export_model(str(keras_path), "onnx", work / "model.onnx", threshold=0.5)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run_onnx():
        for i in range(0, n, bs):
            session.run(None, {name: pixels[i : i + bs]})

    session.run(None, {name: pixels[:bs]})
    rows.append(("onnxruntime, preloaded", _timed(run_onnx)))
    predict.predict_files(str(onnx_path), files[:bs], runtime="onnx", batch_size=bs, progress=False)
    rows.append(
        (
            "onnxruntime predict_files, files",
            _timed(lambda: predict.predict_files(str(onnx_path), files, runtime="onnx", batch_size=bs, progress=False)),
        )
    )

    # agreement check
    keras_p = model.predict(pixels, batch_size=bs, verbose=0).ravel()
    onnx_p = np.concatenate([session.run(None, {name: pixels[i : i + bs]})[0].ravel() for i in range(0, n, bs)])
    print(f"max |keras - onnx| on these images: {np.abs(keras_p - onnx_p).max():.2e}")

    print()
    print("| path | images | seconds | images/s |")
    print("|---|---:|---:|---:|")
    for label, seconds in rows:
        print(f"| {label} | {n} | {seconds:.2f} | {n / seconds:.0f} |")


def astronaut_photos(folder: Path, n: int, side: int, seed: int = 0) -> list[Path]:
    """``n`` JPEG photos of ``side`` px: the astronaut (a face) pasted at a random place and
    scale (40 to 70 % of the side) onto a gradient canvas."""
    from PIL import Image
    from skimage import data as skdata

    rng = np.random.default_rng(seed)
    portrait = Image.fromarray(skdata.astronaut())
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        canvas = np.full((side, side, 3), 90, np.uint8)
        canvas[:, :, 2] = np.linspace(60, 200, side).astype(np.uint8)
        size = int(side * rng.uniform(0.4, 0.7))
        top, left = rng.integers(0, side - size + 1, 2)
        canvas[top : top + size, left : left + size] = np.asarray(portrait.resize((size, size)))
        files.append(folder / f"photo_{side}_{i}.jpg")
        Image.fromarray(canvas).save(files[-1], quality=90)
    return files


def face_table(model_uri: str, n: int, work: Path, bs: int) -> None:
    """Images/s of the face path beside today's whole-image path, on 256 and 1024 px photos."""
    import mlflow
    import pandas as pd

    from deepfake_detection.data.faces import detect_faces
    from deepfake_detection.data.images import load_rgb
    from deepfake_detection.serving.io import local_files

    model = mlflow.pyfunc.load_model(model_uri)
    rows = []
    for side in (256, 1024):
        files = astronaut_photos(work / "faces", n, side)
        frame = pd.DataFrame({"path": [str(f) for f in files]})
        with local_files():
            model.predict(frame.iloc[:2], params={"faces": True})  # warm-up: traces, loads MTCNN
            model.predict(frame.iloc[:2])
            found = model.predict(frame, params={"faces": True})
            rows.append(
                (
                    side,
                    "pyfunc, faces off (decode, resize whole photo, classify)",
                    _timed(lambda frame=frame: model.predict(frame)),
                )
            )
            rgbs = [load_rgb(f) for f in files]
            rows.append(
                (
                    side,
                    "face detection alone (MTCNN on decoded photos)",
                    _timed(lambda rgbs=rgbs: [detect_faces(x) for x in rgbs]),
                )
            )
            rows.append(
                (
                    side,
                    "pyfunc, faces on (decode, detect, crop, classify)",
                    _timed(lambda frame=frame: model.predict(frame, params={"faces": True, "batch_size": bs})),
                )
            )
        print(f"{side} px: {int(found['face'].notna().sum())} faces found in {n} photos")
    print()
    print("| photo | path | images | seconds | images/s |")
    print("|---|---|---:|---:|---:|")
    for side, label, seconds in rows:
        print(f"| {side} px | {label} | {n} | {seconds:.2f} | {n / seconds:.1f} |")
    print()


if __name__ == "__main__":
    main()
