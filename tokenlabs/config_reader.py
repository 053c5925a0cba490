"""Typed, path-aware reading of a parsed YAML document.

Every accessor knows the dotted path of the value it reads, so a bad value is reported as
``config key 'tiers.free.requests_per_minute': must be an integer >= 0, got '-1'``. Unknown keys are errors too:
a typo in a config file must not silently fall back to a default.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tokenlabs.errors import ConfigError

_MISSING: Any = object()


class Section:
    """A mapping in the config document together with the path that leads to it."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(path or "<root>", data, "must be a mapping")
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(self._join(path, str(key)), key, "keys must be strings")
        self._data: Mapping[str, Any] = data
        self._path = path
        self._read: set[str] = set()

    @staticmethod
    def _join(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def path_of(self, key: str) -> str:
        return self._join(self._path, key)

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._read.add(key)
        if key in self._data and self._data[key] is not None:
            return self._data[key]
        if default is _MISSING:
            raise ConfigError(self.path_of(key), None, "is required")
        return default

    def section(self, key: str) -> Section:
        return Section(self.raw(key, {}), self.path_of(key))

    def items(self) -> Iterator[tuple[str, Any]]:
        """All entries, for sections whose keys are names chosen by the user (tiers, models, pools)."""
        self._read.update(self._data)
        yield from self._data.items()

    def string(self, key: str, default: Any = _MISSING, choices: tuple[str, ...] = ()) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(self.path_of(key), value, "must be a non-empty string")
        if choices and value not in choices:
            raise ConfigError(self.path_of(key), value, f"must be one of {', '.join(choices)}")
        return value

    def integer(self, key: str, default: Any = _MISSING, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.path_of(key), value, "must be an integer")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise ConfigError(self.path_of(key), value, f"must be an integer {bound}")
        return value

    def optional_integer(self, key: str, minimum: int = 0) -> int | None:
        if self.raw(key, None) is None:
            return None
        return self.integer(key, minimum=minimum)

    def number(self, key: str, default: Any = _MISSING, minimum: float = 0.0) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self.path_of(key), value, "must be a number")
        if value < minimum:
            raise ConfigError(self.path_of(key), value, f"must be a number >= {minimum}")
        return float(value)

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise ConfigError(self.path_of(key), value, "must be true or false")
        return value

    def string_list(self, key: str, default: Any = _MISSING) -> tuple[str, ...]:
        value = self.raw(key, default)
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise ConfigError(self.path_of(key), value, "must be a list of non-empty strings")
        return tuple(value)

    def reject_unknown(self) -> None:
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            raise ConfigError(self.path_of(unknown[0]), self._data[unknown[0]], "is not a known setting")
