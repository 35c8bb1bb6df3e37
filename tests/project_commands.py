"""The environment in which tests run the project's commands (`deepfake-detect`, `dvc`, `mlflow`)
as subprocesses: the venv's executables first, telemetry and analytics off, and no MLflow store
inherited from the test process (each command finds its project's own, unless one is given).
Importable from every test folder: pytest puts tests/ on the path for its conftest.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def command_env(tracking_uri: str | None = None, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **extra,
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def params_text(settings: dict) -> str:
    """A params file stating every key (as ``load_params`` requires): ``settings`` with every
    key it leaves out at the code's default, so a test's few settings mean what they did."""
    import yaml

    from deepfake_detection.config import parse_params

    return yaml.safe_dump(parse_params(settings).model_dump(mode="json", by_alias=True), sort_keys=False)
