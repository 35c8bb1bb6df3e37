"""evaluation/ is numbers and figures only: importing it pulls in neither TensorFlow nor MLflow."""

import os
import pkgutil
import subprocess
import sys

import deepfake_detection.evaluation as evaluation


def test_evaluation_modules_import_neither_tensorflow_nor_mlflow():
    modules = [f"deepfake_detection.evaluation.{m.name}" for m in pkgutil.iter_modules(evaluation.__path__)]
    assert {"deepfake_detection.evaluation.metrics", "deepfake_detection.evaluation.ensemble"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'mlflow')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
