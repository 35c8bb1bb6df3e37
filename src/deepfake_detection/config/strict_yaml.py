"""Reading params.yaml strictly: a key repeated within a mapping is an error (PyYAML would keep
the last value silently), and bad YAML is a :class:`~deepfake_detection.config.base.ConfigError`."""

from __future__ import annotations

from pathlib import Path

import yaml

from .base import ConfigError


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping repeats a key (YAML 1.2 forbids it; PyYAML would keep the last value)."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping, at any depth, naming the
    dotted key path and the line of the repetition."""

    def __init__(self, stream):
        super().__init__(stream)
        self._key_paths: dict[int, str] = {}  # id(mapping node) -> its dotted path

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            prefix = self._key_paths.get(id(node), "")
            seen: dict[object, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # SafeLoader reports unhashable keys itself
                dotted = f"{prefix}{key}"
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _DuplicateKeyError(
                        None,
                        None,
                        f"duplicate key {dotted!r} at line {line} (first at line {seen[key]})",
                        key_node.start_mark,
                    )
                seen[key] = line
                self._key_paths[id(value_node)] = f"{dotted}."
                if isinstance(value_node, yaml.SequenceNode):
                    for i, item in enumerate(value_node.value):
                        self._key_paths[id(item)] = f"{dotted}[{i}]."
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> object:
    """Parse ``path`` with :class:`_StrictLoader`; duplicate keys and bad YAML are ConfigErrors."""
    loader = _StrictLoader(path.read_text())
    try:
        return loader.get_single_data()
    except _DuplicateKeyError as err:
        raise ConfigError(f"{path}: {err.problem}: a key may appear once (the last value would silently win)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    finally:
        loader.dispose()
