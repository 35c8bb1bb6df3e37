"""The CLI's own behaviour: help texts, data commands, clear errors for bad input."""

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from deepfake_detection.cli import cli


def test_every_command_has_help():
    runner = CliRunner()
    for name in cli.list_commands(None):
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, name


def test_sample_data_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["sample-data", str(tmp_path / "out"), "--per-class", "10"])
    assert result.exit_code != 0 and "not empty" in result.output.lower()
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_ingest_prints_what_it_did_and_writes_the_report(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("Real", "Fake"):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
                tmp_path / "src" / label / f"{i}.png"
            )
    (tmp_path / "src" / "Fake" / "empty.jpg").write_bytes(b"")
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "src"), str(tmp_path / "dest")])
    assert result.exit_code == 0, result.output
    out = result.stdout
    shown = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert shown["seen"] == 21 and shown["written"] == 20 and shown["skipped_by_reason"] == {"zero_bytes": 1}
    report = json.loads((tmp_path / "dest" / "ingest_report.json").read_text())
    assert report["skipped_files"][0]["reason"] == "zero_bytes"


def test_predict_rejects_an_unknown_output_format(tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(img)
    result = CliRunner().invoke(
        cli, ["predict", "--model", "models:/x@champion", str(img), "--output", str(tmp_path / "o.txt")]
    )
    assert result.exit_code != 0 and ".csv or .json" in result.output


def test_a_stage_logs_its_lines_to_stdout_through_the_cli(monkeypatch):
    import logging
    from pathlib import Path

    from deepfake_detection.stages import prepare

    def fake_run(params, *args):
        log = logging.getLogger("deepfake_detection.stages.prepare")
        log.info("prepared %d images", 3)
        log.warning("2 images appear in more than one split")
        log.debug("not shown")
        return {"counts": {}}

    monkeypatch.setattr(prepare, "run", fake_run)
    params = Path(__file__).resolve().parents[2] / "params.yaml"
    for _ in range(2):  # one handler, however many commands run in the process
        result = CliRunner().invoke(cli, ["prepare", "--params", str(params)])
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[:2] == [
            "prepared 3 images",
            "warning: 2 images appear in more than one split",
        ]
        assert "not shown" not in result.output
