"""A scan report, or a device's, as text for a person at a terminal (``fieldtriage scan``).

Every name is made printable (``agent.scan.names.shown``), so a report of hostile media is one line
per entry and displays as it is. Example::

    print_summary(report, sys.stdout)     # verdict, hits, counts, sets not consulted, problems
    print_device_summary(result, sys.stdout)  # partitions and what became of each, then the scan
"""

from __future__ import annotations

from typing import Any, TextIO

from agent.device_scan import DeviceScanResult
from agent.scan.names import shown
from agent.scan.progress import human_bytes
from agent.scan.report import ScanReport
from filters.errors import printable

VERDICT_LINES = {
    "priority_match": "PRIORITY MATCH",
    "match": "MATCH (other sets only)",
    "no_match": "NO MATCH (every file read)",
    "incomplete": "INCOMPLETE: no match in what was read, but not everything was read",
}
LISTED = 20  # errors and skipped entries shown by the human summary
# no match, and not a single regular file: green all the same, said so the analyst sees it
EMPTY = "empty (0 files)"
EMPTY_LINE = f"NO MATCH: {EMPTY}, no regular file to read"


def verdict_line(report: ScanReport) -> str:
    """The verdict in words; a no match without any regular file says ``empty (0 files)``."""
    if report.verdict == "no_match" and report.counts.files_seen == 0:
        return EMPTY_LINE
    return VERDICT_LINES[report.verdict]


def print_summary(report: ScanReport, out: TextIO) -> None:
    c = report.counts
    print(f"verdict: {verdict_line(report)}", file=out)
    for hit in report.hits:
        label = "priority" if hit.priority else "other"
        sets = ", ".join(f"{m.filter_name} set {m.set_index} {m.kind}" for m in hit.matches)
        note = {True: "", False: " [sample hit NOT confirmed by whole file]", None: " [sample only]"}
        print(
            f"  {label:8} {shown(hit.path)} ({', '.join(hit.categories)}; {sets}){note[hit.confirmed]}",
            file=out,
        )
    print(
        f"files: {c.files_seen:,} found, {c.files_read:,} read, {c.files_empty:,} empty (not looked up), "
        f"{human_bytes(c.bytes_seen)} found, {human_bytes(c.bytes_read)} read",
        file=out,
    )
    skipped_sets = [
        f"{f.name} set {s.index} ({s.kind}, {s.role})"
        for f in report.filters
        for s in f.sets
        if s.role != "consulted"
    ]
    print(f"mode: {report.mode}; digests: {', '.join(report.first_pass_kinds)}", file=out)
    if skipped_sets:
        print(f"  not consulted for every file: {'; '.join(skipped_sets)}", file=out)
    unchecked = [f"{f.name} set {s.index}" for f in report.filters for s in f.sets if not s.checked]
    if unchecked:
        print(
            f"  not checked at all ({report.mode} mode; no sample set covers their items): "
            f"{'; '.join(unchecked)}: no match needs --mode auto or full",
            file=out,
        )
    if report.cancelled or report.stopped_at_first_priority or c.files_not_scanned:
        why = "cancelled" if report.cancelled else "stopped at the first priority match"
        print(f"scan {why}: {plural(c.files_not_scanned, 'file')} found but not read", file=out)
    for title, problems in (("could not read", report.errors), ("skipped", report.skipped)):
        if problems:
            print(f"{title}: {len(problems):,}", file=out)
            for p in problems[:LISTED]:
                print(f"  {shown(p.path)}: {p.reason}", file=out)
            if len(problems) > LISTED:
                print(f"  ... {len(problems) - LISTED:,} more (see --json)", file=out)
    workers = report.timings.workers
    print(f"time: {report.timings.elapsed_s:.2f} s with {plural(workers, 'worker')}", file=out)


def plural(count: int, noun: str) -> str:
    """``plural(1, 'worker') == '1 worker'``, ``plural(1430, 'file') == '1,430 files'``."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def print_device_summary(result: DeviceScanResult, out: TextIO) -> None:
    if result.identity is not None and result.identity.kind == "phone":
        print(
            f"phone: {result.identity.label()}, {result.scheme or 'usb'} at {printable(result.source)}",
            file=out,
        )
    else:
        print(
            f"device: {printable(result.source)}, {human_bytes(result.size)}, table {result.scheme}", file=out
        )
    for part in result.partitions:
        print(_partition_line(part), file=out)
    for storage in result.storages:
        capacity = storage.get("capacity")
        size = f", {human_bytes(capacity)}" if isinstance(capacity, int) else ""
        print(f"  storage {printable(str(storage['description']))}{size}: read over MTP/PTP", file=out)
    for problem in result.device_problems:
        print(f"  not checked: {printable(problem)}", file=out)
    for note in result.device_notes:
        print(f"  note: {printable(note)}", file=out)
    for problem in result.cleanup_problems:
        print(f"  cleanup: {printable(problem)}", file=out)
    if result.report is not None:
        print_summary(result.report, out)
    print_blocks(result, out)
    verdict = EMPTY_LINE if result.empty else VERDICT_LINES[result.verdict]
    print(f"device verdict: {verdict}", file=out)


def print_blocks(result: DeviceScanResult, out: TextIO) -> None:
    """The block sample of a device: its regions, hits and confidence, then the statement."""
    blocks = result.blocks
    if blocks is None:
        return
    if blocks.skipped:
        print(f"blocks: not sampled: {printable(blocks.skipped)}", file=out)
    else:
        print(
            f"blocks: {blocks.units_read:,} of {blocks.units:,} places sampled (seed {blocks.seed}), "
            f"{human_bytes(blocks.bytes_read)} read in {blocks.seconds:.2f} s; 1 in {blocks.subsample} "
            f"blocks of {blocks.dense_items:,} dense items in {plural(blocks.block_sets, 'block set')}",
            file=out,
        )
        for region in blocks.regions:
            grid = f"{region.fs}, {region.unit:,}-byte units" if region.fs else "no filesystem known, 4 KiB"
            files = f"; files {region.files}" if region.files else ""
            only = "; covered by the block sample only" if region.files.startswith("not checked") else ""
            where = f"{region.label} ({grid} from offset {region.origin:,})"
            print(f"  {where}: {region.units:,} places{files}{only}", file=out)
        for hit in sorted(blocks.hits, key=lambda h: h.offset)[:LISTED]:
            label = "priority" if hit.is_priority else "other"
            print(f"  {label:8} {printable(hit.describe())} ({printable(hit.region)})", file=out)
        if len(blocks.hits) > LISTED:
            print(f"  ... {len(blocks.hits) - LISTED:,} more known blocks (see --json)", file=out)
        if blocks.read_errors:
            errors = plural(blocks.read_errors, "read error")
            print(f"  {errors} (those places count as not sampled)", file=out)
        print(f"  {printable(blocks.statement())}", file=out)
    print(f"statement: {printable(result.statement())}", file=out)


def _partition_line(part: dict[str, Any]) -> str:
    fs = part["fs_type"] or "no filesystem"
    label = f" '{part['label']}'" if part["label"] else ""
    state = f"mounted read-only ({part['driver']}: {part['options']})" if part["mounted"] else part["problem"]
    line = f"  partition {part['number']}: {fs}{label}, {human_bytes(part['size'])}: {state}"
    if part.get("needs_recovery"):
        replayed = part.get("replayed")
        view = f"p{part['number']}-replayed"
        line += f"\n    {part['recovery']}: " + (
            f"also read replayed onto a copy-on-write layer ({replayed['layer']}), as {view}"
            if replayed
            else "the replayed state could not be read (see 'not checked')"
        )
    return "\n".join(printable(piece) for piece in line.split("\n"))
