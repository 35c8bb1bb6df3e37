"""What every settings section shares: :class:`ConfigError`, the frozen, strict section base,
and the checks that sections and the code below them share (:func:`check_name`, a set's name)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or holds a wrong key or value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ordered_pair(v, low: float, high: float):
    if v is not None and not (low <= v[0] <= v[1] <= high):
        raise ValueError(f"must be [low, high] with {low:g} <= low <= high <= {high:g}")
    return v


NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
NAME_RULE = "1-64 letters, digits, '_' or '-', starting with a letter"


def check_name(name: str) -> str:
    """``name`` if it is a safe set name (it names MLflow metrics ``external/<name>/auc`` and the
    folder ``artifacts/external/<name>/``); ValueError saying what to fix otherwise.
    ``evaluate.external`` checks its names with it (it lived in ``data/external.py`` before)."""
    if not isinstance(name, str) or not NAME.match(name):
        suggestion = re.sub(r"[^A-Za-z0-9_-]+", "_", str(name)).strip("_-") or "set"
        if not suggestion[0].isalpha():
            suggestion = f"set_{suggestion}"
        raise ValueError(
            f"name {name!r} is not a safe identifier: use {NAME_RULE} (it names the MLflow metrics "
            f"external/<name>/auc and the folder artifacts/external/<name>/), e.g. {suggestion[:64]!r}"
        )
    return name
