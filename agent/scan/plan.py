"""What to compute for every file, and which sets to consult, for a mode and a set of filters.

Modes:

* ``full``: every digest kind any set needs, for every file; every set is consulted.
* ``quick``: only ``sample`` digests (at most 12 KiB read per file); only sample sets are consulted,
  the others are skipped (the report lists them). A skipped set whose items no sample set covers
  was checked against nothing, so such a scan is never ``no_match`` (``incomplete`` at best).
* ``auto`` (default): per filter, when every whole-file set is covered by a sample set of the same
  items (``ContrabandFilter.fully_covered_by_samples``), only the sample sets are consulted and the
  whole-file sets of a sample set's group are looked up only to confirm a sample hit (the whole file
  is then read); otherwise the filter is scanned as in ``full``.

In every mode a ``block`` set (4 KiB blocks of known files) has the role ``block_sample``: the block
sample of a raw device looks it up (``agent/scan/blocks.py``), never a file's digests. Its items
count as checked by the file scan only when a file-level set of the same item group is checked;
otherwise nothing checked the files against them and the scan is never ``no_match``.

Example::

    >>> from filters.builder import FilterBuilder
    >>> from filters.importers import DigestEntry
    >>> builder = FilterBuilder(name="demo")
    >>> builder.add(DigestEntry("md5", bytes(16), "known", "priority", from_content=True))
    >>> builder.add(DigestEntry("sample", bytes(32), "known", "priority", from_content=True))
    >>> plan = ScanPlan.build([builder.build_unsigned()], "auto")
    >>> plan.first_pass_kinds, plan.filters[0].roles
    (('sample',), {0: 'confirm_only', 1: 'consulted'})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from agent.scan.exclusions import ExclusionList
from agent.scan.report import Counts, FilterSummary, Hit, Problem, ScanReport, SetSummary, Timings, verdict_of
from filters.digests import BLOCK_KIND, SAMPLE_KIND, normalise_kinds
from filters.errors import UsageError
from filters.model import ContrabandFilter, SetMatch

Mode = Literal["auto", "quick", "full"]
MODES: tuple[Mode, ...] = ("auto", "quick", "full")
SetRole = Literal["consulted", "confirm_only", "skipped", "block_sample"]


@dataclass(frozen=True)
class FilterPlan:
    """One filter's part of a scan: the role of each of its sets and the kinds it needs."""

    contraband: ContrabandFilter
    roles: dict[int, SetRole]
    first_pass_kinds: tuple[str, ...]
    cover: dict[int, int] = field(default_factory=dict)  # whole-file set -> covering sample set

    def consulted(self, matches: list[SetMatch]) -> list[SetMatch]:
        return [m for m in matches if self.roles[m.filter_set.index] == "consulted"]

    def covering_sets(self, sample_set: int) -> list[int]:
        """The whole-file sets that a hit in ``sample_set`` can be confirmed with (not skipped)."""
        return sorted(w for w, s in self.cover.items() if s == sample_set and self.roles[w] != "skipped")

    def confirm_kinds(self, sample_set: int) -> tuple[str, ...]:
        kinds = {self.contraband.sets[w].kind for w in self.covering_sets(sample_set)}
        return normalise_kinds(kinds)

    def summary(self) -> FilterSummary:
        """The report's description of this filter and the role of each of its sets."""
        contraband = self.contraband
        unchecked = self.unchecked_sets()
        sets = tuple(
            SetSummary(
                s.index, s.kind, s.category, s.priority, s.count, s.item_group,
                self.roles[s.index], self.skipped_reason(s.index), s.index not in unchecked,
            )
            for s in contraband.sets
        )  # fmt: skip
        meta = contraband.metadata
        return FilterSummary(
            meta.filter_id,
            meta.name,
            contraband.source,
            contraband.signer_key_id,
            contraband.fully_covered_by_samples(),
            sets,
        )

    def unchecked_sets(self) -> list[int]:
        """Skipped sets whose items no consulted sample set covers, and block sets whose items no
        checked file-level set holds: nothing checked the files against them."""
        skipped = [i for i, role in self.roles.items() if role == "skipped" and i not in self.cover]
        return skipped + [
            i for i, role in self.roles.items() if role == "block_sample" and not self._files_hold(i)
        ]

    def _files_hold(self, block_set: int) -> bool:
        """True when a file-level set with the items of ``block_set`` (same item group) is checked."""
        group = self.contraband.sets[block_set].item_group
        return group is not None and any(
            s.item_group == group and self.roles[s.index] in ("consulted", "confirm_only")
            for s in self.contraband.sets
            if s.kind != BLOCK_KIND
        )

    def skipped_reason(self, index: int) -> str | None:
        role = self.roles[index]
        if role == "block_sample" and not self._files_hold(index):
            return (
                "looked up by the block sample of a device, not per file; no file-level set holds "
                "these items: files were not checked against them"
            )
        if role == "block_sample":
            return (
                "looked up by the block sample of a device, not per file (its items are checked as files too)"
            )
        if role == "skipped" and index not in self.cover:
            return "quick mode consults only sample sets, and no sample set covers these items: not checked"
        if role == "skipped":
            return f"quick mode consults only sample sets; its items are in sample set {self.cover[index]}"
        if role == "confirm_only":
            return f"covered by sample set {self.cover[index]}: looked up only to confirm its hits"
        return None


@dataclass(frozen=True)
class ScanPlan:
    mode: Mode
    filters: tuple[FilterPlan, ...]
    first_pass_kinds: tuple[str, ...]
    whole_file_first: bool  # the first pass already reads every file whole
    exclusions: ExclusionList | None = None  # reviewed false positives from the station

    @classmethod
    def build(
        cls, filters: Sequence[ContrabandFilter], mode: Mode, exclusions: ExclusionList | None = None
    ) -> ScanPlan:
        if mode not in MODES:
            raise UsageError("--mode", f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
        if not filters:
            raise UsageError("--filter", "no filter to scan with")
        plans = tuple(_plan_filter(f, mode) for f in filters)
        if mode == "quick" and not any(p.first_pass_kinds for p in plans):
            raise UsageError("--mode", "quick mode needs a sample set, and no loaded filter has one")
        kinds = normalise_kinds(k for p in plans for k in p.first_pass_kinds)
        return cls(mode, plans, kinds, any(k != SAMPLE_KIND for k in kinds), exclusions)

    @property
    def unchecked_sets(self) -> list[tuple[FilterPlan, int]]:
        """Sets no file was checked against (quick mode, items without a sample set): a scan with
        any is never ``no_match``."""
        return [(p, i) for p in self.filters for i in p.unchecked_sets()]

    def may_read_again(self) -> bool:
        """True when a sample hit can need a whole-file digest the first pass does not compute."""
        return any(
            set(p.confirm_kinds(s.index)) - set(self.first_pass_kinds)
            for p in self.filters
            for s in p.contraband.sets
            if s.kind == SAMPLE_KIND and p.roles[s.index] == "consulted"
        )

    def excluded(self, path: bytes, digests: Mapping[str, bytes]) -> Problem | None:
        """For a file that would be a hit, with all its computed ``digests``: the ``skipped`` entry
        (code ``excluded``) that replaces the hit when a station exclusion matches it, else None
        (agent/scan/exclusions.py: a strong whole-file digest must match)."""
        return None if self.exclusions is None else self.exclusions.excluded_entry(path, digests)

    def first_pass_matches(
        self, digests: Sequence[Mapping[str, bytes]]
    ) -> dict[int, list[tuple[FilterPlan, SetMatch]]]:
        """First-pass matches of many files in the consulted sets, by index into ``digests``."""
        found: dict[int, list[tuple[FilterPlan, SetMatch]]] = {}
        for plan in self.filters:
            for kind in plan.first_pass_kinds:
                files = [i for i, d in enumerate(digests) if kind in d]
                column = [digests[i][kind] for i in files]
                for filter_set, indices in plan.contraband.lookup_many(kind, column):
                    if plan.roles[filter_set.index] != "consulted":
                        continue
                    for j in indices:
                        found.setdefault(files[j], []).append((plan, SetMatch(filter_set, kind, column[j])))
        return found


def _plan_filter(contraband: ContrabandFilter, mode: Mode) -> FilterPlan:
    cover = contraband.sample_cover()
    roles: dict[int, SetRole] = {}
    has_samples = any(s.kind == SAMPLE_KIND for s in contraband.sets)
    for s in contraband.sets:
        if s.kind == BLOCK_KIND:
            roles[s.index] = "block_sample"
        elif s.kind == SAMPLE_KIND or mode == "full":
            roles[s.index] = "consulted"
        elif mode == "quick":
            roles[s.index] = "skipped"
        elif has_samples and contraband.fully_covered_by_samples():
            roles[s.index] = "confirm_only"
        else:
            roles[s.index] = "consulted"
    kinds = normalise_kinds(s.kind for s in contraband.sets if roles[s.index] == "consulted")
    return FilterPlan(contraband, roles, kinds, cover)


def scan_report(
    plan: ScanPlan,
    roots: tuple[bytes, ...],
    counts: Counts,
    hits: list[Hit],
    errors: list[Problem],
    skipped: list[Problem],
    timings: Timings,
    *,
    cancelled: bool,
    stopped_at_priority: bool,
    walked: bool,
) -> ScanReport:
    """The report of a finished scan, disk or phone: the one place that says whether it was
    complete. Never complete with an error, a cancel, a stop at the first priority hit, a file found
    and not read, a walk that did not end, or a set nothing was checked against."""
    complete = not (errors or cancelled or stopped_at_priority or counts.files_not_scanned)
    complete = complete and walked and not plan.unchecked_sets
    return ScanReport(
        verdict=verdict_of(hits, complete),
        complete=complete,
        cancelled=cancelled,
        stopped_at_first_priority=stopped_at_priority,
        mode=plan.mode,
        roots=roots,
        first_pass_kinds=plan.first_pass_kinds,
        filters=tuple(p.summary() for p in plan.filters),
        counts=counts,
        hits=hits,
        errors=errors,
        skipped=skipped,
        timings=timings,
    )
