"""Value equality and repr for plain record classes, without `dataclasses`.

Owns two small mixins that every layer may use (it sits below wire): `Fields`
gives a class `__eq__` and `__repr__` over the attribute names in its
`_fields`, in that order, as a dataclass has them; `FrozenFields` adds
`__hash__` and refuses assignment, as a frozen dataclass does (its
`__init__` sets the fields with `object.__setattr__`). And the two
functions of dataclasses that the summary needs: `replace` and `as_dict`.

Why not dataclasses: importing it costs ~9 ms (it pulls in inspect, ast, dis
and tokenize) and building each class ~0.3 ms more, about a third of the 50 ms
a cold start may take to its first Hello (issue 6). The classes write their
`__init__` out instead.

Also owns `cast`, typing's identity function, for modules on the cold-start
path that must not import typing.

Never: generates code, inspects annotations, or imports anything.
"""

from __future__ import annotations

# typing.TYPE_CHECKING without importing typing, which costs ~2 ms of a cold start
# (the name is what mypy looks for). `cast` is typing's, an identity function.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, NoReturn, TypeVar
    from typing import cast as cast  # noqa: PLC0414 - re-exported (strict mypy wants it said)

    F = TypeVar("F", bound="Fields")
else:
    def cast(_type: object, value: object) -> object:
        return value


class Fields:
    """`==` and repr over `_fields`; unhashable, like a dataclass that is not frozen."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self._fields])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Fields)
        return self._values() == other._values()

    __hash__: ClassVar[None] = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join([f"{name}={getattr(self, name)!r}" for name in self._fields])
        return f"{self.__class__.__qualname__}({inner})"


class FrozenFields(Fields):
    """`Fields`, hashable, and read-only once `__init__` has set it."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._values())

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen "
                             f"{self.__class__.__qualname__}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"cannot delete field {name!r} of a frozen "
                             f"{self.__class__.__qualname__}")


def replace(obj: F, **changes: Any) -> F:
    """A shallow copy of `obj` with some fields changed (dataclasses.replace)."""
    unknown = changes.keys() - set(obj._fields)
    if unknown:
        raise TypeError(f"{obj.__class__.__qualname__} has no field {min(unknown)!r}")
    new = obj.__class__.__new__(obj.__class__)
    for name in obj._fields:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(obj, name))
    return new


def as_dict(obj: Fields) -> dict[str, Any]:
    """The fields as a dict, recursing into fields, lists, tuples and dicts
    (dataclasses.asdict): containers are copied, nothing is shared with `obj`."""
    return {name: _plain(getattr(obj, name)) for name in obj._fields}


def _plain(value: Any) -> Any:
    if isinstance(value, Fields):
        return as_dict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value
