"""Named presets of one kind of config: the single mechanism every preset of this repository goes through.

A ``Registry`` maps a name to a factory; ``get`` calls the factory, so each caller receives a fresh value it may
change without touching the preset. Unknown names fail in one line that lists the choices::

    PRESETS = Registry[GeneratorConfig]("generator")
    PRESETS.register("tiny", tiny_config)

    @PRESETS.register("ffhq512")
    def _ffhq512() -> GeneratorConfig: ...

    PRESETS.get("ffhq2048")  # ValueError: unknown generator preset 'ffhq2048'; choose one of tiny, ffhq512

It lives in ``torch_utils`` (the lowest layer) so that the backbone's presets and nerffs' use the same type.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar, overload

T = TypeVar("T")
Factory = Callable[[], T]


class Registry(Generic[T]):
    """Name -> factory of a ``T``, in registration order.

    Args:
        kind: what the presets configure, as the error message names it ('pipeline', 'inversion', ...).
        factories: initial presets, registered in the mapping's order.
    """

    def __init__(self, kind: str, factories: Mapping[str, Factory[T]] | None = None) -> None:
        self.kind = kind
        self._factories: dict[str, Factory[T]] = {}
        for name, factory in (factories or {}).items():
            self.register(name, factory)

    @overload
    def register(self, name: str) -> Callable[[Factory[T]], Factory[T]]: ...

    @overload
    def register(self, name: str, factory: Factory[T]) -> Factory[T]: ...

    def register(self, name, factory=None):
        """Add preset ``name`` built by ``factory()``; without ``factory``, a decorator that registers the function
        it decorates. Returns the factory.

        Raises:
            ValueError: ``name`` is already registered (a preset is defined once).
        """
        if factory is None:
            return lambda fn: self.register(name, fn)
        if name in self._factories:
            raise ValueError(f"{self.kind} preset {name!r} is already registered")
        self._factories[name] = factory
        return factory

    def get(self, name: str) -> T:
        """A fresh value of preset ``name``.

        Raises:
            ValueError: ``unknown <kind> preset 'x'; choose one of a, b, c``.
        """
        try:
            factory = self._factories[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name from a config file
            raise ValueError(f"unknown {self.kind} preset {name!r}; choose one of {', '.join(self.names())}") from None
        return factory()

    def names(self) -> tuple[str, ...]:
        """The preset names, in registration order."""
        return tuple(self._factories)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._factories
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._factories)})"
