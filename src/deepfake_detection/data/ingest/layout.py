"""Which source layout ``ingest`` reads (split, flat, or the split in the folder names) and the
files below its class folders: see the package docstring for the accepted layouts."""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_detection import LABELS, SPLITS
from deepfake_detection.data.faces import Face
from deepfake_detection.data.images import ImageInfo

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "validation": "valid",
    "val": "valid",
    "test": "test",
    "testing": "test",
}
CLASS_TOKENS = {"real": "real", "reals": "real", "fake": "fake", "fakes": "fake"}

_MAX_WRAPPERS = 3

_ACCEPTED = (
    "accepted layouts (folder names in any case):\n"
    "  split: SRC/{train,valid|validation|val,test}/{real,fake}/<images>\n"
    "  flat:  SRC/{real,fake}/<images> (split here, seeded and stratified); class folders may\n"
    "         carry other words, e.g. training_real/training_fake or Real_images/Fake_images"
)


@dataclass
class Folder:
    path: Path
    split: str | None  # None in the flat layout
    label: str


@dataclass
class Layout:
    kind: str  # "split" | "flat"
    root: Path
    folders: list[Folder]
    warnings: list[str] = field(default_factory=list)
    ignored: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Item:
    """One file below a class folder, and what ingest found out about it."""

    source: Path
    folder: Folder
    sub: tuple[str, ...]  # sub-folders between the class folder and the file
    info: ImageInfo | None = None
    md5: str | None = None
    split: str | None = None
    face: Face | None = None  # faces mode: the largest face, in the upright image's pixels
    faces_found: int = 0
    upright_size: tuple[int, int] | None = None  # faces mode: (width, height) after EXIF rotation


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t]


def _class_of(name: str) -> str | None:
    found = {CLASS_TOKENS[t] for t in _tokens(name) if t in CLASS_TOKENS}
    return found.pop() if len(found) == 1 else None


def _split_of_tokens(name: str) -> str | None:
    found = {SPLIT_ALIASES[t] for t in _tokens(name) if t in SPLIT_ALIASES}
    return found.pop() if len(found) == 1 else None


def rel(path: Path, root: Path) -> str:
    """``path`` below ``root`` (posix), or ``path`` itself when it is not below it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _subdirs(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if p.is_dir()), key=lambda p: p.name)


def _describe(path: Path) -> str:
    entries = sorted(path.iterdir(), key=lambda p: p.name)
    dirs = [p.name + "/" for p in entries if p.is_dir()]
    files = [p for p in entries if not p.is_dir()]
    shown = ", ".join(dirs[:12]) + (", ..." if len(dirs) > 12 else "")
    return f"{path} holds folders [{shown}] and {len(files)} file(s)"


def _duplicate_error(kind: str, key: str, dirs: list[Path]) -> ValueError:
    names = ", ".join(repr(d.name) for d in dirs)
    return ValueError(f"several folders map to {kind} {key!r}: {names}; keep one (or merge them) and retry")


def _class_folders(split_dir: Path, split: str, src: Path, layout: Layout) -> None:
    by_label: dict[str, list[Path]] = defaultdict(list)
    for entry in sorted(split_dir.iterdir(), key=lambda p: p.name):
        label = _class_of(entry.name) if entry.is_dir() else None
        if label is None:
            layout.ignored.append({"path": rel(entry, src), "why": "not a class folder"})
        else:
            by_label[label].append(entry)
    for label in LABELS:
        dirs = by_label.get(label, [])
        if len(dirs) > 1:
            raise _duplicate_error("class", f"{split_dir.name}/{label}", dirs)
        if not dirs:
            layout.warnings.append(f"no {label!r} folder in {rel(split_dir, src)!r}: {split}/{label} stays empty")
        else:
            layout.folders.append(Folder(dirs[0], split, label))


def _is_split_dir(d: Path) -> bool:
    return d.name.lower() in SPLIT_ALIASES


def _is_class_dir(d: Path) -> bool:
    return not _is_split_dir(d) and _class_of(d.name) is not None


def _descend(src: Path) -> tuple[Path, list[Path], list[Path], list[str], list[dict]]:
    """The folder that holds the layout, found through a chain of up to :data:`_MAX_WRAPPERS`
    single wrapper folders; its sub-folders and files, the notes and the entries ignored so far."""
    root, notes, ignored = src, [], []
    for depth in range(_MAX_WRAPPERS + 1):
        dirs = _subdirs(root)
        files = sorted((p for p in root.iterdir() if not p.is_dir()), key=lambda p: p.name)
        if any(_is_split_dir(d) or _is_class_dir(d) for d in dirs) or depth == _MAX_WRAPPERS:
            break
        if len(dirs) != 1 or any(not f.name.startswith(".") for f in files):
            break
        ignored += [{"path": rel(f, src), "why": "file outside the class folders"} for f in files]
        notes.append(f"descended into the single folder {rel(dirs[0], src)!r}")
        root = dirs[0]
    return root, dirs, files, notes, ignored


def detect(src: Path) -> Layout:
    """The layout of ``src``; ValueError for an unrecognised or ambiguous one."""
    root, dirs, files, notes, ignored = _descend(src)
    split_dirs = [d for d in dirs if _is_split_dir(d)]
    class_dirs = [d for d in dirs if _is_class_dir(d)]
    if split_dirs and class_dirs:
        raise ValueError(
            f"ambiguous dataset layout: {root} holds both split folders "
            f"{[d.name for d in split_dirs]} and class folders {[d.name for d in class_dirs]}\n{_ACCEPTED}"
        )
    if not split_dirs and not class_dirs:
        raise ValueError(f"unrecognised dataset layout: {_describe(root)}\n{_ACCEPTED}")
    ignored += [{"path": rel(f, src), "why": "file outside the class folders"} for f in files]
    if split_dirs:
        ignored += [{"path": rel(d, src), "why": "not a split folder"} for d in dirs if d not in split_dirs]
        return _split_layout(src, root, split_dirs, notes, ignored)
    ignored += [{"path": rel(d, src), "why": "not a class folder"} for d in dirs if d not in class_dirs]
    pairs = [(_split_of_tokens(d.name), _class_of(d.name)) for d in class_dirs]
    named_splits = {split for split, _ in pairs}
    if None not in named_splits and len(named_splits) > 1 and len(set(pairs)) == len(pairs):
        return _named_split_layout(root, class_dirs, pairs, notes, ignored)
    return _flat_layout(root, class_dirs, pairs, notes, ignored)


def _split_layout(src: Path, root: Path, split_dirs: list[Path], notes: list[str], ignored: list[dict]) -> Layout:
    """``src/<split>/<class>/``."""
    layout = Layout("split", root, [], notes=notes, ignored=ignored)
    by_split: dict[str, list[Path]] = defaultdict(list)
    for d in split_dirs:
        by_split[SPLIT_ALIASES[d.name.lower()]].append(d)
    for split in SPLITS:
        found = by_split.get(split, [])
        if len(found) > 1:
            raise _duplicate_error("split", split, found)
        if not found:
            layout.warnings.append(f"no {split!r} split folder in the source: {split}/ stays empty")
        else:
            _class_folders(found[0], split, src, layout)
    if not layout.folders:
        raise ValueError(f"split folders found in {root} but no class folder inside them\n{_ACCEPTED}")
    return layout


def _named_split_layout(
    root: Path, class_dirs: list[Path], pairs: list[tuple[str, str]], notes: list[str], ignored: list[dict]
) -> Layout:
    """``src/<split>_<class>/``: each class folder names a split, and not all the same one."""
    layout = Layout("split", root, [], notes=[*notes, "split and class read from the folder names"], ignored=ignored)
    order = sorted(zip(pairs, class_dirs), key=lambda x: (SPLITS.index(x[0][0]), LABELS.index(x[0][1])))
    for (split, label), d in order:
        layout.folders.append(Folder(d, split, label))
    for split in SPLITS:
        for label in LABELS:
            if (split, label) not in pairs:
                layout.warnings.append(f"no folder for {split}/{label} in the source: it stays empty")
    return layout


def _flat_layout(
    root: Path, class_dirs: list[Path], pairs: list[tuple[str | None, str]], notes: list[str], ignored: list[dict]
) -> Layout:
    """``src/<class>/``: split here."""
    layout = Layout("flat", root, [], notes=notes, ignored=ignored)
    by_label: dict[str, list[Path]] = defaultdict(list)
    for d, (_, label) in zip(class_dirs, pairs):
        by_label[label].append(d)
    for label in LABELS:
        found = by_label.get(label, [])
        if len(found) > 1:
            raise _duplicate_error("class", label, found)
        if not found:
            layout.warnings.append(f"no {label!r} class folder in {root}: there will be no {label} images")
        else:
            layout.folders.append(Folder(found[0], None, label))
    return layout


def _walk(folder: Folder) -> list[Item]:
    """Every file below ``folder`` (following directory links once), in a fixed order."""
    items: list[Item] = []
    visited: set[str] = set()
    for current, dirnames, filenames in os.walk(folder.path, followlinks=True):
        real = os.path.realpath(current)
        if real in visited:
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames.sort()
        sub = Path(current).relative_to(folder.path).parts
        for name in sorted(filenames):
            items.append(Item(Path(current) / name, folder, tuple(sub)))
    return items


def scan(src: Path) -> tuple[Layout, list[Item], list[str]]:
    """The layout, every file below its class folders, and the layout's warnings (an empty
    class folder included)."""
    layout = detect(src)
    warnings = list(layout.warnings)
    items = [item for folder in layout.folders for item in _walk(folder)]
    found = Counter(id(i.folder) for i in items)
    for folder in layout.folders:
        if not found[id(folder)]:
            warnings.append(f"class folder {rel(folder.path, src)!r} is empty")
    return layout, items, warnings
