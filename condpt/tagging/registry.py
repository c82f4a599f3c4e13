"""Taggers registered by name.

A tagger *factory* takes the run's `TagConfig` and the `Cascade` (which holds the shared, lazily loaded
resources: lexicon, scorer, autorater) and returns a pure function ``batch -> batch`` over a dict of
lists. The cascade runs the factories named in ``TagConfig.stages`` in order, so a custom stage is one
``@register("name")`` away, and the same functions run under ``datasets.map``, in worker processes, or on
a distributed engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Batch = dict[str, list]
TaggerFn = Callable[[Batch], Batch]
TaggerFactory = Callable[[Any, Any], TaggerFn]

_REGISTRY: dict[str, TaggerFactory] = {}


def register(name: str) -> Callable[[TaggerFactory], TaggerFactory]:
    """Register a tagger factory ``(config, cascade) -> (batch -> batch)`` under `name`."""

    def deco(factory: TaggerFactory) -> TaggerFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"tagger {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def get_tagger(name: str) -> TaggerFactory:
    """The factory registered as `name` (the built-in stages live in `condpt.tagging.cascade`)."""
    import condpt.tagging.cascade  # noqa: F401  (registers the built-in stages)

    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown tagger {name!r} (registered: {', '.join(sorted(_REGISTRY))})") from None


def tagger_names() -> list[str]:
    import condpt.tagging.cascade  # noqa: F401

    return sorted(_REGISTRY)
