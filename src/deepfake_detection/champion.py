"""The MLflow model registry: version tags, description, and the promotion gate of the
champion alias. Aliases and tags only (MLflow's model stages are deprecated).

The gate compares like with like: a version's ``val_auc`` tag was measured on the validation
split of the data it was trained with, so after the data changes the champion is scored again
on the current validation split (``rescore``) and both numbers come from the same images. Only
when that fails does the gate fall back to the champion's stored tag, and its reason says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .config import LOWER_IS_BETTER


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    previous_version: str | None
    challenger_value: float | None = None  # both on the current validation split, when rescored
    champion_value: float | None = None


def gate_tag(role: str, metric: str) -> str:
    """``gate_challenger_val_auc`` / ``gate_champion_val_auc``: the numbers the gate compared."""
    return f"gate_{role}_{metric}"


def current_champion(name: str, alias: str):
    """The version the alias points to, or None (no model, or no alias yet)."""
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and (
            "not found" in str(err).lower() or "does not exist" in str(err).lower()
        ):
            return None
        raise


def is_better(metric: str, new: float, old: float) -> bool:
    return new < old if metric in LOWER_IS_BETTER else new > old


Rescore = Callable[[object], tuple[float, float]]


class Unloadable(Exception):
    """``rescore`` could not load the champion at all (a missing, truncated or corrupt model
    file): the gate then treats it as beaten, whatever its tags say."""


def promote(
    name: str, version: str, alias: str, metric: str, value: float, force: bool = False, rescore: Rescore | None = None
) -> Decision:
    """Move ``alias`` to ``version`` if it beats the current holder on ``metric`` (a validation
    metric), or if ``force``. Records the decision on the version.

    ``rescore(champion_version) -> (challenger, champion)``: both versions' ``metric`` on the
    current validation split. With it the gate compares those two numbers and records them on
    the new version (:func:`gate_tag`); if it raises :class:`Unloadable`, the champion is
    beaten (the reason says why it cannot be loaded; the old version gets an ``unloadable``
    tag); if it raises anything else, or without it, the gate compares ``value`` with the
    champion's stored ``metric`` tag, which may come from other data.
    """
    client = MlflowClient()
    old = current_champion(name, alias)
    new_value = old_value = unloadable = None
    if old is None:
        promoted, reason = True, f"no version held the alias '{alias}' yet"
    elif str(old.version) == str(version):
        promoted, reason = True, f"version {version} already holds '{alias}'"
    elif force:
        promoted, reason = True, f"forced (--force) over version {old.version} ({metric}={old.tags.get(metric)})"
    else:
        new_value, old_value, unloadable, fallback = _rescored(old, metric, rescore)
        if unloadable is not None:
            promoted, reason = True, f"version {old.version}, the champion, cannot be loaded: {unloadable}"
        elif old_value is not None:
            promoted, reason = _judge_rescored(old, alias, metric, new_value, old_value)
        else:
            promoted, reason = _judge_by_tag(old, alias, metric, value)
            reason += fallback
    _record(client, name, version, alias, metric, old, promoted, reason, (new_value, old_value, unloadable))
    return Decision(promoted, reason, None if old is None else str(old.version), new_value, old_value)


def _rescored(old, metric: str, rescore: Rescore | None) -> tuple[float | None, float | None, str | None, str]:
    """``(challenger, champion, unloadable, fallback)``: both versions' ``metric`` on the current
    validation split (None when not rescored), why the champion cannot be loaded (None when it
    can), and what the reason adds when the gate falls back to the champion's stored tag."""
    if rescore is None:
        return None, None, None, ""
    try:
        new_value, old_value = (float(v) for v in rescore(old))
    except Unloadable as err:
        return None, None, (str(err).splitlines()[0] if str(err) else type(err).__name__), ""
    except Exception as err:  # noqa: BLE001 - any failure to score means: fall back
        return (
            None,
            None,
            None,
            (
                f" (version {old.version} could not be scored on the current validation split: "
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}; "
                f"compared with its stored {metric} tag, which may come from other data)"
            ),
        )
    return new_value, old_value, None, ""


def _judge_rescored(old, alias: str, metric: str, new_value: float, old_value: float) -> tuple[bool, str]:
    """The decision from both versions' ``metric`` on the current validation split."""
    where = "both on the current validation split"
    stored = old.tags.get(metric)
    also = f"; its stored tag says {float(stored):.4f}" if stored is not None else ""
    if is_better(metric, new_value, old_value):
        return True, f"{metric} {new_value:.4f} beats version {old.version}'s {old_value:.4f}, {where}{also}"
    return (
        False,
        (
            f"{metric} {new_value:.4f} does not beat version {old.version}'s "
            f"{old_value:.4f}, {where}{also}: '{alias}' stays "
            f"(use --force to override)"
        ),
    )


def _judge_by_tag(old, alias: str, metric: str, value: float) -> tuple[bool, str]:
    """The decision from the challenger's ``value`` and the champion's stored ``metric`` tag."""
    tag = old.tags.get(metric)
    if tag is None:
        return True, f"version {old.version} carries no {metric} tag to compare with"
    if is_better(metric, value, float(tag)):
        return True, f"{metric} {value:.4f} beats version {old.version}'s {float(tag):.4f}"
    return (
        False,
        (
            f"{metric} {value:.4f} does not beat version {old.version}'s "
            f"{float(tag):.4f}: '{alias}' stays (use --force to override)"
        ),
    )


def _record(client, name: str, version: str, alias: str, metric: str, old, promoted: bool, reason: str, scores):
    """Write the decision on the versions (``scores``: challenger, champion, unloadable); move the
    alias last, so a process killed before it leaves the alias where it was."""
    new_value, old_value, unloadable = scores
    if unloadable is not None:
        client.set_model_version_tag(name, str(old.version), "unloadable", unloadable)
    if old_value is not None:
        client.set_model_version_tag(name, version, gate_tag("challenger", metric), str(new_value))
        client.set_model_version_tag(name, version, gate_tag("champion", metric), str(old_value))
        client.set_model_version_tag(name, version, "gate_champion_version", str(old.version))
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    client.set_model_version_tag(name, version, "promotion", "promoted" if promoted else "not promoted")
    if promoted:
        client.set_registered_model_alias(name, alias, version)


def describe_model(name: str, description: str, tags: dict[str, str]) -> None:
    """The registered model's own description and tags (what it detects, input, decision rule)."""
    client = MlflowClient()
    client.update_registered_model(name, description=description)
    for key, value in tags.items():
        client.set_registered_model_tag(name, key, value)


def register_version(
    name: str, model_uri: str, model_id: str | None, source_run: str, tags: dict[str, object], description: str = ""
) -> str:
    """Create a version of ``name`` from a logged model with its ``tags`` (the threshold among
    them) and ``description`` in one call, so that no version ever exists without them. Its source
    run is ``source_run`` (the model's evaluate run: the version's page links to the run with its
    test metrics, curves and datasets). Returns the version number."""
    client = MlflowClient()
    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    version = client.create_model_version(
        name,
        source=model_uri,
        run_id=source_run,
        model_id=model_id,
        tags={k: str(v) for k, v in tags.items()},
        description=description,
    )
    return str(version.version)


def describe_version(name: str, version: str, description: str) -> None:
    """Replace a version's description (its model card, which names the version it describes)."""
    MlflowClient().update_model_version(name, version, description=description)


INTERRUPTED = "interrupted"
"""The ``promotion`` tag :func:`repair` gives a version whose gate never decided."""


def repair(name: str, alias: str) -> list[str]:
    """Mark the versions of ``name`` a killed ``register`` left half-done: those without a
    ``promotion`` tag (the gate never decided) that do not hold ``alias`` get
    ``promotion: interrupted`` and a reason, so nothing mistakes them for judged versions.
    Returns their numbers (none when the model is not registered yet)."""
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    holder = current_champion(name, alias) if versions else None
    repaired = []
    for v in versions:
        if "promotion" in v.tags or (holder is not None and str(v.version) == str(holder.version)):
            continue
        client.set_model_version_tag(
            name,
            str(v.version),
            "promotion_reason",
            "the register run that created it stopped before the gate decided (killed?); a later run registered anew",
        )
        client.set_model_version_tag(name, str(v.version), "promotion", INTERRUPTED)
        repaired.append(str(v.version))
    return repaired


_REGISTERED = re.compile(r"^models:/(?!m-)(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/]+))$")


def describe_source(model_uri: str) -> dict[str, object]:
    """What a detector URI names: ``name`` and ``version`` (a registered version, by number or
    alias; else None), the ``tags`` that say which model it is (the version's, else the logged
    model's: ``source_model``, ``kind``, ...), the run that logged it and its ``metadata``."""
    from mlflow.models import get_model_info

    client = MlflowClient()
    info = get_model_info(model_uri)
    out: dict[str, object] = {"name": None, "version": None, "run_id": info.run_id, "metadata": info.metadata or {}}
    tags: dict[str, str] = {}
    if info.model_id:
        tags.update(client.get_logged_model(info.model_id).tags)
    match = _REGISTERED.match(model_uri)
    if match:
        name = match["name"]
        mv = (
            client.get_model_version(name, match["version"])
            if match["version"]
            else client.get_model_version_by_alias(name, match["alias"])
        )
        out.update(name=name, version=str(mv.version))
        tags.update(mv.tags)
    out["tags"] = tags
    return out


def resolve_version(model_uri: str):
    """The registered version that a ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` URI names
    and the alias it was named by (None for a version number); ``(None, None)`` for any other
    URI (``runs:/...``, a model folder), which names no registered version."""
    if not model_uri.startswith("models:/"):
        return None, None
    rest = model_uri[len("models:/") :].strip("/")
    client = MlflowClient()
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        return client.get_model_version_by_alias(name, alias), alias
    name, _, version = rest.rpartition("/")
    if name and version.isdigit():
        return client.get_model_version(name, version), None
    return None, None
