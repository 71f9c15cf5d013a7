"""The block sample (``agent/scan/blocks.py``): the confidence maths, the alignment of the reads,
detection, budgets and faults on in-memory devices, and on real read-only loop devices and mounts:
known material in deleted space (FAT with clusters smaller than 4 KiB, ext4) and in a partition the
kiosk cannot mount. Synthetic data only: random bytes stand in for known material."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.cli import main
from agent.config import BayConfig, BlocksConfig, ScanConfig, parse_config
from agent.daemon.bay import Bay, BayWorker
from agent.device_scan import device_verdict, scan_device
from agent.devices.identity import DeviceIdentity
from agent.devices.mounter import Mounter
from agent.lights.bay import BayLights, RecordingLights
from agent.scan import Scanner
from agent.scan.blocks import (
    BLOCK,
    BlockSampleResult,
    BlockSettings,
    Region,
    hit_units_for,
    miss_probability,
    percent,
    regions_of,
    sample_device,
    samples_needed,
    size_for,
)
from agent.scan.plan import ScanPlan
from filters.blocks import block_item_of_bytes
from filters.builder import FilterBuilder
from filters.container import write_filter
from filters.digests import sample_digest_of_bytes
from filters.importers import DigestEntry
from filters.keys import generate_key_pair, load_private_key
from filters.model import ContrabandFilter
from tests.agent.daemon.fake_kiosk import ListJournal

MiB = 1 << 20


def block_filter(*items: bytes, priority: str = "priority", with_files: bool = True) -> ContrabandFilter:
    builder = FilterBuilder(name="blocks")
    for data in items:
        builder.add_blocks(block_item_of_bytes(data, "known", priority))  # type: ignore[arg-type]
        if with_files:
            digest = sample_digest_of_bytes(data)
            builder.add(DigestEntry("sample", digest, "known", priority, from_content=True))  # type: ignore[arg-type]
    return builder.build_unsigned()


def memory_reader(device: bytearray | bytes) -> Callable[[int, int], bytes]:
    return lambda offset, n: bytes(device[offset : offset + n])


# -- the maths --------------------------------------------------------------------------------------


def test_miss_probability_is_the_hypergeometric_one() -> None:
    for units, hits, samples in [(50, 5, 10), (200, 1, 199), (200, 30, 7), (1000, 100, 40), (10, 3, 8)]:
        exact = (
            math.prod((units - hits - i) / (units - i) for i in range(samples))
            if samples + hits <= units
            else 0
        )
        assert miss_probability(units, samples, hits) == pytest.approx(exact, rel=1e-9, abs=1e-15)
        assert miss_probability(units, samples, hits) <= (1 - hits / units) ** samples + 1e-12
    assert miss_probability(100, 0, 5) == 1.0 and miss_probability(100, 96, 5) == 0.0
    assert miss_probability(100, 50, 0) == 1.0


def test_samples_needed_is_the_smallest_that_does() -> None:
    for units, hits, confidence in [(15_625_000, 5120, 0.99), (244_140_625, 5120, 0.99), (6144, 64, 0.99),
                                    (1000, 1, 0.5), (1 << 30, 640, 0.999)]:  # fmt: skip
        n = samples_needed(units, hits, confidence)
        assert 1 - miss_probability(units, n, hits) >= confidence
        assert 1 - miss_probability(units, n - 1, hits) < confidence
        bound = math.ceil(math.log(1 - confidence) / math.log(1 - hits / units))  # the binomial bound
        assert n <= bound and (n / units > 0.002 or bound <= n * 1.001 + 1)
    # 64 GB (10^9 bytes a GB) and 1 TB at 20 MiB, 99%, every block kept: docs/block-sampling.md
    assert samples_needed(64 * 10**9 // BLOCK, hit_units_for(20 * MiB, 1), 0.99) == 14_046
    assert samples_needed(10**12 // BLOCK, hit_units_for(20 * MiB, 1), 0.99) == 219_491
    assert samples_needed(64 * 10**9 // BLOCK, hit_units_for(20 * MiB, 8), 0.99) == 112_026
    assert hit_units_for(20 * MiB, 8) == 640 and hit_units_for(4095, 1) == 0


def test_size_for_and_percent() -> None:
    units, n = 15_625_000, 14_046
    assert size_for(units, n, 1, 0.99) == 20 * MiB
    assert size_for(units, n, 4, 0.99) == 80 * MiB
    assert size_for(units, 0, 1, 0.99) is None
    assert percent(0.99) == "99%" and percent(0.98999) == "98.9%" and percent(0.9999) == "99.9%"
    assert percent(1.0) == "100%" and percent(0.5) == "50%"


# -- the grid ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", [512, 1024, 2048, 4096, 8192, 65536])
@pytest.mark.parametrize(
    ("start", "end", "origin"),
    [(0, 300_000, 0), (1536, 200_000, 1536 + 48 * 512), (4096 * 3 + 512, 4096 * 40 + 1024, 4096 * 5 + 3584)],
)
def test_every_place_a_block_can_be_is_in_exactly_one_unit(
    unit: int, start: int, end: int, origin: int
) -> None:
    region = Region(start, end, origin, unit, "r")
    step = min(unit, BLOCK)
    expected = [o for o in range(origin % step, end - BLOCK + 1, step) if o >= start]
    seen: list[int] = []
    for index in range(region.units):
        low, high, offsets = region.windows(index)
        assert offsets and low == offsets[0] and high == offsets[-1] + BLOCK
        assert high - low <= 2 * BLOCK - step and start <= low and high <= end
        seen += offsets
    assert seen == expected  # each once, in order
    assert region.phases == BLOCK // step


def test_a_contiguous_file_has_each_block_in_its_own_unit() -> None:
    region = Region(0, 1 << 20, 7 * 512, 512, "fat")
    start = region.origin + 13 * 512  # a file at cluster 13: not on the 4 KiB grid of the data area
    units = {}
    for index in range(region.units):
        for offset in region.windows(index)[2]:
            units[offset] = index
    file_units = [units[start + i * BLOCK] for i in range(50)]
    assert len(set(file_units)) == 50


def test_regions_cover_the_device_partitions_on_their_grids() -> None:
    device = bytearray(8 * MiB)
    regions = regions_of(len(device), [(1, MiB, 2 * MiB, "checked"), (2, 4 * MiB, 3 * MiB, "not checked")],
                         memory_reader(device))  # fmt: skip
    assert [(r.label, r.start, r.end, r.unit, r.fs) for r in regions] == [
        ("outside partitions 0-1048576", 0, MiB, BLOCK, ""),
        ("partition 1", MiB, 3 * MiB, BLOCK, ""),
        ("outside partitions 3145728-4194304", 3 * MiB, 4 * MiB, BLOCK, ""),
        ("partition 2", 4 * MiB, 7 * MiB, BLOCK, ""),
        ("outside partitions 7340032-8388608", 7 * MiB, 8 * MiB, BLOCK, ""),
    ]
    assert sum(r.units for r in regions) == 8 * MiB // BLOCK


# -- sampling in memory -----------------------------------------------------------------------------


def device_with(item: bytes, size: int, at: int, seed: int = 0) -> bytearray:
    device = bytearray(np.random.default_rng(10_000 + seed).bytes(size))  # not the items' generator
    device[at : at + len(item)] = item
    return device


def test_detection_rate_matches_the_confidence() -> None:
    rng = np.random.default_rng(3)
    item = rng.bytes(256 * 1024)
    contraband = block_filter(item)
    size = 32 * MiB
    settings = BlockSettings(target=len(item), confidence=0.9)
    region = Region(0, size, 0, 512, "fat")
    found = 0
    trials = 200
    for trial in range(trials):
        at = int(rng.integers(0, (size - len(item)) // 512)) * 512  # any cluster: 512-byte clusters
        device = device_with(item, size, at, trial)
        result = sample_device(memory_reader(device), [region], [contraband], settings)
        assert result.units_counted == result.planned and result.probability >= 0.9
        offsets = {hit.offset for hit in result.hits}
        assert all((o - at) % BLOCK == 0 and at <= o < at + len(item) for o in offsets)
        found += bool(offsets)
    assert found >= 0.84 * trials  # 0.9 expected: at least 0.84 with a binomial chance of ~1e-3 to fail


def test_subsampled_filters_need_k_times_the_sample() -> None:
    item = os.urandom(64 * BLOCK)
    builder = FilterBuilder(name="k", block_subsample=4)
    builder.add_blocks(block_item_of_bytes(item, "known", "priority"))
    contraband = builder.build_unsigned()
    device = device_with(item, 16 * MiB, 5 * MiB)
    result = sample_device(memory_reader(device), [Region(0, 16 * MiB, 0, BLOCK, "d")], [contraband],
                           BlockSettings(target=len(item), confidence=0.99, seed=1))  # fmt: skip
    assert result.subsample == 4 and result.hit_units == 16
    assert result.planned == samples_needed(4096, 16, 0.99)
    assert result.to_json()["dense_items"] == 1


def test_blank_blocks_are_not_looked_up_and_clean_devices_have_no_hits() -> None:
    contraband = block_filter(os.urandom(40 * BLOCK))
    device = bytearray(8 * MiB)  # zeros
    device[4 * MiB : 6 * MiB] = os.urandom(2 * MiB)
    settings = BlockSettings(target=BLOCK, confidence=0.999999)
    result = sample_device(
        memory_reader(device), [Region(0, len(device), 0, BLOCK, "d")], [contraband], settings
    )
    assert result.units_read == result.units == 2048 and not result.hits
    assert result.blank == 1536 and result.windows_looked_up == 512


def test_the_time_budget_counts_only_whole_passes() -> None:
    contraband = block_filter(os.urandom(40 * BLOCK))
    device = bytearray(os.urandom(64 * MiB))
    ticks = iter(range(10**9))
    clock = lambda: next(ticks) * 0.001  # noqa: E731  (a millisecond a call)
    settings = BlockSettings(target=BLOCK, confidence=0.999, time_budget_s=5.0, seed=2)
    region = [Region(0, len(device), 0, BLOCK, "d")]
    result = sample_device(memory_reader(device), region, [contraband], settings, clock=clock)
    assert result.stopped == "time budget reached"
    assert 0 < result.units_counted < result.units_read < result.planned
    assert result.units_counted % -(-result.planned // 16) == 0  # whole passes (16 of the planned units)
    assert result.probability < 0.999
    statement = result.statement()
    assert "probability at least" in statement and "time budget reached" in statement
    assert result.short().startswith("blocks ") and "(time budget reached)" in result.short()


def test_cancel_and_a_device_that_stops_answering() -> None:
    contraband = block_filter(os.urandom(40 * BLOCK))
    region = [Region(0, 64 * MiB, 0, BLOCK, "d")]
    cancel = threading.Event()
    cancel.set()
    result = sample_device(memory_reader(bytes(64 * MiB)), region, [contraband], BlockSettings(), cancel)
    assert result.stopped == "cancelled" and result.units_read == 0 and result.probability == 0.0

    def gone(offset: int, n: int) -> bytes:
        raise OSError(errno.ENODEV, "No such device")

    result = sample_device(gone, region, [contraband], BlockSettings())
    assert result.read_errors == 1 and result.stopped is not None and "stopped answering" in result.stopped
    calls = []

    def bad_sectors(offset: int, n: int) -> bytes:
        calls.append(offset)
        raise OSError(errno.EIO, "Input/output error")

    result = sample_device(bad_sectors, region, [contraband], BlockSettings(target=BLOCK))
    assert result.read_errors == len(calls) == 64 and "stopped answering" in str(result.stopped)


def test_no_block_set_no_sample() -> None:
    builder = FilterBuilder(name="files")
    builder.add(DigestEntry("md5", os.urandom(16), "known", "priority"))
    region = [Region(0, MiB, 0, BLOCK, "d")]
    result = sample_device(memory_reader(bytes(MiB)), region, [builder.build_unsigned()], BlockSettings())
    assert result.skipped == "no filter has a block set" and result.units_read == 0


def test_a_block_hit_makes_a_match_but_never_a_green() -> None:
    hit = BlockSampleResult(BlockSettings())
    assert device_verdict(None, False, hit) == "incomplete"
    from agent.scan.blocks import BlockHit

    hit.hits.append(BlockHit(4096, "d", None, "id", "f", 0, "known", "other", bytes(32)))
    assert device_verdict(None, False, hit) == "match"
    hit.hits.append(BlockHit(8192, "d", None, "id", "f", 0, "known", "priority", bytes(32)))
    assert device_verdict(None, False, hit) == "priority_match"


# -- the plan ---------------------------------------------------------------------------------------


def test_block_sets_are_never_looked_up_per_file() -> None:
    paired = block_filter(os.urandom(3 * BLOCK))
    plan = ScanPlan.build([paired], "auto")
    assert plan.first_pass_kinds == ("sample",)
    roles = plan.filters[0].roles
    assert [roles[s.index] for s in paired.sets] == ["block_sample", "consulted"]
    assert plan.unchecked_sets == []
    alone = block_filter(os.urandom(3 * BLOCK), with_files=False)
    builder_files = FilterBuilder(name="files")
    builder_files.add(DigestEntry("md5", os.urandom(16), "known", "priority"))
    plan = ScanPlan.build([builder_files.build_unsigned(), alone], "full")
    assert [(p.contraband.metadata.name, i) for p, i in plan.unchecked_sets] == [("blocks", 0)]
    summary = plan.filters[1].summary()
    assert summary.sets[0].role == "block_sample" and summary.sets[0].checked is False
    assert "files were not checked against them" in (summary.sets[0].note or "")


def test_config_blocks_table() -> None:
    bays = [{"name": "a", "red": 1, "amber": 2, "green": 3}]
    config = parse_config({"bays": bays}, "agent.toml", check_folders=False)
    assert config.blocks == BlocksConfig()
    assert config.blocks.settings() == BlockSettings(20 * MiB, 0.99, 1800.0)
    off = parse_config({"bays": bays, "blocks": {"enabled": False}}, "agent.toml", check_folders=False)
    assert off.blocks.settings() is None
    from filters.errors import ConfigError

    with pytest.raises(ConfigError, match="blocks.target_mib"):
        parse_config({"bays": bays, "blocks": {"target_mib": 0}}, "agent.toml", check_folders=False)


# -- real devices (root) -----------------------------------------------------------------------------


def run(*args: str | Path, stdin: bytes | None = None) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, input=stdin)


def disk_with(path: Path, partitions: list[tuple[str, Path | None, int]]) -> list[int]:
    """An MBR disk image at ``path`` with ``(type, filesystem image or None, MiB)`` partitions
    copied in; their start offsets."""
    total = (2 + sum(size + 1 for _, _, size in partitions)) * MiB
    with path.open("wb") as f:
        f.truncate(total)
    script = "label: dos\n" + "".join(f",{size * 2048},{kind}\n" for kind, _, size in partitions)
    run("sfdisk", "-q", path, stdin=script.encode())
    table = json.loads(subprocess.run(["sfdisk", "-J", str(path)], capture_output=True, check=True).stdout)
    starts = [p["start"] * 512 for p in table["partitiontable"]["partitions"]]
    for (_, image, _), start in zip(partitions, starts, strict=True):
        if image is not None:
            run("dd", f"if={image}", f"of={path}", "bs=1M", f"seek={start}", "oflag=seek_bytes",
                "conv=notrunc,sparse", "status=none")  # fmt: skip
    return starts


@pytest.fixture
def lab(tmp_path: Path) -> dict[str, Any]:
    """A known item (random bytes), its filter with file and block sets, signed."""
    known = os.urandom(300_000)
    (tmp_path / "known").mkdir()
    (tmp_path / "known" / "known.jpg").write_bytes(known)
    key, public = generate_key_pair(tmp_path / "lab")
    builder = FilterBuilder(name="lab")
    from filters.importers import ImportOptions, ImportReport
    from filters.importers.folder import read_folder

    builder.add_all(read_folder(tmp_path / "known", ImportOptions(digests=("sample", "blake3", "block")),
                                ImportReport()))  # fmt: skip
    contraband = builder.build_unsigned()
    write_filter(tmp_path / "lab.ftf", contraband, load_private_key(key))
    return {"known": known, "filter": tmp_path / "lab.ftf", "public": public, "contraband": contraband}


def fat_with_deleted(tmp_path: Path, known: bytes) -> Path:
    """FAT16 with 512-byte clusters: a 3-cluster file, then the known file (so its data starts 1536
    bytes past the data area's 4 KiB grid), then the known file deleted (its clusters keep it)."""
    image = tmp_path / "fat.img"
    with image.open("wb") as f:
        f.truncate(24 * MiB)
    run("mkfs.vfat", "-F", "16", "-s", "1", "-S", "512", image)
    (tmp_path / "small.bin").write_bytes(os.urandom(1536))
    (tmp_path / "k.jpg").write_bytes(known)
    run("mcopy", "-i", image, tmp_path / "small.bin", "::/small.bin")
    run("mcopy", "-i", image, tmp_path / "k.jpg", "::/k.jpg")
    run("mdel", "-i", image, "::/k.jpg")
    return image


def exhaustive() -> BlockSettings:
    return BlockSettings(target=BLOCK, confidence=0.999999, seed=7)  # every place read


def known_block_offsets(image: Path, known: bytes, base: int = 0) -> set[int]:
    data = image.read_bytes()
    start = data.find(known[:4096])
    assert start >= 0 and data[start : start + len(known)] == known
    return {base + start + i * BLOCK for i in range(len(known) // BLOCK)}


@pytest.mark.root
def test_a_deleted_file_on_fat_with_512_byte_clusters(tmp_path: Path, lab: dict[str, Any]) -> None:
    image = fat_with_deleted(tmp_path, lab["known"])
    expected = known_block_offsets(image, lab["known"])
    result = scan_device(
        str(image), Mounter(tmp_path / "run"), Scanner([lab["contraband"]]), blocks=exhaustive()
    )
    assert result.report is not None and result.report.verdict == "no_match"  # the file is gone
    blocks = result.blocks
    assert blocks is not None and blocks.units_read == blocks.units
    assert {hit.offset for hit in blocks.hits} == expected  # every block of it, at its offsets
    assert result.verdict == "priority_match"
    region = blocks.regions[0]
    assert (region.fs, region.unit, region.phases) == ("fat16", 512, 8)
    assert min(expected) % BLOCK != region.origin % BLOCK  # not on the 4 KiB grid of the data area
    document = result.to_json()
    assert document["block_hits"][0]["offset"] == min(expected) and document["blocks"]["hits"] == len(
        expected
    )
    assert document["statement"] == "priority match: 73 known blocks found; blocks 100% for 4 KiB"


@pytest.mark.root
def test_without_the_cluster_phases_the_same_file_is_never_found(
    tmp_path: Path, lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    image = fat_with_deleted(tmp_path, lab["known"])
    monkeypatch.setattr(Region, "step", property(lambda self: BLOCK))  # sample the 4 KiB grid only
    result = scan_device(
        str(image), Mounter(tmp_path / "run"), Scanner([lab["contraband"]]), blocks=exhaustive()
    )
    assert result.blocks is not None and result.blocks.units_read == result.blocks.units > 0
    assert result.blocks.hits == [] and result.verdict == "no_match"


@pytest.mark.root
def test_deleted_on_ext4_and_known_in_a_partition_that_cannot_be_mounted(
    tmp_path: Path, lab: dict[str, Any]
) -> None:
    known = lab["known"]
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "notes.txt").write_bytes(b"ordinary notes\n" * 300)
    (tmp_path / "tree" / "k.jpg").write_bytes(known)
    ext4 = tmp_path / "ext4.img"
    with ext4.open("wb") as f:
        f.truncate(16 * MiB)
    run("mkfs.ext4", "-q", "-F", "-b", "1024", "-d", tmp_path / "tree", ext4)
    run("debugfs", "-w", "-R", "rm /k.jpg", ext4)  # deleted: its blocks are free and still hold it
    raw = tmp_path / "raw.img"
    raw.write_bytes(os.urandom(4 * MiB))
    with raw.open("r+b") as f:  # an unknown filesystem holding the known item at 3 KiB past a 4 KiB block
        f.seek(1 * MiB + 3072)
        f.write(known)
    disk = tmp_path / "disk.img"
    starts = disk_with(disk, [("83", ext4, 16), ("83", raw, 4)])
    result = scan_device(
        str(disk), Mounter(tmp_path / "run"), Scanner([lab["contraband"]]), blocks=exhaustive()
    )
    assert result.report is not None and result.report.verdict == "no_match"
    assert result.device_problems == [
        "partition 2: no filesystem recognised (unformatted, unknown or damaged)"
    ]
    blocks = result.blocks
    assert blocks is not None
    by_region: dict[str, set[int]] = {}
    for hit in blocks.hits:
        by_region.setdefault(hit.region, set()).add(hit.offset)
    ext4_offsets = known_block_offsets(ext4, known, starts[0])
    assert by_region["partition 1"] == ext4_offsets
    # partition 2 has no filesystem we know: read on its start's 4 KiB grid, which the item is not on
    assert "partition 2" not in by_region
    regions = {r.label: r for r in blocks.regions}
    assert (regions["partition 1"].fs, regions["partition 1"].unit) == ("ext", 1024)
    assert regions["partition 2"].files.startswith("not checked: no filesystem recognised")
    assert result.verdict == "priority_match"


@pytest.mark.root
def test_an_unmountable_partition_stays_could_not_check_but_is_sampled(
    tmp_path: Path, lab: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ext4 = tmp_path / "ext4.img"
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_bytes(b"a" * 5000)
    with ext4.open("wb") as f:
        f.truncate(8 * MiB)
    run("mkfs.ext4", "-q", "-F", "-d", tmp_path / "tree", ext4)
    raw = tmp_path / "raw.img"
    raw.write_bytes(os.urandom(4 * MiB))  # clean, and no filesystem the kiosk knows
    disk = tmp_path / "fieldtriage-test-blocks.img"
    disk_with(disk, [("83", ext4, 8), ("83", raw, 4)])
    from tests.agent.devices.images import evidence_loop

    with evidence_loop(disk) as evidence:
        capsys.readouterr()
        base = [
            "scan",
            "--filter",
            str(lab["filter"]),
            "--trust",
            str(lab["public"]),
            "--device",
            evidence.path,
        ]
        status = main([*base, "--blocks", "--target", "1MiB", "--confidence", "0.99", "--json"])
        document = json.loads(capsys.readouterr().out)
        assert evidence.sectors_written() == 0
        assert main([*base, "--blocks", "--target", "1MiB", "--block-seed", "5"]) == 3
        text = capsys.readouterr().out
        assert evidence.sectors_written() == 0
    assert status == 3 and document["verdict"] == "incomplete" and document["block_hits"] == []
    blocks = document["blocks"]
    assert blocks["probability"] >= 0.99 and blocks["target_bytes"] == MiB and blocks["sampled"] > 0
    labels = [r["label"] for r in blocks["regions"]]
    assert labels[:3] == ["outside partitions 0-1048576", "partition 1", "partition 2"]
    partition_2 = next(r for r in blocks["regions"] if r["label"] == "partition 2")
    assert partition_2["files"].startswith("not checked") and partition_2["units"] == 1024
    assert document["statement"] == "could not check: not every file checked; blocks 99% for 1 MiB"
    assert (
        "partition 2 (no filesystem known, 4 KiB from offset" in text
        and "covered by the block sample only" in text
    )
    assert "statement: could not check: not every file checked; blocks 99% for 1 MiB" in text
    assert "seed 5" in text


def test_cli_refuses_block_options_without_blocks_or_a_device(
    tmp_path: Path, lab: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["scan", "--filter", str(lab["filter"]), "--trust", str(lab["public"])]
    assert main([*base, "--image", str(tmp_path / "x.img"), "--target", "20MiB"]) == 2
    assert "--target, --confidence and --time-budget need --blocks" in capsys.readouterr().err
    assert main([*base, str(tmp_path), "--blocks"]) == 2
    assert "samples the raw blocks of a --device or --image" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--image", str(tmp_path / "x.img"), "--blocks", "--confidence", "1.5"])


@pytest.mark.root
def test_the_bay_lights_red_for_a_known_block_and_journals_the_sample(
    tmp_path: Path, lab: dict[str, Any]
) -> None:
    image = fat_with_deleted(tmp_path, lab["known"])
    identity = DeviceIdentity(str(image), "/devices/test/img", "img", image.stat().st_size)
    lights = BayLights("front", RecordingLights())
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), lights)
    journal = ListJournal()
    blocks = BlocksConfig(target_mib=0.25, confidence=0.999)
    BayWorker(bay, identity, Mounter(tmp_path / "run"), [lab["contraband"]], ScanConfig(), journal,
              blocks=blocks).run()  # fmt: skip
    [record] = journal.records
    assert record["verdict"] == "priority_match" and bay.verdict == "priority_match"
    assert record["scan"]["verdict"] == "no_match" and record["scan"]["hits"] == []
    assert record["block_hits"] and record["block_hits"][0]["priority"] == "priority"
    assert record["blocks"]["hits"] == len(record["block_hits"]) == bay.hits == bay.priority_hits
    assert record["statement"].startswith("priority match:")
    assert lights.shown[:2] == ["scanning", "scanning_priority_hit"] and lights.shown[-1] == "priority_match"


@pytest.mark.root
def test_the_bay_shows_the_block_sample_as_the_second_half_of_its_progress(
    tmp_path: Path, lab: dict[str, Any]
) -> None:
    """The files are the first half of the bay's progress and the sample the second, so the light
    does not sit at "almost done" while the sample runs; the status says "sampling blocks"."""
    image = fat_with_deleted(tmp_path, os.urandom(300_000))  # nothing known: the whole sample runs
    identity = DeviceIdentity(str(image), "/devices/test/img", "img", image.stat().st_size)
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), BayLights("front", RecordingLights()))
    seen: list[tuple[str, float | None]] = []
    blocks = BlocksConfig(target_mib=0.25, confidence=0.999)
    BayWorker(bay, identity, Mounter(tmp_path / "run"), [lab["contraband"]], ScanConfig(), ListJournal(),
              on_change=lambda: seen.append((bay.phase, bay.progress)), blocks=blocks).run()  # fmt: skip
    assert bay.verdict == "no_match"
    files = [p for phase, p in seen if phase == "scanning" and p is not None]
    sampling = [p for phase, p in seen if phase == "sampling blocks"]
    assert sampling and all(p is not None and 0.5 <= p <= 1.0 for p in sampling), seen
    assert sampling[-1] == 1.0 and all(p <= 0.5 for p in files), seen
    shown = [p for _, p in seen if p is not None]
    assert shown == sorted(shown), "never going back"
