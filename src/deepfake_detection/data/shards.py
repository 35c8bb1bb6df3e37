"""A dataset as TFRecord shards instead of many small files (``ingest --shards N``).

Layout: ``<data dir>/shards/<split>-<i>-of-<n>.tfrecord`` (``train-00000-of-00004.tfrecord``),
``n`` shards per split (fewer when a split has fewer images). Each record is a
``tf.train.Example`` with three features:

* ``image``: the encoded image bytes, exactly what ``ingest`` would have written as a file;
* ``label``: the class id (0 = real, 1 = fake);
* ``name``: the image's path below the data folder as a file layout would have it
  (``train/real/0001.jpg``), unique within the dataset.

A split's images go to its shards round-robin in (label, name) order, so every shard holds both
classes. The manifest (``prepare``, :func:`~deepfake_detection.data.manifest.build_manifest`)
lists every record, shard by shard in record order, with the path ``<shard file>#<name>``
(:func:`ref`), so every stage still refers to one image per row; :func:`iter_contents` reads the
bytes behind such paths (and plain files), the input pipeline (``pipeline.make_dataset``) reads
the shards directly. This module imports nothing else of ``data/``.

Few large files instead of tens of thousands of small ones: faster to list, copy, hash and move
(``dvc push``/``pull``: benchmarks/README.md, *Large datasets*), and sequential reads.
"""

from __future__ import annotations

import re
import shutil
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import LABELS, SPLITS

SHARD_DIR = "shards"
SUFFIX = ".tfrecord"
SEPARATOR = "#"  # manifest path of a record: <shard file>#<name>
_REF = re.compile(r"^(?P<shard>.+?\.tfrecord)#(?P<name>.+)$")
_SHARD_NAME = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord$")
MAX_SHARDS = 99999


def shard_name(split: str, index: int, count: int) -> str:
    """``train-00000-of-00004.tfrecord``."""
    return f"{split}-{index:05d}-of-{count:05d}{SUFFIX}"


def ref(shard: Path | str, name: str) -> str:
    """The manifest path of record ``name`` in ``shard``:
    ``data/shards/train-00000-of-00004.tfrecord#train/real/a.jpg``."""
    return f"{Path(shard).as_posix()}{SEPARATOR}{name}"


def split_ref(path: str | Path) -> tuple[str, str] | None:
    """``(shard file, name)`` of a manifest path that names a record in a shard, else None."""
    m = _REF.match(str(path))
    return (m["shard"], m["name"]) if m else None


def has_shards(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds a ``shards/`` folder (a dataset written by ``ingest --shards``)."""
    return (Path(data_dir) / SHARD_DIR).is_dir()


def shard_files(data_dir: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """The shard files of each split, in order, and problems with them (stray files, a count
    that does not match the names' ``-of-N``, a split without shards)."""
    folder = Path(data_dir) / SHARD_DIR
    found: dict[str, list[Path]] = {split: [] for split in SPLITS}
    problems: list[str] = []
    for entry in sorted(folder.iterdir()):
        m = _SHARD_NAME.match(entry.name)
        if entry.name.startswith("."):
            continue
        if not m or m["split"] not in found or not entry.is_file():
            problems.append(f"unexpected entry {entry} (expected <split>-NNNNN-of-NNNNN{SUFFIX})")
            continue
        found[m["split"]].append(entry)
    for split, files in found.items():
        if not files:
            problems.append(f"no shard for the split {split!r} in {folder}")
            continue
        counts = {int(_SHARD_NAME.match(f.name)["count"]) for f in files}
        if counts != {len(files)}:
            problems.append(f"{split}: {len(files)} shard file(s) in {folder} but their names say {sorted(counts)}")
    for split in SPLITS:
        if (Path(data_dir) / split).exists():
            problems.append(f"{Path(data_dir) / split} beside {folder}: a dataset is either files or shards")
    return found, problems


# ---------------------------------------------------------------- writing


def _example(contents: bytes, label: int, name: str) -> bytes:
    import tensorflow as tf  # TensorFlow: only when shards are written (prepare and serving import this module)

    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[contents])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode("utf-8")])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def pack(data_dir: Path, count: int, progress: bool = True) -> dict:
    """Move the images of ``data_dir/<split>/<label>/`` into ``count`` shards per split under
    ``data_dir/shards/`` (fewer for a split with fewer images), then remove the split folders.
    Returns ``{"count", "dir", "files": {split: [shard names]}, "records": {split: n}}``."""
    import tensorflow as tf  # TensorFlow: only when shards are written

    if isinstance(count, bool) or not 1 <= int(count) <= MAX_SHARDS:
        raise ValueError(f"shards must be an integer in 1..{MAX_SHARDS}, not {count!r}")
    data_dir = Path(data_dir)
    out_dir = data_dir / SHARD_DIR
    out_dir.mkdir()
    info = {"count": int(count), "dir": SHARD_DIR, "files": {}, "records": {}}
    for split in SPLITS:
        files = [
            (p, label)
            for label in LABELS
            for p in sorted((data_dir / split / label).rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        ]
        n = min(int(count), len(files))
        names = [shard_name(split, i, n) for i in range(n)]
        writers = [tf.io.TFRecordWriter(str(out_dir / name)) for name in names]
        try:
            for i, (path, label) in enumerate(tqdm(files, desc=f"shards {split}", unit="img", disable=not progress)):
                name = path.relative_to(data_dir).as_posix()
                writers[i % n].write(_example(path.read_bytes(), LABELS.index(label), name))
        finally:
            for w in writers:
                w.close()
        info["files"][split], info["records"][split] = names, len(files)
        shutil.rmtree(data_dir / split, ignore_errors=True)
    return info


# ---------------------------------------------------------------- reading


def _records(shard: Path | str) -> Iterator[bytes]:
    """The serialized records of one TFRecord file (uncompressed), read sequentially."""
    with open(shard, "rb") as f:
        while header := f.read(12):
            if len(header) < 12:
                raise ValueError(f"{shard}: truncated record header")
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                raise ValueError(f"{shard}: truncated record")
            yield data


def iter_records(shard: Path | str) -> Iterator[tuple[str, int, bytes]]:
    """``(name, label id, encoded image)`` of every record of ``shard``, in order."""
    import tensorflow as tf  # TensorFlow: only when a shard is read

    for raw in _records(shard):
        feature = tf.train.Example.FromString(raw).features.feature
        yield (
            feature["name"].bytes_list.value[0].decode("utf-8"),
            int(feature["label"].int64_list.value[0]),
            feature["image"].bytes_list.value[0],
        )


def iter_contents(paths: Iterable[str | Path]) -> Iterator[bytes]:
    """The encoded bytes of each path, in order: a plain file is read, a record (``<shard>#<name>``)
    is read from its shard. Consecutive records of one shard are found in one pass over it
    (streamed when they come in the shard's order, as in the manifest)."""
    pending: list[str] = []
    shard = None

    def flush() -> Iterator[bytes]:
        wanted, held, i = set(pending), {}, 0
        for name, _, contents in iter_records(shard):
            while i < len(pending) and pending[i] in held:
                yield held.pop(pending[i])
                i += 1
            if i < len(pending) and name == pending[i]:
                yield contents
                i += 1
            elif name in wanted:
                held[name] = contents
            if i == len(pending):
                return
        while i < len(pending) and pending[i] in held:
            yield held.pop(pending[i])
            i += 1
        if i < len(pending):
            raise FileNotFoundError(f"no record {pending[i]!r} in {shard}: re-run prepare")

    for path in paths:
        parts = split_ref(path)
        if parts is not None and parts[0] == shard:
            pending.append(parts[1])
            continue
        if pending:
            yield from flush()
        shard, pending = (parts[0], [parts[1]]) if parts else (None, [])
        if parts is None:
            yield Path(path).read_bytes()
    if pending:
        yield from flush()


# ---------------------------------------------------------------- tf.data

SHUFFLE_BUFFER = 2048  # records (encoded bytes) held for shuffling a sharded split
CYCLE_LENGTH = 8  # shards read at once when shuffling


def records_dataset(paths: list[str], labels, *, shuffle: bool, seed: int):
    """``(encoded image, label)`` of the records named by ``paths`` (``<shard>#<name>``), with
    ``labels`` (the manifest's, float32) in the same order.

    Without ``shuffle``: the shards one after another, in the order the paths first name them,
    and the records must come in the order of ``paths`` (the manifest's, as ``prepare`` writes
    it); a record the paths do not name is skipped, one out of order is an error, and so is a
    named record that the shards do not hold (the count is checked). With
    ``shuffle``: the shard order reshuffled every pass, :data:`CYCLE_LENGTH` shards interleaved,
    and a shuffle buffer of :data:`SHUFFLE_BUFFER` records (seeded)."""
    import tensorflow as tf  # TensorFlow: only for the input pipeline

    shards, names = _named_records(paths)
    index = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(names), tf.range(len(names), dtype=tf.int64), key_dtype=tf.string, value_dtype=tf.int64
        ),
        default_value=-1,
    )
    label_of = tf.constant(np.asarray(labels, dtype=np.float32))
    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "name": tf.io.FixedLenFeature([], tf.string),
    }

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        return example["image"], index.lookup(example["name"])

    records = _shard_records(shards, shuffle=shuffle, seed=seed)
    ds = records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).filter(lambda c, i: i >= 0)
    if shuffle:
        ds = ds.shuffle(min(SHUFFLE_BUFFER, len(names)), seed=seed, reshuffle_each_iteration=True)
    else:
        ds = ds.scan(tf.constant(-1, tf.int64), _in_order)
    # every named record exactly once (an error otherwise); Keras then knows the steps per epoch
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(names)))
    return ds.map(lambda contents, i: (contents, tf.gather(label_of, i)))


def _named_records(paths: list[str]) -> tuple[list[str], list[str]]:
    """The shard files ``paths`` name (in the order first named) and the records' names;
    ValueError/FileNotFoundError naming what to re-run otherwise."""
    parts = [split_ref(p) for p in paths]
    if any(p is None for p in parts):
        raise ValueError("a split mixes image files and shard records: re-run prepare")
    shards = list(dict.fromkeys(shard for shard, _ in parts))
    missing = [s for s in shards if not Path(s).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard file(s) not found ({', '.join(missing[:3])}): re-run prepare")
    names = [name for _, name in parts]
    if len(set(names)) != len(names):
        raise ValueError("the manifest names a record twice: re-run prepare")
    return shards, names


def _shard_records(shards: list[str], *, shuffle: bool, seed: int):
    """The serialized records of ``shards``: one shard after another, or (``shuffle``) the shard
    order reshuffled every pass and :data:`CYCLE_LENGTH` of them interleaved."""
    import tensorflow as tf  # TensorFlow: only for the input pipeline

    files = tf.data.Dataset.from_tensor_slices(shards)
    if not shuffle:
        return tf.data.TFRecordDataset(files)
    files = files.shuffle(len(shards), seed=seed, reshuffle_each_iteration=True)
    return files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(CYCLE_LENGTH, len(shards)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _in_order(previous, element):
    """A ``scan`` step: the element, after asserting its index follows ``previous``."""
    import tensorflow as tf  # TensorFlow: only for the input pipeline

    contents, i = element
    check = tf.debugging.assert_equal(
        i,
        previous + 1,
        message="the manifest's rows are not in the order of the shards' records: re-run prepare",
    )
    with tf.control_dependencies([check]):
        return i, (tf.identity(contents), i)
