"""plan: set roles and first-pass kinds per mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.scan.plan import ScanPlan
from filters.errors import UsageError

from .conftest import FilterFactory, write_random


def test_auto_reads_only_samples_when_the_filter_is_covered(filters: FilterFactory, tmp_path: Path) -> None:
    covered = filters.make([write_random(tmp_path / "k", 100_000, 1)], ("sample", "md5", "blake3"))
    plan = ScanPlan.build([covered], "auto")
    assert plan.first_pass_kinds == ("sample",)
    roles = {covered.sets[i].kind: role for i, role in plan.filters[0].roles.items()}
    assert roles == {"sample": "consulted", "md5": "confirm_only", "blake3": "confirm_only"}
    sample_index = next(s.index for s in covered.sets if s.kind == "sample")
    assert plan.filters[0].confirm_kinds(sample_index) == ("md5", "blake3")


def test_auto_scans_an_uncovered_filter_fully(filters: FilterFactory, tmp_path: Path) -> None:
    known = write_random(tmp_path / "k", 100_000, 1)
    uncovered = filters.make([known], ("sample", "sha1"), from_content=False)  # a hash list: no groups
    covered = filters.make([known], ("sample", "blake3"))
    plan = ScanPlan.build([covered, uncovered], "auto")
    assert plan.first_pass_kinds == ("sha1", "sample")
    assert set(plan.filters[1].roles.values()) == {"consulted"}
    assert plan.whole_file_first


def test_quick_skips_whole_file_sets_and_full_consults_everything(
    filters: FilterFactory, tmp_path: Path
) -> None:
    f = filters.make([write_random(tmp_path / "k", 10, 1)], ("sample", "sha256"))
    quick = ScanPlan.build([f], "quick")
    assert quick.first_pass_kinds == ("sample",)
    assert sorted(quick.filters[0].roles.values()) == ["consulted", "skipped"]
    full = ScanPlan.build([f], "full")
    assert full.first_pass_kinds == ("sha256", "sample")
    assert set(full.filters[0].roles.values()) == {"consulted"}


def test_quick_without_any_sample_set_is_refused(filters: FilterFactory, tmp_path: Path) -> None:
    f = filters.make([write_random(tmp_path / "k", 10, 1)], ("md5",))
    with pytest.raises(UsageError, match="quick mode needs a sample set"):
        ScanPlan.build([f], "quick")
    with pytest.raises(UsageError, match="no filter"):
        ScanPlan.build([], "auto")
