"""One plain-dict registry per kind of component, with did-you-mean lookups."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from keyhead.errors import KeyheadError

T = TypeVar("T")


class Registry:
    """Maps names to constructors (classes or functions).

    Example:
        >>> HEADS = Registry("head")
        >>> @HEADS.register("heatmap")
        ... class HeatmapHead: ...
        >>> HEADS.get("heatmap") is HeatmapHead
        True
    """

    def __init__(self, kind: str, module: str | None = None) -> None:
        self.kind = kind
        self.module = module
        self._items: dict[str, Any] = {}

    def _populate(self) -> None:
        """Import the package whose modules register this kind (``import keyhead`` itself imports no torch)."""
        if self.module is not None:
            module, self.module = self.module, None
            importlib.import_module(module)

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        self._populate()
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise KeyheadError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._items))})")
        return self._items[name]

    def names(self) -> list[str]:
        self._populate()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._populate()
        return name in self._items


BACKBONES = Registry("backbone", "keyhead.models.backbones")
HEADS = Registry("head", "keyhead.models.heads")
DECODERS = Registry("decoder", "keyhead.models.decoders")
LOSSES = Registry("loss", "keyhead.models.losses")
