"""What a hit consists of: which digests of a file matched which sets, and whether sample hits were
confirmed by a whole-file digest.

A sample-set match is ``confirmed`` when a whole-file set covering that sample set (same item
group) also holds the file's whole-file digest; ``False`` when those digests were computed and no
covering set holds them (the file shares size and sampled bytes with a known item but differs
elsewhere: still reported and counted as a match, since a sample collision with a known item is
itself worth an examiner's look); ``None`` when not checked.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.scan.plan import FilterPlan, ScanPlan
from agent.scan.report import MatchEvidence
from filters.digests import SAMPLE_KIND
from filters.model import SetMatch


def evidence_of(
    plan: ScanPlan, first_pass: list[tuple[FilterPlan, SetMatch]], digests: Mapping[str, bytes]
) -> tuple[MatchEvidence, ...]:
    """Evidence for one file from its first-pass matches and all its computed ``digests``."""
    evidence: list[MatchEvidence] = []
    for filter_plan in plan.filters:
        matches = [m for p, m in first_pass if p is filter_plan]
        if not matches:
            continue
        matches += _confirmation_matches(filter_plan, matches, digests)
        matched = {m.filter_set.index for m in matches}
        meta = filter_plan.contraband.metadata
        for m in sorted(matches, key=lambda m: m.filter_set.index):
            s = m.filter_set
            confirmed = None
            if m.kind == SAMPLE_KIND:
                covering = filter_plan.covering_sets(s.index)
                computed = [w for w in covering if filter_plan.contraband.sets[w].kind in digests]
                confirmed = any(w in matched for w in computed) if computed else None
            evidence.append(
                MatchEvidence(
                    meta.filter_id, meta.name, s.index, m.kind, s.category, s.priority, m.digest, confirmed
                )
            )
    return tuple(evidence)


# The digests every hit carries (read with its confirmation, or once more): what Project VIC tools
# and case systems match on (the VICS export, the station's report)
REPORT_KINDS = ("md5", "sha1", "sha256")


def kinds_to_confirm(
    first_pass: list[tuple[FilterPlan, SetMatch]], digests: Mapping[str, bytes]
) -> tuple[str, ...]:
    """The whole-file kinds a file must still be read for, to confirm its sample matches."""
    kinds = {k for p, m in first_pass if m.kind == SAMPLE_KIND for k in p.confirm_kinds(m.filter_set.index)}
    return tuple(sorted(kinds - set(digests)))


def kinds_for_hit(
    first_pass: list[tuple[FilterPlan, SetMatch]], digests: Mapping[str, bytes]
) -> tuple[str, ...]:
    """What a hit file is read whole for: its confirmation and the report's digests it lacks."""
    return tuple(sorted(set(kinds_to_confirm(first_pass, digests)) | (set(REPORT_KINDS) - set(digests))))


def _confirmation_matches(
    filter_plan: FilterPlan, matches: list[SetMatch], digests: Mapping[str, bytes]
) -> list[SetMatch]:
    """Matches in ``confirm_only`` sets that cover a sample set among ``matches``."""
    wanted = {
        w
        for m in matches
        if m.kind == SAMPLE_KIND
        for w in filter_plan.covering_sets(m.filter_set.index)
        if filter_plan.roles[w] == "confirm_only"
    }
    if not wanted:
        return []
    kinds = {filter_plan.contraband.sets[w].kind for w in wanted}
    found = filter_plan.contraband.lookup({k: digests[k] for k in kinds if k in digests})
    return [m for m in found if m.filter_set.index in wanted]
