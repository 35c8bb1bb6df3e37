"""The trivial baselines to beat on a project's valid and test splits: ROC AUC of the file size
alone, of mean intensity, and the 16x16-thumbnail control (a standardised logistic regression,
C = 0.1, fitted on the train split's 16x16 RGB thumbnails: it sees face layout and framing, none
of the manipulation's pixels; on CIPLAB it scores about 0.66, so a CIPLAB figure means something
only beside it). Usage: python benchmarks/file_size_baseline.py PROJECT_DIR

PROJECT_DIR holds artifacts/manifest.csv (e.g. the folder benchmarks/real_data.sh ran in), or
else its ingested data/{valid,test}/{real,fake} folders (an ablation.sh copy, whose stages ran in
DVC's temporary copies).
Both directions are tried (fakes may be smaller or larger files); the better AUC is printed, with
its 95% interval (the stratified bootstrap that the evaluate stage uses for the models)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import roc_auc_score

from deepfake_detection.evaluation.metrics import auc_interval


def main(project: Path) -> None:
    if (project / "artifacts" / "manifest.csv").is_file():
        manifest = pd.read_csv(project / "artifacts" / "manifest.csv", keep_default_na=False)
    else:
        manifest = pd.DataFrame(
            [
                {"path": str(f.relative_to(project)), "split": split, "label": label}
                for split in ("train", "valid", "test")
                for label in ("real", "fake")
                for f in sorted((project / "data" / split / label).glob("*"))
                if f.is_file()
            ]
        )
    thumbnail = thumbnail_control(project, manifest)
    for split in ("valid", "test"):
        rows = manifest[manifest.split == split]
        y = (rows.label == "fake").astype(int).to_numpy()
        files = [project / p for p in rows.path]
        size = np.array([f.stat().st_size for f in files], dtype=float)
        mean = np.array([np.asarray(Image.open(f).convert("L"), dtype=float).mean() for f in files])
        for name, score in (("file size", size), ("mean intensity", mean), ("16x16 thumbnail", None)):
            if score is None:
                score = thumbnail.decision_function(thumbnails(files))
            elif roc_auc_score(y, score) < 0.5:
                score = -score
            low, high = auc_interval(y, score)
            print(
                f"{split:5s} {name:15s} AUC {roc_auc_score(y, score):.3f} [{low:.3f}, {high:.3f}]"
                f"  (n={len(y)}, fake={int(y.sum())})"
            )


def thumbnails(files) -> np.ndarray:
    """Each image as its 16x16 RGB thumbnail (box filter), flattened: 768 numbers in [0, 1]."""
    return np.stack(
        [
            np.asarray(Image.open(f).convert("RGB").resize((16, 16), Image.Resampling.BOX), float).ravel() / 255
            for f in files
        ]
    )


def thumbnail_control(project: Path, manifest: pd.DataFrame):
    """The 16x16-thumbnail logistic regression, fitted on the train split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = manifest[manifest.split == "train"]
    X = thumbnails([project / p for p in rows.path])
    y = (rows.label == "fake").astype(int).to_numpy()
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(X, y)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
