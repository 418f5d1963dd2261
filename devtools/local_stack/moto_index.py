"""Local-stack-only speed-ups of moto: the same answers, in less time (``speed_ups()`` applies them all).

- :func:`indexed_queries`: a Query walks its partition, not the whole table (below); an
  index projection copies top-level strings instead of listing the whole item; a sort
  on string keys compares strings, not DynamoType objects, and is kept per partition
  until the next write; a projected index query's results are not deep-copied before
  their projection builds new items (:class:`_QueryCopy`);
- :func:`fast_attribute_values`: DynamoDB items are written to JSON directly, byte for
  byte as moto's generic, shape-driven serializer writes them;
- :func:`cached_module_list`, :func:`cached_handler_methods`: what moto lists on every
  request (its modules, a handler's methods) is listed once.

The local stack's moto process (``moto_server.py``) runs under them; ``tests/unit/test_moto_index.py``
compares answers (and whole response bodies) with and without them.

moto (5.x, ``moto/dynamodb/models/table.py``, ``Table.query``) serves every Query by
listing the WHOLE table (``Table.all_items``: every item, sorted by key) and then keeping
the items whose partition key matches, for a GSI Query as for a Query on the table key.
With 5,000 events that costs ~15-20 ms per call on this machine, whatever the call
asks for, where DynamoDB reads only the partition. The admin listings make dozens of
such calls a page (one per listing shard), so on the local stack they took seconds.

:func:`indexed_queries` narrows what ``all_items`` returns, for the length of one
``Table.query`` call on the calling thread only, to the items of the queried partition:
for a GSI, the items whose index hash attributes equal the query's; for the table, the
item(s) under the hash key (a dict lookup). The original ``Table.query`` then runs
unchanged on that subset: same sort (the subset of a sorted list, sorted the same way),
same conditions, limits, pagination keys, projections and filters, hence the same
results; moto's other callers of ``all_items`` (Scan, exports) are untouched.
``tests/unit/test_moto_index.py`` compares answers with and without it.

Nothing in the product relies on this: real DynamoDB reads only the partition anyway,
and the listings' cost on DynamoDB (calls, read units) is measured by
``devtools/bench/listing.py`` independently of it.
"""

from __future__ import annotations

import copy
import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

_narrow = threading.local()  # the partition the current thread's Table.query asks for
# An index's partitions, all listed in one pass over the table, once per table state: every
# moto write bumps ``_writes`` when it returns (the backend's writes, PartiQL, and
# Table.put_item/delete_item under them), and the cached lists are used only while
# ``_writes`` is what it was before they were made (a listing page after a write: one pass).
_writes = [0]
_cache: dict[tuple[Any, ...], tuple[int, Any, dict[tuple[Any, ...], list[Any]]]] = {}
_cache_lock = threading.Lock()
# moto's sort of a cached partition list, by (its id, the sort attributes): (that list, sorted)
_sorted: dict[tuple[int, tuple[str, ...]], tuple[list[Any], list[Any]]] = {}
_WRITES = (
    ("models", "DynamoDBBackend", "put_item"),
    ("models", "DynamoDBBackend", "update_item"),
    ("models", "DynamoDBBackend", "delete_item"),
    ("models", "DynamoDBBackend", "transact_write_items"),
    ("models", "DynamoDBBackend", "execute_statement"),
    ("models", "DynamoDBBackend", "execute_transaction"),
    ("models", "DynamoDBBackend", "batch_execute_statement"),
    ("models", "DynamoDBBackend", "delete_table"),
    ("models.table", "Table", "put_item"),
    ("models.table", "Table", "delete_item"),
)


@contextmanager
def indexed_queries() -> Iterator[None]:
    """Patch moto's ``Table.query``/``Table.all_items`` for the block (re-entrant: nested uses are no-ops)."""
    from moto.dynamodb.models.table import Table

    if getattr(Table.query, "_partition_only", False):
        yield
        return
    query, all_items = Table.__dict__["query"], Table.__dict__["all_items"]

    signature = inspect.signature(query)

    @functools.wraps(query)
    def partition_query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, hash_key, *args, **kwargs).arguments
        index_name, conditions = arguments.get("index_name"), arguments.get("hash_key_conditions")
        shallow = False
        if index_name:
            if not conditions:
                return query(self, hash_key, *args, **kwargs)
            index = self.get_index(index_name)
            ranges = [k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"]
            wanted: Any = ("index", (dict(conditions), tuple(ranges)))
            # its results are projected into new items right after moto deep-copies them
            shallow = (index.projection or {}).get("ProjectionType") in ("INCLUDE", "KEYS_ONLY")
        elif hash_key is not None:
            wanted = ("table", hash_key)
        else:
            return query(self, hash_key, *args, **kwargs)
        previous = (getattr(_narrow, "wanted", None), getattr(_narrow, "source", None), _shallow())
        _narrow.wanted, _narrow.shallow = (self, wanted), shallow
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _narrow.wanted, _narrow.source, _narrow.shallow = previous[0], previous[1], previous[2]

    def narrowed_items(self: Any) -> list[Any]:
        current = getattr(_narrow, "wanted", None)
        if current is None or current[0] is not self:
            return all_items(self)
        _narrow.wanted = None  # the one call Table.query makes
        kind, value = current[1]
        source = _partition(self, kind, value, all_items)
        _narrow.source = source  # what Table.sorted_items may be handed back, in this order
        return list(source)

    from moto.dynamodb.models.dynamo_type import Item

    project, sorted_items = Item.__dict__["project"], Table.__dict__["sorted_items"]

    from moto.dynamodb.models import table as table_module

    partition_query._partition_only = True  # type: ignore[attr-defined]
    table_module.copy = _QueryCopy()  # type: ignore[assignment]
    Table.query = partition_query  # type: ignore[method-assign]
    Table.all_items = narrowed_items  # type: ignore[method-assign]
    Table.sorted_items = _text_sorted_items(sorted_items)  # type: ignore[method-assign]
    Item.project = _top_level_project(project)  # type: ignore[method-assign]
    restore = _count_writes()
    try:
        yield
    finally:
        table_module.copy = copy
        Table.query = query  # type: ignore[method-assign]
        Table.all_items = all_items  # type: ignore[method-assign]
        Table.sorted_items = sorted_items  # type: ignore[method-assign]
        Item.project = project  # type: ignore[method-assign]
        restore()
        _cache.clear()


def _shallow() -> bool:
    return bool(getattr(_narrow, "shallow", False))


class _QueryCopy:
    """``copy`` as moto's ``models/table.py`` sees it while :func:`indexed_queries` runs.

    ``Table.query`` deep-copies its results (whole items, with every nested attribute)
    and, on an index, projects each copy into a new item. For an INCLUDE or KEYS_ONLY
    index the projection builds new attribute values from the item it is given (strings,
    which cannot change, are shared), so the deep copy made first is never seen: during
    such a query (:func:`_shallow`) the results list is copied and its items are not.
    Every other deep copy (ALL projections, the table, scans, backups) is ``copy.deepcopy``.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        if type(value) is list and _shallow():
            return list(value)
        return copy.deepcopy(value, memo)


def _top_level_project(project: Callable[..., Any]) -> Callable[..., Any]:
    """``Item.project`` for top-level names (what index projections ask) without listing the whole item."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, deserializer, serializer

    @functools.wraps(project)
    def top_level_project(self: Any, projection_expressions: list[list[str]]) -> Any:
        names = [expr[0] for expr in projection_expressions if len(expr) == 1]
        if len(names) != len(projection_expressions) or len(set(names)) != len(names) or any("[" in n for n in names):
            return project(self, projection_expressions)
        # what project() builds from self.to_regular_json(), converting only the named attributes:
        # each goes to a Python value and back (boto3's deserializer and serializer), which gives a
        # string back as it was, so strings (all of the indexes' attributes) are copied as they are
        attrs = {}
        for name in names:
            value = self.attrs.get(name)
            if value is None:
                continue
            if value.type == "S" and type(value.value) is str:
                attrs[name] = DynamoType({"S": value.value})
            else:
                attrs[name] = DynamoType(serializer.serialize(deserializer.deserialize(value.to_regular_json())))
        projected = Item(hash_key=self.hash_key, range_key=self.range_key, attrs={})
        # without LimitedSizeDict's size check per attribute (O(n^2)), as moto's own Item.__deepcopy__
        # does: a part of an item that passed the check on its write passes it
        dict.update(projected.attrs, attrs)
        return projected

    return top_level_project


def _text_sorted_items(sorted_items: Callable[..., Any]) -> Callable[..., Any]:
    """``Table.sorted_items`` with plain string keys when every sort attribute is a string.

    moto sorts by tuples of DynamoType, whose == and < compare type and cast value; when
    every sort attribute is a string (the indexes' keys are), tuples of the strings order
    the items the same, and a stable sort of the same list in the same order gives the
    same result. Anything else (a number, a missing attribute) is sorted by moto.
    """

    @functools.wraps(sorted_items)
    def text_sorted_items(self: Any, hash_key_attrs: Any, range_key_attrs: Any, items: list[Any]) -> list[Any]:
        by = tuple(self._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs))
        # handed the whole cached partition, in its order (nothing filtered out): the sort of
        # the same list by the same key gives the same list, so the first one is kept
        source: list[Any] | None = getattr(_narrow, "source", None)
        whole = source is not None and len(items) == len(source)
        whole = whole and all(a is b for a, b in zip(items, source or (), strict=True))
        if whole:
            with _cache_lock:
                kept = _sorted.get((id(source), by))
            if kept is not None and kept[0] is source:
                items[:] = kept[1]
                return items
        try:
            keys = [tuple(_text(item.attrs[name]) for name in by) for item in items]
        except (KeyError, _Unusual):
            return sorted_items(self, hash_key_attrs, range_key_attrs, items)
        order = sorted(range(len(items)), key=keys.__getitem__)
        items[:] = [items[i] for i in order]
        if whole and source is not None:
            with _cache_lock:
                _sorted[(id(source), by)] = (source, list(items))
        return items

    return text_sorted_items


def _count_writes() -> Callable[[], None]:
    """Wrap every moto DynamoDB write so that it bumps ``_writes`` when it returns; the undo."""
    import importlib

    patched: list[tuple[Any, str, Any]] = []
    for module_name, owner_name, name in _WRITES:
        owner = getattr(importlib.import_module(f"moto.dynamodb.{module_name}"), owner_name)
        original = owner.__dict__.get(name)
        if original is None:
            continue

        def counted(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
            try:
                return __original(*args, **kwargs)
            finally:
                with _cache_lock:
                    _writes[0] += 1

        setattr(owner, name, functools.wraps(original)(counted))
        patched.append((owner, name, original))

    def undo() -> None:
        for owner, name, original in patched:
            setattr(owner, name, original)

    return undo


def _partition(table: Any, kind: str, value: Any, all_items: Callable[[Any], list[Any]]) -> list[Any]:
    """The items ``all_items`` would list that the query's partition condition can match, in its order."""
    if kind == "table":
        found = table.items.get(value)
        if found is None:
            return []
        items = list(found.values()) if table.range_key_attr else [found]
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)
    conditions, ranges = value
    names = tuple(sorted(conditions))
    try:
        wanted = tuple(_group_key(conditions[name]) for name in names)
    except TypeError:  # a value that cannot be a dict key: compare item by item
        return sorted(
            (item for item in _every_item(table) if all(_equal(item.attrs.get(n), v) for n, v in conditions.items())),
            key=lambda x: _index_order(x, ranges),
        )
    key = (id(table), names, ranges)
    writes = _writes[0]  # read before listing: a write during the listing makes this list stale at once
    with _cache_lock:
        cached = _cache.get(key)
    if cached is None or cached[0] != writes or cached[1] is not table:
        # every partition of the index in one pass over the table: a listing asks for all 32
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for item in _every_item(table):
            found = [item.attrs.get(name) for name in names]
            if any(value is None for value in found):
                continue
            try:
                group = tuple(_group_key(value) for value in found)
            except TypeError:
                continue  # a set or a map as a key value: no key condition matches it
            groups.setdefault(group, []).append(item)
        for members in groups.values():
            members.sort(key=lambda x: _index_order(x, ranges))
        cached = (writes, table, groups)
        with _cache_lock:
            _cache[key] = cached
            _sorted.clear()  # sorts of lists made before this write
    return cached[2].get(wanted, [])


def _every_item(table: Any) -> Iterator[Any]:
    for stored in table.items.values():
        yield from (stored.values() if table.range_key_attr else (stored,))


def _group_key(value: Any) -> tuple[Any, ...]:
    """A dict key equal for two values exactly when moto finds them equal (``_equal``):
    strings and binaries by type and raw value, the rest as DynamoType hashes and compares
    them (type and cast value); TypeError for a value that cannot be hashed."""
    if value.type in ("S", "B") and isinstance(value.value, str | bytes):
        return ("raw", value.type, value.value)
    hash(value)
    return ("typed", value)


def _index_order(item: Any, ranges: tuple[str, ...]) -> tuple[Any, ...]:
    """About the order ``Table.sorted_items`` puts a partition in (range keys, then table key).

    Only a hint: moto sorts the partition itself, by a key unique to each item (it ends with
    the table key), so the result does not depend on this order; an already sorted list
    just makes its sort cheap (Timsort: one comparison per item).
    """
    keys = [item.attrs.get(name) for name in ranges]
    return (*((k is not None, str(k.value) if k is not None else "") for k in keys), str(item.hash_key.value))


def _equal(found: Any, expected: Any) -> bool:
    """``found == expected`` as moto compares them; strings and binaries by their raw value
    (moto's ``DynamoType.__eq__`` converts both values on every call: most of the cost)."""
    if found is None:
        return False
    if found.type == expected.type and found.type in ("S", "B"):
        return bool(found.value == expected.value)
    return bool(found == expected)


@contextmanager
def cached_module_list() -> Iterator[None]:
    """moto's server routes each request by ``moto.backends.list_of_moto_modules()``, which
    lists moto's package folder and stats every entry (~150 ``isdir`` calls) on EVERY
    request: ~10-20 ms a call on these machines, most of a listing page's time (33 calls).
    The folder does not change while the stack runs, so the list is read once here; the
    routing itself (``DomainDispatcherApplication.get_backend_for_host``) is unchanged.
    A local-stack speed-up like :func:`indexed_queries`: nothing deployed relies on it."""
    from moto import backends

    original = backends.list_of_moto_modules
    modules = tuple(original())
    backends.list_of_moto_modules = lambda: modules
    try:
        yield
    finally:
        backends.list_of_moto_modules = original


class _Unusual(Exception):
    """A value the fast path does not claim to serialize as moto does: moto's own path runs."""


def _text(value: Any) -> str:
    """A string attribute's value (a sort key); anything else is _Unusual."""
    if value.type != "S" or type(value.value) is not str:
        raise _Unusual
    return str(value.value)


def _as_text(inner: Any, _: Callable[[Any], str]) -> str:
    return inner if type(inner) is str else str(inner)


def _texts(inner: Any, _: Callable[[Any], str]) -> list[str]:
    if type(inner) is not list or any(v is None for v in inner):
        raise _Unusual
    return [v if type(v) is str else str(v) for v in inner]


def _blobs(inner: Any, encode_blob: Callable[[Any], str]) -> list[str]:
    if type(inner) is not list:
        raise _Unusual
    return [encode_blob(v) for v in inner]


def _flag(inner: Any, _: Callable[[Any], str]) -> bool:
    if type(inner) is not bool:
        raise _Unusual
    return inner


def _map(inner: Any, encode_blob: Callable[[Any], str]) -> dict[str, Any]:
    if type(inner) is not dict:
        raise _Unusual
    return {str(k): _attribute_value(v, encode_blob) for k, v in inner.items()}


def _list(inner: Any, encode_blob: Callable[[Any], str]) -> list[Any]:
    if type(inner) is not list:
        raise _Unusual
    return [_attribute_value(v, encode_blob) for v in inner]


_CONVERT: dict[str, Callable[[Any, Callable[[Any], str]], Any]] = {
    "S": _as_text,
    "N": _as_text,
    "B": lambda inner, encode_blob: encode_blob(inner),
    "SS": _texts,
    "NS": _texts,
    "BS": _blobs,
    "BOOL": _flag,
    "NULL": _flag,
    "M": _map,
    "L": _list,
}


def _attribute_value(value: Any, encode_blob: Callable[[Any], str]) -> dict[str, Any]:
    """One DynamoDB AttributeValue as moto's JSON serializer writes it (wire form).

    The same conversions, member by member, as ``BaseJSONSerializer`` applies through the
    botocore shape ``AttributeValue``: strings and numbers through ``str``, binaries
    base64-encoded, sets element-wise, lists and maps recursively, flags as they are.
    Anything else (several members, a None, an unknown member) is left to moto.
    """
    if type(value) is not dict or len(value) != 1:
        raise _Unusual
    ((kind, inner),) = value.items()
    convert = _CONVERT.get(kind)
    if convert is None or inner is None:
        raise _Unusual
    return {kind: convert(inner, encode_blob)}


@contextmanager
def fast_attribute_values() -> Iterator[None]:
    """moto (5.2) serializes every response through a generic, shape-driven serializer
    (``moto/core/serialize.py``) that looks each member up through alias providers: for
    DynamoDB items that is ~0.02 ms per attribute value, most of a Query's or a
    BatchGetItem's time (a listing page: ~210 of ~520 ms with 5,000 events).

    For the botocore shape ``AttributeValue`` only, this writes the wire form directly
    (:func:`_attribute_value`), with the conversions moto's JSON serializer applies; any
    value outside what that covers goes through moto's own path, as does every other shape.
    ``tests/unit/test_moto_index.py`` compares whole response bodies with and without it.
    A local-stack speed-up like :func:`indexed_queries`: nothing deployed relies on it."""
    from moto.core.serialize import BaseJSONSerializer

    original = BaseJSONSerializer.__dict__["_serialize_type_structure"]

    @functools.wraps(original)
    def structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue":
            try:
                converted = _attribute_value(value, self._base64)
            except _Unusual:
                pass
            else:
                self._default_serialize(serialized, converted, shape, key)
                return
        original(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = structure  # type: ignore[method-assign]
    try:
        yield
    finally:
        BaseJSONSerializer._serialize_type_structure = original  # type: ignore[method-assign]


@contextmanager
def cached_handler_methods() -> Iterator[None]:
    """moto's ``BaseResponse.call_action`` lists the handler class's methods
    (``inspect.getmembers``) on every request to check the action is one of them: ~0.4 ms
    a call here. A class's methods do not change while the stack runs, so each class is
    listed once. A local-stack speed-up like :func:`indexed_queries`."""
    from moto.core import responses

    original = responses.method_names_from_class
    listed: dict[Any, list[str]] = {}

    def method_names(clazz: Any) -> list[str]:
        names = listed.get(clazz)
        if names is None:
            names = listed[clazz] = original(clazz)
        return names

    responses.method_names_from_class = method_names
    try:
        yield
    finally:
        responses.method_names_from_class = original


@contextmanager
def speed_ups() -> Iterator[None]:
    """Every local-stack speed-up of moto in this module, for the block."""
    with ExitStack() as stack:
        stack.enter_context(indexed_queries())  # a Query walks its partition, not the table (same answers)
        stack.enter_context(cached_module_list())  # moto's router lists its modules once, not per request
        stack.enter_context(cached_handler_methods())  # and each handler class's methods once
        stack.enter_context(fast_attribute_values())  # items written to JSON directly (same bytes)
        yield
