"""The one YAML reader of condpt: errors name the file and line; duplicate keys and non-UTF-8 files are refused.

PyYAML alone lets the second of two `train:` mappings silently replace the first, reads `3e-4` as a string
(YAML 1.1 wants a dot and a signed exponent), reads `off`, `on`, `yes`, `no` as booleans (YAML 1.1 again:
`other_tokens: off` became False and was refused as "not off"), and fails on a non-UTF-8 file with a
UnicodeDecodeError naming nothing. Here, as in YAML 1.2, only `true` and `false` are booleans. Every YAML file condpt reads (run configs, grids, tagging configs, lexicons, control-token
specs it validates) and every `key=value` override value goes through `load_yaml` here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

_MERGE = "tag:yaml.org,2002:merge"


class YamlError(ValueError):
    """A YAML file or value that cannot be used; the message names the file (and line, where known)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (at any depth) and reads YAML 1.2 floats like `1e-4`."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:  # `<<: *base` keys may be overridden by design
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = first.get(key)
                except TypeError:
                    continue  # an unhashable key: SafeLoader reports it below
                if seen is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {seen + 1})", key_node.start_mark)
                first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError as e:  # Python refuses integers of more than 4300 digits
            raise yaml.constructor.ConstructorError(None, None, f"integer not usable: {e}", node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


# YAML 1.2 floats with an exponent but no dot or an unsigned exponent (`1e5`, `3e-4`, `989.0e12`).
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


# YAML 1.2 booleans: only true/false (any case form PyYAML knows); `off`, `on`, `yes`, `no` stay strings.
_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _where(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    return f" (line {mark.line + 1})" if mark is not None else ""


def load_yaml(text: str, origin: str = "<string>") -> Any:
    """Parse YAML text (None when empty). Raises `YamlError` naming `origin` and the line; also for data no
    config can be (see `_shape_problem`)."""
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as e:
        raise YamlError(f"{origin}: not valid YAML{_where(e)}: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise YamlError(f"{origin}: not usable YAML: nested too deeply") from None
    problem = _shape_problem(data)
    if problem:
        raise YamlError(f"{origin}: not usable YAML: {problem}")
    return data


MAX_DEPTH = 64
MAX_VALUES = 1_000_000


def _shape_problem(data: Any) -> str | None:
    """Why parsed YAML cannot be a config, or None: a collection that contains itself (`- &a [*a]`), aliases
    that expand it past MAX_VALUES values (a "billion laughs"), or nesting deeper than MAX_DEPTH. Every
    validator, dumper and walker after this one may then recurse and iterate freely."""
    size: dict[int, int] = {}  # values under each finished collection, aliases expanded
    open_now: set[int] = set()  # collections on the current path
    stack: list[tuple[Any, int, bool]] = [(data, 0, False)]
    while stack:
        node, depth, leaving = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        children = list(node.values()) if isinstance(node, dict) else node
        key = id(node)
        if leaving:
            open_now.discard(key)
            size[key] = 1 + sum(size.get(id(child), 1) for child in children)
            if size[key] > MAX_VALUES:
                return f"aliases (*name) expand it to more than {MAX_VALUES:,} values"
            continue
        if key in open_now:
            return "an alias (*name) refers to a collection that contains it"
        if key in size:
            continue
        if depth >= MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        open_now.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in children)
    return None


def read_text(path: str | Path, what: str = "config file") -> str:
    """The UTF-8 text of `path`; `YamlError` naming the file if it is missing, a directory or not UTF-8."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise YamlError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise YamlError(f"{path}: {what} is a directory, not a file") from None
    except OSError as e:
        raise YamlError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise YamlError(f"{path}: not UTF-8 text (byte {e.start}, line {line}); save the {what} as UTF-8") from None


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """The parsed YAML at `path` (None for an empty file). Raises `YamlError` (a ValueError) naming the file:
    not found, not UTF-8, not valid YAML or a duplicate key (with the line)."""
    return load_yaml(read_text(path, what), str(path))


def key_lines(path: str | Path) -> dict[tuple, int]:
    """1-based line of every mapping key and list item in the YAML at `path`, by its path of keys/indices
    (`("data", "sources", 0, "path")`): lets a validation error point at the line that set the field."""
    out: dict[tuple, int] = {}

    def walk(node: yaml.Node, prefix: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    out[(*prefix, key_node.value)] = key_node.start_mark.line + 1
                    walk(value, (*prefix, key_node.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                out[(*prefix, i)] = item.start_mark.line + 1
                walk(item, (*prefix, i))

    try:
        root = yaml.compose(read_text(path), Loader=_Loader)
    except (YamlError, yaml.YAMLError, RecursionError):
        return out
    if root is not None:
        walk(root, ())
    return out
