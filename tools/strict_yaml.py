"""YAML as yaml.safe_load reads it, except that a duplicate key is an error (safe_load silently keeps
the last, so a cluster.yaml with two `db:` lines would run with one the operator did not mean)."""
from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain safe_load silently keeps the last)."""


def _mapping_no_duplicates(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable):
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_no_duplicates)


def load_without_duplicates(text: str) -> Any:
    """Raises yaml.YAMLError (a ConstructorError naming the key for a duplicate)."""
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
