"""Images per second of the tf.data pipeline beside the original project's Keras loader.

    python benchmarks/input_pipeline.py [--data data] [--size 64] [--batch-size 32] [--epochs 1] [--rounds 3]

Same folder (``DIR/<split>/{real,fake}/*``), same image size, same batch size, the same
number of full epochs for every loader. The original project fed Keras with
``tf_keras``'s ``ImageDataGenerator(rescale=1/255, ...).flow_from_directory(...)``; tf_keras is
not a dependency of this project. Install it beside tensorflow-cpu without its ``tensorflow``
requirement (which would pull in the GPU ``tensorflow`` package over ``tensorflow-cpu``):

    pip install --no-deps tf_keras==2.21.0

Without it the baseline is ``keras.utils.image_dataset_from_directory`` with its defaults.
The output says which loader ran.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from deepfake_detection import LABELS, SPLITS  # noqa: E402
from deepfake_detection.config import AugmentParams  # noqa: E402
from deepfake_detection.data.pipeline import make_dataset  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def list_manifest(data: Path) -> pd.DataFrame:
    """Manifest rows (path/label/split; md5, width, height, subgroup left empty) of a
    ``split/{real,fake}`` folder."""
    rows = [
        {"path": f.as_posix(), "label": label, "split": split}
        for split in SPLITS
        for label in LABELS
        if (data / split / label).is_dir()
        for f in sorted((data / split / label).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not rows:
        raise SystemExit(f"no images under {data}/<{'|'.join(SPLITS)}>/<{'|'.join(LABELS)}>/: pass --data")
    manifest = pd.DataFrame(rows)
    for column in ("md5", "width", "height", "subgroup"):
        manifest[column] = ""
    return manifest


def time_epochs(batches_of_epoch, epochs: int) -> tuple[int, float]:
    """(images, seconds) over ``epochs`` full passes, after one untimed warm-up batch."""
    for _ in batches_of_epoch():
        break
    images, start = 0, time.perf_counter()
    for _ in range(epochs):
        for x in batches_of_epoch():
            images += int(x.shape[0])
    return images, time.perf_counter() - start


def tf_data_loader(manifest, split, size, batch_size, augment):
    ds = make_dataset(manifest, split, size, batch_size, augment=augment, shuffle=True)
    return lambda: (x for x, _ in ds)


def legacy_loaders(folder: Path, size: int, batch_size: int):
    """[(name, batches_of_epoch)] of the original project's loader, or of the fallback."""
    try:
        import tf_keras
        from tf_keras.preprocessing.image import ImageDataGenerator
    except ImportError as err:
        ds = tf.keras.utils.image_dataset_from_directory(
            folder, image_size=(size, size), batch_size=batch_size, class_names=list(LABELS), verbose=False
        )
        note = f"tf_keras not importable ({err.name or err}): pip install --no-deps tf_keras==2.21.0"
        return note, [("keras.utils.image_dataset_from_directory (defaults)", lambda: (x for x, _ in ds))]

    def flow(**augmentation):
        generator = ImageDataGenerator(rescale=1 / 255, **augmentation)
        with contextlib.redirect_stdout(io.StringIO()):  # "Found N images belonging to 2 classes."
            it = generator.flow_from_directory(
                folder,
                target_size=(size, size),
                batch_size=batch_size,
                classes=list(LABELS),
                class_mode="binary",
                seed=42,
            )

        def batches():
            for i in range(len(it)):
                yield it[i][0]

        return batches

    params = AugmentParams()
    augmented = flow(
        horizontal_flip=params.flip,
        rotation_range=params.rotation * 360,
        zoom_range=params.zoom,
        brightness_range=(1 - params.brightness, 1 + params.brightness),
    )
    note = f"tf_keras {tf_keras.__version__} ImageDataGenerator.flow_from_directory"
    return note, [
        ("tf_keras ImageDataGenerator (rescale only)", flow()),
        ("tf_keras ImageDataGenerator (flip/rotate/zoom/brightness)", augmented),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="train|valid|test/{real,fake} folder")
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (square)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1, help="full passes timed per loader per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all loaders; the best round is kept")
    args = parser.parse_args(argv)

    manifest = list_manifest(args.data)
    rows = manifest[manifest.split == args.split]
    if rows.empty:
        raise SystemExit(f"no images in {args.data / args.split}: pass --split or --data")
    for path in rows.path:  # every loader then reads from the OS cache
        Path(path).read_bytes()

    note, legacy = legacy_loaders(args.data / args.split, args.size, args.batch_size)
    loaders = [
        ("make_dataset (no augmentation)", tf_data_loader(manifest, args.split, args.size, args.batch_size, None)),
        (
            "make_dataset (augment=params defaults)",
            tf_data_loader(manifest, args.split, args.size, args.batch_size, AugmentParams()),
        ),
        *legacy,
    ]

    print(
        f"{len(rows)} images in {args.data / args.split}, {args.size}x{args.size} px, batch {args.batch_size}, "
        f"{args.epochs} epoch(s) per loader per round, best of {args.rounds} interleaved rounds; "
        f"{os.cpu_count()} CPUs, TF {tf.__version__}, Python {platform.python_version()}"
    )
    print(f"baseline loader: {note}")
    # Rounds interleave the loaders, so a burst of load from elsewhere hits all of them alike;
    # the fastest round of each is the least disturbed one.
    seconds: dict[str, list[float]] = {name: [] for name, _ in loaders}
    images: dict[str, int] = {}
    for _ in range(max(1, args.rounds)):
        for name, batches in loaders:
            images[name], took = time_epochs(batches, args.epochs)
            seconds[name].append(took)
    width = max(len(name) for name, _ in loaders)
    print(f"{'loader':<{width}}  {'images':>7}  {'best s':>7}  {'images/s':>9}  {'median images/s':>15}")
    for name, _ in loaders:
        best, median = min(seconds[name]), statistics.median(seconds[name])
        n = images[name]
        print(f"{name:<{width}}  {n:>7}  {best:>7.2f}  {n / best:>9.1f}  {n / median:>15.1f}")


if __name__ == "__main__":
    main()
