"""Data commands: `sample-data`, `ingest` and the `prepare` stage."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .group import run_stage
from .options import params_of, params_option


@click.command("sample-data")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--per-class",
    type=click.IntRange(min=10),
    default=None,
    help="Images per class [default: data.sample.images_per_class].",
)
@click.option(
    "--size", type=click.IntRange(32, 512), default=None, help="Image side in pixels [default: data.sample.size]."
)
@click.option("--seed", type=int, default=None, help="Random seed [default: seed].")
@params_option
def sample_data(out, per_class, size, seed, params_path):
    """Generate the synthetic real-vs-fake sample dataset into OUT (deterministic: same seed,
    same bytes)."""
    from ..data.sample import generate  # pandas, Pillow (seconds): not for --help

    p = params_of(params_path)
    s = p.data.sample
    try:
        split = p.data.split
        counts = generate(
            out,
            images_per_class=per_class or s.images_per_class,
            size=size or s.size,
            quality=s.quality,
            seed=p.seed if seed is None else seed,
            fractions=(1 - split.valid - split.test, split.valid, split.test),
        )
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(counts, indent=2))


def _shown(report: dict) -> dict:
    """What `ingest` prints of its report."""
    shown = {k: report[k] for k in ("seen", "written", "skipped", "counts", "written_by_method") if k in report}
    shown["skipped_by_reason"] = {r: n for r, n in report.get("skipped_by_reason", {}).items() if n}
    if "faces" in report:
        shown["faces"] = {k: report["faces"][k] for k in ("size", "settings", "found", "no_face", "several_faces")}
    return shown


@click.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--reencode",
    type=click.Choice(["jpeg", "png"]),
    default=None,
    help="Decode every image and write all in this one format.",
)
@click.option(
    "--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality when re-encoding."
)
@click.option(
    "--faces",
    is_flag=True,
    help="Write each image's largest face (MTCNN, data.faces settings) cropped to data.image_size as PNG; "
    "images without a face are skipped (no_face). Crop boxes go to DEST/faces.csv.",
)
@click.option(
    "--shards",
    type=click.IntRange(1, 99999),
    default=None,
    help="Write the images as N TFRecord shards per split (DEST/shards/<split>-NNNNN-of-NNNNN.tfrecord) "
    "instead of one file each: faster to copy, hash and push with many small images.",
)
@params_option
def ingest(src, dest, reencode, quality, faces, shards, params_path):
    """Bring a dataset at SRC into DEST as train|valid|test/{real,fake}.

    SRC may already be split (train|valid|validation|test / real|fake, any case) or be flat
    ({real,fake}, training_real/training_fake, ...), which is split stratified and seeded by
    data.split. Every file is decoded; what is skipped is listed, with the reason, in
    DEST/ingest_report.json. With --faces, DEST holds face crops and faces.csv (merged into
    the manifest by prepare).
    """
    from ..data.ingest import ingest as run_ingest  # pandas, Pillow (mtcnn with --faces): not for --help

    p = params_of(params_path)
    try:
        report = run_ingest(
            src,
            dest,
            valid_fraction=p.data.split.valid,
            test_fraction=p.data.split.test,
            seed=p.seed,
            reencode=reencode,
            quality=quality,
            shards=shards,
            faces=p.data.faces if faces else None,
            face_size=p.data.image_size if faces else None,
        )
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:  # a full disk, a read-only folder, a file too large for the file system
        where = f": {err.filename}" if err.filename else ""
        raise click.ClickException(
            f"ingest stopped, {dest} was not written: {err.strerror or type(err).__name__}{where}"
        ) from None
    click.echo(json.dumps(_shown(report), indent=2))
    for warning in report.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"report: {Path(dest) / 'ingest_report.json'}")


@click.command()
@params_option
def prepare(params_path):
    """Validate data/, write the manifest and dataset statistics (DVC metrics, MLflow run)."""
    from ..stages import prepare as stage  # MLflow: only when the stage runs

    stats = run_stage(stage.run, params_of(params_path))
    click.echo(json.dumps(stats["counts"], indent=2))


COMMANDS = (sample_data, ingest, prepare)
