"""The block sample on a scan page: what the kiosk's sample of the raw device read and what it found.

The kiosk's ``scan`` record carries ``blocks`` (the sample: what it aimed for, read and can say,
and the regions of the device it read on each filesystem's grid), ``block_hits`` (known blocks, by
device offset; at most 10,000 listed, all counted) and ``statement`` (the verdict in words with what
backs it): docs/report.md, "Block sample"; docs/block-sampling.md for the maths. A block hit names
no file: it is a 4 KiB block of the device found in a filter's block set, so it has an offset, a
region (partition) and the block's BLAKE3, never a path.

``station.report.scan_view`` calls ``block_sample_view``; the scan page shows a "Block sample"
section when the record has ``blocks`` and a "Known blocks found" section when it has block hits.
Every value is hostile and made into words here with the report's own helpers (``text``,
``number``, ``words``, ``size_text``), then made printable and escaped by the templates.

Example::

    >>> from station.scans import Scan
    >>> hit = {"offset": 1_114_112, "region": "partition 1", "priority": "priority"}
    >>> scan = Scan("k" * 32, "0.1", verdict="priority_match", block_hits=[hit],
    ...             statement="priority match: 1 known block found")
    >>> view = block_sample_view(scan, {})
    >>> view["statement"], view["hits"][0]["offset"], view["hits"][0]["offset_mib"]
    ('priority match: 1 known block found', '1,114,112', '1.06 MiB')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from station.page_words import PRIORITY_WORDS, Fact, number, size_text, span_text, text, words
from station.scans import Scan

MiB = 1 << 20
BLOCK_ONLY = "covered by the block sample only"
BLOCK_MEANING = {
    "priority_match": (
        "A known block of the device (not a file the filesystem lists) matched a set of priority class: "
        "see “Known blocks found”."
    ),
    "match": (
        "A known block of the device (not a file the filesystem lists) matched a set of the other "
        "class: see “Known blocks found”."
    ),
}


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _fraction(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0 <= value <= 1 else None


def percent(value: object) -> str:
    """``99%``, ``99.5%``: rounded down to 0.1% as the kiosk does; other values as text."""
    share = _fraction(value)
    if share is None:
        return text(value, 200)
    tenths = math.floor(share * 1000 + 1e-9)
    return f"{tenths // 10}%" if tenths % 10 == 0 else f"{tenths / 10:.1f}%"


def mib(value: object) -> str:
    """``20 MiB``, ``256 KiB`` (the statement's sizes); other values as text."""
    size = _int(value)
    if size is None or size < 0 or size.bit_length() > 80:
        return size_text(value)
    if size < MiB:
        return f"{size / 1024:g} KiB"
    return f"{size / MiB:g} MiB" if size % (MiB // 16) == 0 else f"{size / MiB:,.2f} MiB"


def offset_mib(value: object) -> str:
    """A device offset in MiB beside its bytes: ``4,595.91 MiB``."""
    offset = _int(value)
    if offset is None or offset < 0 or offset.bit_length() > 80:
        return ""
    return f"{offset / MiB:,.2f} MiB"


def _seconds(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e9:
        return span_text(int(value * 1e9))
    return text(value, 100)


def block_sample_view(scan: Scan, record: Mapping[str, Any]) -> dict[str, Any]:
    """What the scan page shows of the block sample: ``statement`` (the record's, for the summary),
    ``facts`` and ``regions`` (empty without a sample), ``hits`` and ``not_listed``; never raises."""
    blocks = _dict(scan.blocks) or _dict(record.get("blocks"))
    hits = _dicts(scan.block_hits) or _dicts(record.get("block_hits"))
    statement = scan.statement if isinstance(scan.statement, str) else record.get("statement")
    counted = _int(blocks.get("hits"))
    total = counted if counted is not None and counted >= len(hits) else len(hits)
    not_listed = _int(blocks.get("hits_not_listed"))
    return {
        "statement": text(statement, 2000),
        "facts": sample_facts(blocks) if blocks else [],
        "regions": regions_view(blocks.get("regions")),
        "hits": hits_view(hits),
        "total": number(total) if hits else "",
        "not_listed": number(not_listed) if not_listed else "",
        "meaning": BLOCK_MEANING.get(scan.verdict, "") if hits and not scan.hits else "",
    }


def sample_facts(blocks: Mapping[str, Any]) -> list[Fact]:
    """The sample in words: its statement, what it read, how long, why it stopped."""
    facts = [Fact("Statement", text(blocks.get("statement"), 2000) or "not journaled")]
    if blocks.get("skipped") is not None:
        facts.append(Fact("No sample taken", text(blocks.get("skipped"), 1000)))
    if "target_bytes" in blocks or "confidence_target" in blocks:
        facts.append(
            Fact(
                "Aim",
                f"a known item of {mib(blocks.get('target_bytes'))} found with probability "
                f"{percent(blocks.get('confidence_target'))}",
            )
        )
    if blocks.get("probability") is not None:
        reached = f"{percent(blocks.get('probability'))} for {mib(blocks.get('target_bytes'))}"
        probability, aim = _fraction(blocks.get("probability")), _fraction(blocks.get("confidence_target"))
        if probability is not None and aim is not None and probability < aim:
            size = blocks.get("size_at_confidence")
            reached += f"; {percent(aim)} for {mib(size) if size is not None else 'no size'}"
        facts.append(Fact("Probability reached", reached))
    if "sampled" in blocks or "planned" in blocks:
        sampled = f"{number(blocks.get('sampled'))} of {number(blocks.get('planned'))} planned"
        counted = blocks.get("counted")
        if counted is not None and counted != blocks.get("sampled"):
            sampled += f" ({number(counted)} in completed passes: the probability is for these)"
        facts.append(Fact("Blocks sampled", sampled))
    if "units" in blocks:
        facts.append(Fact("Places a 4 KiB block of a file can be", number(blocks.get("units"))))
    if "bytes_read" in blocks:
        facts.append(Fact("Bytes read", size_text(blocks.get("bytes_read"))))
    if "seconds" in blocks:
        took = _seconds(blocks.get("seconds"))
        if blocks.get("time_budget_s") is not None:
            took += f" (time budget {_seconds(blocks.get('time_budget_s'))})"
        facts.append(Fact("Time", took))
    if blocks.get("stopped") is not None:
        facts.append(Fact("Stopped", text(blocks.get("stopped"), 1000)))
    for label, key in (
        ("Reads that failed (not sampled)", "read_errors"),
        ("Blank blocks (one repeated byte or pattern: not looked up)", "blank"),
        ("Blocks looked up", "windows_looked_up"),
    ):
        if key in blocks and (key == "windows_looked_up" or blocks.get(key) != 0):
            facts.append(Fact(label, number(blocks.get(key))))
    if "block_sets" in blocks:
        facts.append(Fact("Block sets in the filters", number(blocks.get("block_sets"))))
    if "items" in blocks:
        dense = f"{number(blocks.get('dense_items'))} of them dense (the statement is about dense items)"
        facts.append(Fact("Known items in them", f"{number(blocks.get('items'))}, {dense}"))
    subsample = blocks.get("subsample")
    if subsample is not None and subsample != 1:
        facts.append(Fact("Subsampling", f"1 block in {number(subsample)} of each known item"))
    if "hits" in blocks:
        found = number(blocks.get("hits"))
        if _int(blocks.get("priority_hits")):
            found += f" ({number(blocks.get('priority_hits'))} of priority class)"
        facts.append(Fact("Known blocks found", found))
    if blocks.get("seed") is not None:
        repeat = "fieldtriage scan --block-seed repeats the sample"
        facts.append(Fact("Random seed", number(blocks.get("seed")), detail=repeat, mono=True))
    return facts


def regions_view(regions: object) -> list[dict[str, str]]:
    """Each region the sample read: a partition on its filesystem's grid, or the space outside."""
    out = []
    for region in _dicts(regions):
        files = text(region.get("files"), 2000)
        only = files.startswith("not checked")
        unit = region.get("unit")
        grid = f"{number(unit)} bytes" if _int(unit) is not None else text(unit, 100)
        if region.get("origin") is not None:
            grid += f" from byte {number(region.get('origin'))}"
        phases = _int(region.get("windows_per_unit"))
        if phases is not None and phases > 1:
            grid += f", {number(phases)} windows per place"
        size = region.get("size")
        out.append(
            {
                "label": text(region.get("label"), 300) or "region without a name",
                "filesystem": text(region.get("fs"), 100) or "none known",
                "grid": grid,
                "where": f"{size_text(size).split(' (')[0]} from byte {number(region.get('start'))}"
                if _int(size) is not None
                else "",
                "units": number(region.get("units")),
                "files": f"{files}: {BLOCK_ONLY}" if only else files or "no files (outside every partition)",
                "css": "block-only" if only else "",
            }
        )
    return out


def hits_view(hits: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for number_shown, hit in enumerate(hits, start=1):
        region = text(hit.get("region"), 300)
        partition = hit.get("partition")
        if partition is not None and text(partition, 40) not in region:
            region += f" (partition {text(partition, 40)})"
        out.append(
            {
                "number": number(number_shown),
                "offset": number(hit.get("offset")),
                "offset_mib": offset_mib(hit.get("offset")),
                "region": region,
                "filter": text(hit.get("filter_name"), 300) or text(hit.get("filter_id"), 200),
                "filter_id": text(hit.get("filter_id"), 200),
                "set": text(hit.get("set"), 40),
                "category": text(hit.get("category"), 300),
                "priority": words(PRIORITY_WORDS, hit.get("priority")),
                "css": "priority" if hit.get("priority") == "priority" else "other",
                "digest": text(hit.get("digest"), 300),
            }
        )
    return out
