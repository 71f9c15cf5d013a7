"""engine: verdicts and evidence in each mode, confirmed and unconfirmed sample hits."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from agent.scan import Scanner
from agent.scan.summary import print_summary
from filters.digests import SAMPLE_CHUNK, SAMPLE_WHOLE_LIMIT, digest_path
from filters.importers import DigestEntry

from .conftest import FilterFactory, tree_size, write_random

Tree = Callable[..., tuple[Path, list[Path]]]


def test_auto_mode_reads_samples_and_confirms_hits(filters: FilterFactory, known_tree: Tree) -> None:
    root, known = known_tree()
    report = Scanner([filters.make(known)], mode="auto", workers=2).scan([root])
    assert report.verdict == "priority_match" and report.exit_status == 1
    assert report.first_pass_kinds == ("sample",)
    assert [h.path for h in report.hits] == sorted(str(p).encode() for p in known)
    for hit in report.hits:
        assert hit.confirmed is True
        assert {m.kind for m in hit.matches} == {"sample", "blake3"}
        assert all(m.confirmed for m in hit.matches if m.kind == "sample")
        # the confirmation read also gives what Project VIC tools match on
        path = Path(hit.path.decode())
        assert {k: hit.digests[k] for k in ("md5", "sha1", "sha256")} == digest_path(
            path, ("md5", "sha1", "sha256")
        )
    assert report.counts.files_confirmed == 2
    # clean files cost at most 12 KiB each; the two hits are read whole once more to confirm
    budget = SAMPLE_WHOLE_LIMIT * report.counts.files_read + sum(p.stat().st_size for p in known)
    assert report.counts.bytes_read <= budget
    assert report.counts.bytes_read < tree_size(root) / 2


def test_an_unconfirmed_sample_hit_still_counts_as_a_match(filters: FilterFactory, tmp_path: Path) -> None:
    known = write_random(tmp_path / "known" / "k.jpg", 200_000, 5)
    data = bytearray(known.read_bytes())
    data[2 * SAMPLE_CHUNK] ^= 0xFF  # outside the three sampled blocks
    variant = tmp_path / "device" / "DCIM" / "v.jpg"
    variant.parent.mkdir(parents=True)
    variant.write_bytes(data)
    assert digest_path(variant, ["sample"]) == digest_path(known, ["sample"])
    f = filters.make([known])
    report = Scanner([f], mode="auto", workers=1).scan([tmp_path / "device"])
    assert report.verdict == "priority_match"
    (hit,) = report.hits
    assert hit.confirmed is False
    assert [(m.kind, m.confirmed) for m in hit.matches] == [("sample", False)]
    assert hit.to_json()["matches"][0]["confirmed"] is False


def test_quick_mode_consults_sample_sets_only(filters: FilterFactory, known_tree: Tree) -> None:
    root, known = known_tree()
    report = Scanner([filters.make(known, ("sample", "md5"))], mode="quick", workers=2).scan([root])
    assert report.verdict == "priority_match"
    assert report.counts.files_confirmed == 0
    assert all(h.confirmed is None and [m.kind for m in h.matches] == ["sample"] for h in report.hits)
    sets = report.to_json()["filters"][0]["sets"]
    assert sorted((s["kind"], s["role"]) for s in sets) == [("md5", "skipped"), ("sample", "consulted")]
    assert report.counts.bytes_read <= SAMPLE_WHOLE_LIMIT * report.counts.files_read


def test_full_mode_computes_every_kind_for_every_file(filters: FilterFactory, known_tree: Tree) -> None:
    root, known = known_tree()
    f = filters.make(known, ("sample", "md5", "sha256"))
    report = Scanner([f], mode="full", workers=2).scan([root])
    assert report.first_pass_kinds == ("md5", "sha256", "sample")
    assert report.counts.bytes_read == tree_size(root)
    assert report.verdict == "priority_match"
    for hit in report.hits:
        assert {m.kind for m in hit.matches} == {"md5", "sha256", "sample"} and hit.confirmed is True
        assert hit.digests == digest_path(hit.path.decode(), ["md5", "sha256", "sample"])


def test_other_sets_only_give_match_and_clean_trees_no_match(
    filters: FilterFactory, known_tree: Tree
) -> None:
    root, known = known_tree()
    other = filters.make(known, priority="other", category="adult")
    report = Scanner([other], workers=2).scan([root])
    assert report.verdict == "match" and report.exit_status == 1
    assert report.hits[0].categories == ["adult"] and not report.hits[0].priority
    unrelated = filters.make([write_random(root.parent / "elsewhere" / "x", 5000, 99)])
    clean = Scanner([unrelated], workers=2).scan([root])
    assert clean.verdict == "no_match" and clean.exit_status == 0 and clean.complete
    assert clean.counts.files_seen == 34 and clean.counts.files_empty == 1 and clean.counts.files_read == 33


def test_several_filters_each_with_its_own_salt(filters: FilterFactory, known_tree: Tree) -> None:
    root, known = known_tree()
    first = filters.make(known[:1], ("sample", "blake3"), category="a")
    second = filters.make(known[1:], ("sha1",), category="b", priority="other", from_content=False)
    assert first.salt != second.salt
    report = Scanner([first, second], mode="auto", workers=2).scan([root])
    assert report.first_pass_kinds == ("sha1", "sample")
    by_path = {h.path.rsplit(b"/", 1)[1]: h for h in report.hits}
    assert by_path[b"IMG_0001.jpg"].categories == ["a"] and by_path[b"IMG_0001.jpg"].priority
    assert by_path[b"clip.mp4"].categories == ["b"] and not by_path[b"clip.mp4"].priority
    assert {m.filter_id for h in report.hits for m in h.matches} == {
        first.metadata.filter_id,
        second.metadata.filter_id,
    }


def test_zero_length_files_are_never_looked_up(filters: FilterFactory, tmp_path: Path) -> None:
    root = tmp_path / "device"
    root.mkdir()
    (root / "empty.jpg").write_bytes(b"")
    empty = digest_path(root / "empty.jpg", ["blake3", "sample"])
    f = filters.make(
        [write_random(tmp_path / "k", 100, 1)],
        extra=[DigestEntry(k, v, "known", "priority") for k, v in empty.items()],
    )
    report = Scanner([f], mode="full", workers=1).scan([root])
    assert report.verdict == "no_match"
    assert report.counts.files_empty == 1 and report.counts.files_read == 0


def test_a_single_file_can_be_scanned(filters: FilterFactory, known_tree: Tree) -> None:
    _, known = known_tree()
    report = Scanner([filters.make(known)], workers=1).scan([known[0]])
    assert report.verdict == "priority_match" and report.hits[0].path == bytes(str(known[0]), "utf-8")


def test_quick_mode_with_sets_no_sample_covers_is_never_no_match(
    filters: FilterFactory, known_tree: Tree
) -> None:
    """A VICS-style import: md5 of the known items, no sample set for them (only for another item).
    Quick mode consults the sample set alone, so the known items were checked against nothing."""
    root, known = known_tree()
    other = write_random(root.parent / "elsewhere" / "x", 5000, 99)
    sample_of_other = [
        DigestEntry(k, v, "known", "priority") for k, v in digest_path(other, ["sample"]).items()
    ]
    f = filters.make(known, ("md5",), from_content=False, extra=sample_of_other)
    report = Scanner([f], mode="quick", workers=1).scan([root])
    assert report.verdict == "incomplete" and report.exit_status == 3 and not report.complete
    sets = {s["kind"]: s for s in report.to_json()["filters"][0]["sets"]}
    assert sets["md5"]["role"] == "skipped" and sets["md5"]["checked"] is False
    assert "not checked" in sets["md5"]["note"]
    assert sets["sample"]["checked"] is True
    summary = io.StringIO()
    print_summary(report, summary)
    assert "NO MATCH" not in summary.getvalue() and "not checked at all" in summary.getvalue()
    assert Scanner([f], mode="auto", workers=1).scan([root]).verdict == "priority_match"


def test_quick_mode_with_every_set_covered_can_be_no_match(filters: FilterFactory, known_tree: Tree) -> None:
    root, _ = known_tree()
    unrelated = filters.make([write_random(root.parent / "elsewhere" / "x", 5000, 99)], ("sample", "md5"))
    report = Scanner([unrelated], mode="quick", workers=1).scan([root])
    assert report.verdict == "no_match" and report.complete
    assert all(s["checked"] for s in report.to_json()["filters"][0]["sets"])
