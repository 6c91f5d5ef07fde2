"""Indexes over the stored jobs, so a page of ``GET /v1/jobs`` costs about the page.

The names are a sorted list (the ``name`` order, case-sensitive like the store's keys).
Every other sortable field has an order of the value it compares (strings lower-cased,
as BuntDB's JSON index does; a missing time below every time) with the name as the
tie-break: names ascend within a tie in both directions, as before (a stable sort of the
name-ordered jobs, reversed or not). A field of mostly distinct values keeps sorted
``(value, name)`` pairs (:class:`_Pairs`); one of few values keeps each value's names
(:class:`_Groups`). The filters are sets of names: one per metadata ``key=value``, per
status and per ``disabled`` value.

A page without filters is a slice of an order. With filters the total is the size
of the intersection (computed from the smallest set, never from all jobs); the page then
comes from walking the sort order and testing membership when the matches are dense, or
from sorting just the matches when they are few. ``q`` (a substring of the name or
display name) has no index: it is tested on the candidates the other filters leave,
which is every job when it is the only filter.

:class:`JobIndex` sees every change as an old/new pair of jobs (``StoreState._put_job``
and ``_remove_job``); a stored job is never mutated in place, so the old job still
yields the entries it was indexed under.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

from sortedcontainers import SortedList

if TYPE_CHECKING:
    from core.jobs.model import Job

__all__ = ["JobIndex", "sort_value"]


class _Lowest:
    """Below every value (a nullable time that is None sorts first)."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return other is not self

    def __le__(self, other: object) -> bool:
        return True

    def __gt__(self, other: object) -> bool:
        return False

    def __ge__(self, other: object) -> bool:
        return other is self

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<lowest>"


class _Highest:
    """Above every name: ``(value, _HIGHEST)`` bisects past all ties of ``value``."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return other is self

    def __gt__(self, other: object) -> bool:
        return other is not self

    def __ge__(self, other: object) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return 1

    def __repr__(self) -> str:
        return "<highest>"


_LOWEST: Final = _Lowest()
_HIGHEST: Final = _Highest()
_EMPTY: Final[frozenset[str]] = frozenset()

# Matches denser than this are found by walking the sort order; sparser ones are sorted.
# Sorting one match costs about this many steps of the walk (key, compare, build).
_SORT_COST = 4


def sort_value(field: str, job: Job) -> Any:
    """What the order by ``field`` compares (the tie-break by name aside)."""
    value = getattr(job, field)
    if value is None:
        return _LOWEST
    if isinstance(value, str):
        lowered = value.lower()
        return value if lowered == value else lowered  # keep the job's string when equal
    return value


def _flag(value: object) -> str:
    # What `disabled=true|false` compares with.
    return "true" if value is True else "false" if value is False else str(value).lower()


def _filter_keys(job: Job) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = [("status", job.status), ("disabled", _flag(job.disabled))]
    if job.metadata:
        keys.extend(("metadata", k, v) for k, v in job.metadata.items())
    return keys


class _Pairs:
    """One order as a sorted list of ``(value, name)``: for fields whose values are
    mostly distinct (a position is found by bisecting, whatever the page). The names
    without a value (a time not set yet: they sort first) are a list of their own, at
    8 bytes a name instead of a pair's 64."""

    __slots__ = ("_order", "_unset")

    def __init__(self, pairs: Iterable[tuple[Any, str]] = ()) -> None:
        unset: list[str] = []
        valued: list[tuple[Any, str]] = []
        for pair in pairs:
            if pair[0] is _LOWEST:
                unset.append(pair[1])
            else:
                valued.append(pair)
        self._order: Any = SortedList(valued)
        self._unset: Any = SortedList(unset)

    def add(self, value: Any, name: str) -> None:
        if value is _LOWEST:
            self._unset.add(name)
        else:
            self._order.add((value, name))

    def remove(self, value: Any, name: str) -> None:
        if value is _LOWEST:
            self._unset.remove(name)
        else:
            self._order.remove((value, name))

    def names(self, start: int, descending: bool) -> Iterator[str]:
        unset, valued = len(self._unset), len(self._order)
        if not descending:
            if start < unset:
                yield from self._unset.islice(start)
            yield from self._valued(max(start - unset, 0))
            return
        if start < valued:
            yield from self._descending(start)
        yield from self._unset.islice(max(start - valued, 0))  # ties: names ascending

    def _valued(self, start: int) -> Iterator[str]:
        for _, name in self._order.islice(start):
            yield name

    def _descending(self, start: int) -> Iterator[str]:
        # Values from the highest down, each value's names ascending: a group of equal
        # values is found by bisecting, so a position is reached without walking to it.
        order = self._order
        size = len(order)
        position = start
        while position < size:
            value = order[size - 1 - position][0]
            low = order.bisect_left((value,))
            high = order.bisect_left((value, _HIGHEST))
            # The group holds descending positions [size - high, size - low).
            skip = position - (size - high)
            for _, name in order.islice(low + skip, high):
                yield name
            position = size - low


class _Groups:
    """One order as the sorted distinct values, each with its names (a lone name as
    itself, more as a sorted list): for fields with few distinct values (schedules,
    counters), where a pair per job would cost 64 bytes and a name in a group 8. A
    position is found by walking the groups before it."""

    __slots__ = ("_groups", "_values")

    def __init__(self, pairs: Iterable[tuple[Any, str]] = ()) -> None:
        grouped: defaultdict[Any, list[str]] = defaultdict(list)
        for value, name in pairs:
            grouped[value].append(name)
        self._values: Any = SortedList(grouped)
        self._groups: dict[Any, Any] = {
            value: names[0] if len(names) == 1 else SortedList(names)
            for value, names in grouped.items()
        }

    def add(self, value: Any, name: str) -> None:
        group = self._groups.get(value)
        if group is None:
            self._groups[value] = name
            self._values.add(value)
        elif type(group) is str:
            self._groups[value] = SortedList((group, name))
        else:
            group.add(name)

    def remove(self, value: Any, name: str) -> None:
        group = self._groups[value]
        if type(group) is str:
            if group != name:
                raise ValueError(f"{name!r} is not indexed under {value!r}")
            del self._groups[value]
            self._values.remove(value)
        else:
            group.remove(name)
            if len(group) == 1:
                self._groups[value] = group[0]

    def names(self, start: int, descending: bool) -> Iterator[str]:
        values = reversed(self._values) if descending else iter(self._values)
        for value in values:
            group = self._groups[value]
            if type(group) is str:
                if start:
                    start -= 1
                else:
                    yield group
                continue
            if start >= len(group):
                start -= len(group)
                continue
            yield from group.islice(start)  # names ascending in both directions
            start = 0


# Fields with few distinct values in practice.
_GROUPED_FIELDS = frozenset({"schedule", "success_count", "error_count"})


def _order_for(field: str, pairs: Iterable[tuple[Any, str]] = ()) -> _Pairs | _Groups:
    return _Groups(pairs) if field in _GROUPED_FIELDS else _Pairs(pairs)


class JobIndex:
    def __init__(self, fields: Iterable[str]) -> None:
        # `name` is ordered by the names themselves (case-sensitive, as the store's keys).
        self._fields = tuple(f for f in fields if f != "name")
        self.names: Any = SortedList()
        self._by: dict[str, _Pairs | _Groups] = {f: _order_for(f) for f in self._fields}
        self._sets: dict[tuple[str, ...], set[str]] = {}

    def __len__(self) -> int:
        return len(self.names)

    # -- changes ---------------------------------------------------------------------------

    def put(self, old: Job | None, new: Job) -> None:
        name = new.name
        if old is None:
            self.names.add(name)
            for field, order in self._by.items():
                order.add(sort_value(field, new), name)
            for key in _filter_keys(new):
                self._sets.setdefault(key, set()).add(name)
            return
        for field, order in self._by.items():
            raw_before, raw_after = getattr(old, field), getattr(new, field)
            if raw_before is raw_after or raw_before == raw_after:
                continue  # the usual case (SetNext changes one field): no lower(), no bisect
            before, after = sort_value(field, old), sort_value(field, new)
            if before != after:
                order.remove(before, name)
                order.add(after, name)
        if (
            old.status == new.status
            and old.disabled == new.disabled
            and (old.metadata is new.metadata or old.metadata == new.metadata)
        ):
            return  # the filters' keys are the same (SetNext, a counter)
        before_keys, after_keys = _filter_keys(old), _filter_keys(new)
        if before_keys != after_keys:
            for key in set(before_keys) - set(after_keys):
                self._discard(key, name)
            for key in set(after_keys) - set(before_keys):
                self._sets.setdefault(key, set()).add(name)

    def remove(self, job: Job) -> None:
        name = job.name
        self.names.remove(name)
        for field, order in self._by.items():
            order.remove(sort_value(field, job), name)
        for key in _filter_keys(job):
            self._discard(key, name)

    def _discard(self, key: tuple[str, ...], name: str) -> None:
        members = self._sets.get(key)
        if members is not None:
            members.discard(name)
            if not members:
                del self._sets[key]

    def rebuild(self, jobs: Mapping[str, Job]) -> None:
        """Index ``jobs`` afresh (a restored snapshot): one sort per field."""
        # Millions of new tuples would set off full collections over the whole state
        # (seconds at 1M jobs) while none of them can be garbage.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._rebuild(jobs)
        finally:
            if collecting:
                gc.enable()

    def _rebuild(self, jobs: Mapping[str, Job]) -> None:
        self.names = SortedList(jobs)
        self._by = {
            f: _order_for(f, ((sort_value(f, job), name) for name, job in jobs.items()))
            for f in self._fields
        }
        # Lists first, each made a set once: far cheaper than growing millions of sets.
        grouped: defaultdict[tuple[str, ...], list[str]] = defaultdict(list)
        for name, job in jobs.items():
            grouped["status", job.status].append(name)
            grouped["disabled", _flag(job.disabled)].append(name)
            if job.metadata:
                for key, value in job.metadata.items():
                    grouped["metadata", key, value].append(name)
        self._sets = {key: set(names) for key, names in grouped.items()}

    # -- queries ---------------------------------------------------------------------------

    def filter_sets(
        self, metadata: Mapping[str, str], status: str | None, disabled: str | None
    ) -> list[set[str] | frozenset[str]]:
        """The name sets a job must be in, smallest first (an empty one: no match)."""
        keys: list[tuple[str, ...]] = [("metadata", k, v) for k, v in metadata.items()]
        if status is not None:
            keys.append(("status", "" if status == "untriggered" else status))
        if disabled is not None:
            keys.append(("disabled", disabled))
        found: list[set[str] | frozenset[str]] = [self._sets.get(key, _EMPTY) for key in keys]
        found.sort(key=len)
        return found

    def ordered(self, sort: str, descending: bool, start: int = 0) -> Iterator[str]:
        """Every name in the order of ``sort``, from position ``start`` on."""
        if sort == "name":
            if descending:
                stop = len(self.names) - start
                return iter(self.names.islice(0, max(stop, 0), reverse=True))
            return iter(self.names.islice(start))
        return self._by[sort].names(start, descending)

    def sort_names(
        self, names: Iterable[str], jobs: Mapping[str, Job], sort: str, descending: bool
    ) -> list[str]:
        """``names`` in the order :meth:`ordered` gives them (for a few names)."""
        if sort == "name":
            return sorted(names, reverse=descending)
        ordered = sorted(names)
        ordered.sort(key=lambda n: sort_value(sort, jobs[n]), reverse=descending)
        return ordered

    def page(
        self,
        jobs: Mapping[str, Job],
        sort: str,
        descending: bool,
        metadata: Mapping[str, str],
        status: str | None,
        disabled: str | None,
        q: str,
        window: Callable[[int], tuple[int, int]],
    ) -> tuple[list[str], int]:
        """The names of one page and the filtered total. ``window(total)`` gives the
        page's ``(start, end)`` once the total is known (and raises for a bad range)."""
        sets = self.filter_sets(metadata, status, disabled)
        size = len(self.names)
        if not sets and not q:
            start, end = window(size)
            return list(islice(self.ordered(sort, descending, start), end - start)), size
        members: Collection[str]
        if not sets:
            # q alone. No index for a substring: every job is a candidate.
            members = {n for n, job in jobs.items() if q in n or q in job.displayname}
        else:
            if not sets[0]:
                members = _EMPTY
            elif len(sets) == 1:
                members = sets[0]
            else:
                members = sets[0].intersection(*sets[1:])  # walks the smallest, in C
            if q:  # tested on the candidates the other filters leave
                members = {n for n in members if q in n or q in jobs[n].displayname}
        total = len(members)
        start, end = window(total)
        if end <= start:
            return [], total
        # Walking the order visits about end * size / total names; sorting costs total.
        if total * total * _SORT_COST <= end * size:
            return self.sort_names(members, jobs, sort, descending)[start:end], total
        found: list[str] = []
        skipped = 0
        for name in self.ordered(sort, descending):
            if name in members:
                if skipped < start:
                    skipped += 1
                    continue
                found.append(name)
                if len(found) == end - start:
                    break
        return found, total
