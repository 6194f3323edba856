"""``aio.Metadata``: grpcio's multi-map of metadata (key -> values, in
order), what aio calls return from ``initial_metadata()`` /
``trailing_metadata()`` and what interceptors see in
``ClientCallDetails.metadata``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection


class Metadata(Collection):
    """Metadata entries: several values per key allowed, order kept;
    ``md[key]`` is the first value of ``key``. Iterating gives
    ``(key, value)`` pairs, as a list of tuples does."""

    def __init__(self, *args):
        self._metadata = OrderedDict()
        for key, value in args:
            self.add(key, value)

    @classmethod
    def from_tuple(cls, raw_metadata):
        if raw_metadata:
            return cls(*raw_metadata)
        return cls()

    @classmethod
    def _create(cls, raw):
        if raw is None:
            return cls()
        if isinstance(raw, cls):
            return raw
        return cls.from_tuple(raw)

    def add(self, key, value):
        self._metadata.setdefault(key, []).append(value)

    def __len__(self):
        return sum(len(v) for v in self._metadata.values())

    def __getitem__(self, key):
        try:
            return self._metadata[key][0]
        except (KeyError, IndexError):
            raise KeyError(repr(key)) from None

    def __setitem__(self, key, value):
        if key not in self._metadata:
            self._metadata[key] = [value]
        else:
            self._metadata[key][0] = value

    def __delitem__(self, key):
        values = self._metadata.get(key)
        if not values:
            raise KeyError(repr(key))
        del values[0]
        if not values:
            del self._metadata[key]

    def delete_all(self, key):
        del self._metadata[key]

    def __iter__(self):
        for key, values in self._metadata.items():
            for value in values:
                yield (key, value)

    def keys(self):
        return self._metadata.keys()

    def values(self):
        return self._metadata.values()

    def items(self):
        return self._metadata.items()

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def get_all(self, key):
        return list(self._metadata.get(key, []))

    def set_all(self, key, values):
        self._metadata[key] = list(values)

    def __contains__(self, key):
        return key in self._metadata

    def __eq__(self, other):
        if isinstance(other, type(self)):
            return self._metadata == other._metadata
        if isinstance(other, tuple):
            return tuple(self) == other
        return NotImplemented

    __hash__ = None

    def __add__(self, other):
        if isinstance(other, type(self)):
            return type(self)(*(tuple(self) + tuple(other)))
        if isinstance(other, (list, tuple)):
            return type(self)(*(tuple(self) + tuple(other)))
        return NotImplemented

    def __repr__(self):
        return "{0}({1!r})".format(type(self).__name__, tuple(self))
