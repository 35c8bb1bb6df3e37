"""What must stay light: `deepfake-detect --help` (and every command's) imports neither
TensorFlow nor MLflow; the stages that need no network (summary, ensemble, robustness-report,
register's bookkeeping) import no TensorFlow. Each check runs in a fresh interpreter, where
``sys.modules`` shows what an import really pulled in."""

from __future__ import annotations

import json
import subprocess
import sys

from project_commands import BIN, command_env

from deepfake_detection.cli import cli

HEAVY = ("tensorflow", "keras", "mlflow")


def _loaded(code: str) -> dict[str, bool]:
    """Which of HEAVY a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=command_env(), capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


NO_NETWORK = [
    "deepfake_detection.stages.summary",
    "deepfake_detection.stages.ensemble",
    "deepfake_detection.stages.robustness",  # robustness-report and robustness-ensemble run no model
    "deepfake_detection.stages.register",
    "deepfake_detection.stages.register_gate",
    "deepfake_detection.evaluation.selection",
]


def _first_to_import_tensorflow(modules: list[str]) -> str | None:
    """Import ``modules`` in turn in a fresh interpreter: the first after which TensorFlow (or
    Keras) is loaded, or None."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'tensorflow' in sys.modules or 'keras' in sys.modules:\n"
        "        print(name)\n"
        "        break\n"
        "else:\n"
        "    print('none')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=command_env(), capture_output=True, text=True, timeout=300, check=True
    )
    last = out.stdout.strip().splitlines()[-1]
    return None if last == "none" else last


def test_the_stage_modules_that_need_no_network_import_no_tensorflow():
    assert _first_to_import_tensorflow(NO_NETWORK) is None


def test_the_check_sees_a_module_that_imports_tensorflow():
    assert _first_to_import_tensorflow([*NO_NETWORK[:1], "deepfake_detection.models.losses"]) == (
        "deepfake_detection.models.losses"
    )


def test_the_cli_imports_neither_tensorflow_nor_mlflow():
    assert _loaded("import deepfake_detection.cli") == dict.fromkeys(HEAVY, False)


def test_every_help_runs_without_tensorflow_or_mlflow():
    code = (
        "import contextlib, io\n"
        "from deepfake_detection.cli import cli\n"
        f"for args in {[[], *([name] for name in cli.list_commands(None)), ['runs', 'clean']]!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            cli.main([*args, '--help'], prog_name='deepfake-detect')\n"
        "        except SystemExit as end:\n"
        "            assert end.code == 0, args\n"
    )
    assert _loaded(code) == dict.fromkeys(HEAVY, False)


def test_the_console_script_helps_without_tensorflow():
    """`deepfake-detect --help` itself, as installed: quick, and no TensorFlow start-up lines."""
    done = subprocess.run(
        [str(BIN / "deepfake-detect"), "--help"], env=command_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "Usage: deepfake-detect" in done.stdout
    assert "tensorflow" not in done.stderr.lower() and "absl" not in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "deepfake_detection", "--help"], env=command_env(), capture_output=True, text=True
    )
    assert done.returncode == 0 and "Usage: deepfake-detect" in done.stdout
