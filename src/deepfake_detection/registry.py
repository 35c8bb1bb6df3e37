"""The MLflow model registry: version tags, description, and the promotion gate of the
champion alias. Aliases and tags only (MLflow's model stages are deprecated)."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .config import LOWER_IS_BETTER


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    previous_version: str | None


def current_champion(name: str, alias: str):
    """The version the alias points to, or None (no model, or no alias yet)."""
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and (
                "not found" in str(err).lower() or "does not exist" in str(err).lower()):
            return None
        raise


def is_better(metric: str, new: float, old: float) -> bool:
    return new < old if metric in LOWER_IS_BETTER else new > old


def promote(name: str, version: str, alias: str, metric: str, value: float, force: bool = False) -> Decision:
    """Move ``alias`` to ``version`` if it beats the current holder on ``metric`` (a validation
    metric the versions carry as a tag), or if ``force``. Records the decision on the version."""
    client = MlflowClient()
    old = current_champion(name, alias)
    if old is None:
        promoted, reason = True, f"no version held the alias '{alias}' yet"
    elif str(old.version) == str(version):
        promoted, reason = True, f"version {version} already holds '{alias}'"
    else:
        old_value = old.tags.get(metric)
        if force:
            promoted, reason = True, f"forced (--force) over version {old.version} ({metric}={old_value})"
        elif old_value is None:
            promoted, reason = True, f"version {old.version} carries no {metric} tag to compare with"
        elif is_better(metric, value, float(old_value)):
            promoted, reason = True, f"{metric} {value:.4f} beats version {old.version}'s {float(old_value):.4f}"
        else:
            promoted, reason = False, (f"{metric} {value:.4f} does not beat version {old.version}'s "
                                       f"{float(old_value):.4f}: '{alias}' stays (use --force to override)")
    if promoted:
        client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "promotion", "promoted" if promoted else "not promoted")
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    return Decision(promoted, reason, None if old is None else str(old.version))


def tag_version(name: str, version: str, tags: dict[str, object], description: str) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
    client.update_model_version(name, version, description=description)
