"""Read-only resolved configs: what `compose_run` hands on. Reading, copying (`dict(c)`,
`{**c, …}`), pickling (Ray), JSON and Hydra instantiation work as on plain dicts and lists;
changing one in place raises, so a run's config stays the one composed from its overrides
(editing it afterwards is how a sweep once trained every trial at one learning rate)."""
from __future__ import annotations

from typing import Any, NoReturn


class FrozenConfigError(TypeError):
    """A resolved config was changed in place."""


def _refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise FrozenConfigError("a resolved run config is read-only: compose a new one from its overrides "
                            "(pipelines.runtime.validate.compose_run) instead of editing it")


class FrozenDict(dict):
    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple:  # pickled and copied through dict's constructor, not item by item
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict) -> FrozenDict:
        return self


class FrozenList(list):
    __setitem__ = __delitem__ = __iadd__ = __imul__ = append = clear = extend = insert = pop = remove = reverse = sort = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        return (FrozenList, (list(self),))

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict) -> FrozenList:
        return self


def freeze(node: Any) -> Any:
    """`node` with every dict and list in it read-only."""
    if isinstance(node, dict):
        return FrozenDict({k: freeze(v) for k, v in node.items()})
    if isinstance(node, list):
        return FrozenList(freeze(v) for v in node)
    return node


def thaw(node: Any) -> Any:
    """A plain, changeable copy (what a caller that must edit works on)."""
    if isinstance(node, dict):
        return {k: thaw(v) for k, v in node.items()}
    if isinstance(node, list):
        return [thaw(v) for v in node]
    return node
