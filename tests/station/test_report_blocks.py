"""The block sample at the station (issue 15): the kiosk's ``blocks``, ``block_hits`` and
``statement`` carried from its ``scan`` record into the scan page, the index, CSV and JSON, and
checked at import like every other field.

The journal is the kiosk's own: ``BayWorker`` scans a GPT image through the real ``Mounter`` (the
fake mount backend of test_report_pages copies a tree of clean files into the mount folder) and then
samples the image's raw blocks against a signed filter with a block set; the known item lies in the
image's bytes only, in no file the tree lists, so the device is red from known blocks alone. A
record built from the kiosk's block classes (``review_helpers.block_sample_fields``) carries hostile
values. The journal is exported as onto a sync stick, imported and reported by ``station``.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import blake3
import pytest

from agent.config import BlocksConfig
from agent.devices.identity import DeviceIdentity
from agent.devices.probe import FilesystemProbe
from agent.journal import EncryptedJournal
from agent.journal.sync import export_segments
from agent.scan.blocks import BLOCK, BlockSettings
from filters.builder import FilterBuilder
from filters.container import load_filter, write_filter
from filters.importers import ImportOptions, ImportReport
from filters.importers.folder import read_folder
from filters.keys import load_private_key
from filters.model import ContrabandFilter
from station.importer import import_sources
from station.report import page_name
from station.scans import Scan, load_scans
from station.store import Store
from tests.agent.journal.helpers import make_station, open_journal
from tests.agent.scan.conftest import FilterFactory, write_random
from tests.station.review_helpers import block_sample_fields
from tests.station.test_import_robust import every_report_works, serious
from tests.station.test_report_pages import (
    RAW_WORDS,
    Node,
    chromium,
    dom,
    enroll,
    gpt_image,
    needs_chromium,
    scan_disk,
    section_ids,
    station,
    synthetic_scan,
    visible,
)
from tests.station.test_station_cli import daemon_scan_record

MiB = 1 << 20
KNOWN_AT = 4 * MiB  # on the 4 KiB grid of partition 1 (from 1 MiB) and of a whole-device volume
KNOWN_SIZE = 64 * 1024  # 16 blocks
FILTER_NAME = "block lab <filter>"
HOSTILE_FILE_STATE = "not checked: <b>no driver</b> \u202e"
HOSTILE_FILTER = "<script>alert('filter')</script>"
HOSTILE_CATEGORY = "<i>series</i>"
HOSTILE_STOPPED = "time budget reached <svg onload=alert(1)>"
HOSTILE_STATEMENT = "priority match: <b>2 known blocks</b> \u202e found"


class ExhaustiveBlocks(BlocksConfig):
    """[blocks] reading every place of the device (a 4 KiB target at 99.9999%), so that every
    block of the known item is found: the hits are known in advance."""

    def settings(self) -> BlockSettings:
        return BlockSettings(target=BLOCK, confidence=0.999999, seed=7)


def block_filter(folder: Path, known: Path) -> ContrabandFilter:
    """A signed filter with sample, BLAKE3 and block sets of ``known`` (filter build --digests
    sample,blake3,block)."""
    factory = FilterFactory(folder)
    builder = FilterBuilder(name=FILTER_NAME)
    options = ImportOptions(digests=("sample", "blake3", "block"))
    builder.add_all(read_folder(known.parent, options, ImportReport()))
    path = folder / "blocks.ftf"
    write_filter(path, builder.build_unsigned(), load_private_key(factory.key_path))
    return load_filter(path, factory.trust)


@dataclasses.dataclass
class BlockLab:
    home: Path
    pages: dict[str, str]
    scans: list[Scan]
    known: bytes

    def page(self, serial: str) -> Node:
        [scan] = [s for s in self.scans if s.device.get("serial") == serial]
        return dom(self.pages[page_name(scan)])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> BlockLab:
    root = tmp_path_factory.mktemp("report-blocks")
    home = make_station(root / "station")
    material = root / "material"
    known = write_random(material / "known.jpg", KNOWN_SIZE, 15)
    flt = block_filter(root / "filters", known)
    assert flt.block_sets
    kiosk = root / "kiosk"
    kiosk.mkdir()
    enroll(home, kiosk / "device.key", "Block bay")
    journal = EncryptedJournal.open(kiosk / "journal", kiosk / "device.key", home.journal_public_path)
    tree = root / "evidence"
    for i in range(3):
        write_random(tree / "DCIM" / f"DSC_{i:04}.JPG", 20_000 + i, i)
    probe = FilesystemProbe(fs_type="vfat", uuid="B10C-0001", label="CARD")
    for serial, holds_known in (("KB-RED", True), ("KB-CLEAN", False)):
        image = gpt_image(root / f"{serial}.img")
        if holds_known:  # the known item in the device's bytes, in no file its filesystem lists
            with image.open("r+b") as f:
                f.seek(KNOWN_AT)
                f.write(known.read_bytes())
        identity = DeviceIdentity(
            str(image), f"/devices/usb1/1-3/host4/block/{serial}", "sdc", image.stat().st_size,
            vendor="Kingston", model="DataTraveler", serial=serial,
        )  # fmt: skip
        scan_disk(root, journal, tree, flt, identity, probe, blocks=ExhaustiveBlocks())
    hostile = block_sample_fields(
        [(40 * MiB, "priority"), (40 * MiB + 8192, "other")],
        files=HOSTILE_FILE_STATE,
        filter_name=HOSTILE_FILTER,
        category=HOSTILE_CATEGORY,
        stopped=HOSTILE_STOPPED,
    )
    hostile["blocks"]["hits"] += 3
    hostile["blocks"]["hits_not_listed"] = 3
    hostile["statement"] = HOSTILE_STATEMENT
    journal.append(
        synthetic_scan(
            dt.datetime(2026, 2, 1, 9, 0, tzinfo=dt.UTC), 60, verdict="priority_match",
            device={"vendor": "Hostile", "model": "Stick", "serial": "KB-HOSTILE"}, **hostile,
        )
    )  # fmt: skip
    journal.close()
    stick = root / "stick"
    export_segments(kiosk / "journal", stick)
    status, out, err = station("import", "--home", str(home.folder), str(stick))
    assert status == 0, (out, err)
    output = root / "html"
    status, out, err = station("report", "--home", str(home.folder), "--output", str(output))
    assert status == 0, err
    store = Store.open(home.database_path)
    try:
        scans = load_scans(store)
    finally:
        store.close()
    pages = {p.name: p.read_text(encoding="utf-8") for p in output.iterdir()}
    return BlockLab(home.folder, pages, scans, known.read_bytes())


def expected_offsets() -> list[int]:
    return [KNOWN_AT + BLOCK * i for i in range(KNOWN_SIZE // BLOCK)]


def json_scans(lab: BlockLab) -> dict[str, dict[str, Any]]:
    status, out, err = station("report", "--home", str(lab.home), "--format", "json")
    assert status == 0, err
    return {s["device"]["serial"]: s for s in json.loads(out)["scans"]}


def rows(table: Node) -> list[list[str]]:
    return [[cell.words() for cell in tr.find("td")] for tr in table.find("tr")[1:]]


# -- the scan page -----------------------------------------------------------------------------------


def test_a_device_red_only_from_known_blocks_lists_them_with_offsets_and_statement(lab: BlockLab) -> None:
    """The verdict is red and no file matched: the page used to show a red verdict and nothing
    that made it so."""
    page = lab.page("KB-RED")
    verdict = page.one(id="verdict")
    assert verdict.words().startswith("priority match")
    statement = "priority match: 16 known blocks found; blocks 100% for 4 KiB"
    assert page.one(id="statement").words() == statement
    assert "known block of the device (not a file" in verdict.words()
    assert section_ids(page) == ["summary", "checked", "block-sample", "filters", "block-hits"]
    assert page.find(cls="hit") == [] and page.one(id="policy")  # no file hit; the banner all the same
    found = page.one("section", id="block-hits")
    assert found.one("h2").words() == "Known blocks found (16)"
    listed = rows(found.one("table", cls="block-hits"))
    region = json_scans(lab)["KB-RED"]["block_hits"][0]["region"]
    assert region in ("partition 1", "partition 0", "whole device")
    for row, offset in zip(listed, expected_offsets(), strict=True):
        block = lab.known[offset - KNOWN_AT : offset - KNOWN_AT + BLOCK]
        assert row[1] == f"{offset:,} bytes {offset / MiB:.2f} MiB", row
        assert row[2].startswith(region) and row[3].startswith(FILTER_NAME)
        assert (row[5], row[6]) == ("known", "priority")
        assert row[7] == blake3.blake3(block).hexdigest()
    assert all(tr.attrs.get("class") == "priority" for tr in found.find("tr")[1:])
    sample = page.one("section", id="block-sample")
    facts = sample.facts()
    assert facts["Statement"] == (
        "a known item of at least 4 KiB stored contiguously anywhere on this device would have been "
        "found with probability at least 100%"
    )
    assert facts["Known blocks found"] == "16 (16 of priority class)"
    sampled, _, planned = facts["Blocks sampled"].partition(" of ")
    assert sampled == planned.removesuffix(" planned") and int(sampled.replace(",", "")) > 1000
    assert facts["Bytes read"].endswith("bytes)") and facts["Random seed"].startswith("7 ")
    assert "Stopped" not in facts and "No sample taken" not in facts
    regions = rows(sample.one("table", cls="regions"))
    assert any(r[0].startswith(region) and r[4] == "checked" for r in regions), regions
    assert not RAW_WORDS.search(visible(page)), RAW_WORDS.search(visible(page))


def test_a_clean_block_sample_has_its_facts_and_no_empty_known_blocks_section(lab: BlockLab) -> None:
    page = lab.page("KB-CLEAN")
    assert page.one(id="verdict").words().startswith("no match")
    assert page.one(id="statement").words() == "no match: every file checked; blocks 100% for 4 KiB"
    assert section_ids(page) == ["summary", "checked", "block-sample", "filters"]
    assert page.find(id="policy") == [] and page.find("table", cls="block-hits") == []
    assert page.one("section", id="block-sample").facts()["Known blocks found"] == "0"


def test_hostile_block_fields_are_shown_as_text(lab: BlockLab) -> None:
    page = lab.page("KB-HOSTILE")
    for tag in ("script", "b", "i", "svg", "img"):
        assert page.find(tag) == [], tag
    assert page.one(id="statement").words() == "priority match: <b>2 known blocks</b> \\u202e found"
    found = page.one("section", id="block-hits")
    assert found.one("h2").words() == "Known blocks found (5, and 3 more not listed)"
    listed = rows(found.one("table", cls="block-hits"))
    assert [r[1] for r in listed] == ["41,943,040 bytes 40.00 MiB", "41,951,232 bytes 40.01 MiB"]
    assert [r[6] for r in listed] == ["priority", "other"]
    assert all(r[3].startswith(HOSTILE_FILTER) and r[5] == HOSTILE_CATEGORY for r in listed)
    sample = page.one("section", id="block-sample")
    assert sample.facts()["Stopped"] == HOSTILE_STOPPED
    regions = {" ".join(r[0].split()[:2]): r for r in rows(sample.one("table", cls="regions"))}
    assert regions["partition 2"][4] == (
        "not checked: <b>no driver</b> \\u202e: covered by the block sample only"
    )
    assert regions["partition 1"][4] == "checked" and regions["partition 1"][1] == "fat32"
    assert "no files (outside every partition)" in regions["outside partitions"][4]
    assert not RAW_WORDS.search(visible(page)), RAW_WORDS.search(visible(page))


# -- index, CSV, JSON ------------------------------------------------------------------------------


def test_the_index_and_the_csv_count_known_blocks(lab: BlockLab) -> None:
    index = dom(lab.pages["index.html"])
    table = index.one("table", cls="scans")
    header = [th.words() for th in table.find("th")]
    assert header[header.index("Hits") + 1] == "Known blocks"
    column = header.index("Known blocks")
    counts = {row[2].split("serial ")[-1]: row[column] for row in rows(table)}
    assert counts == {"KB-RED": "16", "KB-CLEAN": "0", "KB-HOSTILE": "5"}
    status, out, _ = station("report", "--home", str(lab.home), "--format", "csv")
    assert status == 0
    table_rows = list(csv.DictReader(io.StringIO(out)))
    columns = list(table_rows[0])
    assert columns[columns.index("priority_hits") + 1] == "block_hits"
    by_serial = {r["device"].split("serial ")[-1].rstrip(")"): r for r in table_rows}
    assert {k: (r["hits"], r["block_hits"]) for k, r in by_serial.items()} == {
        "KB-RED": ("0", "16"),
        "KB-CLEAN": ("0", "0"),
        "KB-HOSTILE": ("0", "5"),
    }


def test_the_json_carries_blocks_block_hits_and_statement(lab: BlockLab) -> None:
    scans = json_scans(lab)
    red = scans["KB-RED"]
    assert red["verdict"] == "priority_match" and red["hits"] == []
    assert red["statement"] == "priority match: 16 known blocks found; blocks 100% for 4 KiB"
    assert [h["offset"] for h in red["block_hits"]] == expected_offsets()
    assert red["block_hits"][0]["digest"] == blake3.blake3(lab.known[:BLOCK]).hexdigest()
    assert red["blocks"]["hits"] == 16 and red["blocks"]["seed"] == 7 and red["blocks"]["regions"]
    hostile = scans["KB-HOSTILE"]
    assert hostile["blocks"]["stopped"] == HOSTILE_STOPPED and len(hostile["block_hits"]) == 2
    assert hostile["blocks"]["seed"] == 2**64 - 1  # 8 random bytes: a genuine seed is kept
    assert hostile["statement"] == HOSTILE_STATEMENT


# -- the record schema -----------------------------------------------------------------------------


def block_record() -> dict[str, Any]:
    return {
        **daemon_scan_record(),
        "verdict": "priority_match",
        **block_sample_fields([(40 * MiB, "priority"), (41 * MiB, "other")]),
    }


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("blocks",), "blocks 99% for 20 MiB"),
        (("blocks", "sampled"), "7022"),
        (("blocks", "probability"), 1.5),
        (("blocks", "probability"), float("nan")),
        (("blocks", "seed"), -1),
        (("blocks", "hits_by_set"), ["f:1"]),
        (("blocks", "regions"), {"label": "partition 1"}),
        (("blocks", "regions", 0, "files"), None),
        (("blocks", "regions", 2, "unit"), "4 KiB"),
        (("block_hits",), {"offset": 1}),
        (("block_hits", 0), "a hit"),
        (("block_hits", 0, "offset"), "40 MiB"),
        (("block_hits", 0, "offset"), -4096),
        (("block_hits", 1, "partition"), "2"),
        (("block_hits", 1, "digest"), b"\x00" * 32),
        (("statement",), 5),
    ],
)
def test_block_fields_of_the_wrong_type_are_kept_aside_with_an_alarm(
    tmp_path: Path, path: tuple[str | int, ...], value: object
) -> None:
    home = make_station(tmp_path / "station")
    odd: Any = copy.deepcopy(block_record())
    target = odd
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with open_journal(tmp_path, home) as journal:
        journal.append(block_record())  # genuine: a seed of 2**64 - 1 and all
        journal.append(odd)
    summary = import_sources(home, [tmp_path / "journal"])
    document = every_report_works(home, tmp_path)
    [scan] = document["scans"]
    assert scan["blocks"]["seed"] == 2**64 - 1 and len(scan["block_hits"]) == 2
    [(segment, record, message)] = serious(summary.findings)
    shown = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    assert (segment, record) == (0, 1) and message.startswith(f"not a valid journal record ({shown}"), message
    assert "kept aside" in message
    [kept] = Store.open(home.database_path).kept_records()
    assert kept.body["type"] == "scan" and shown in kept.reason


@needs_chromium
def test_block_pages_fit_800_pixels(lab: BlockLab, tmp_path: Path) -> None:
    for serial in ("KB-RED", "KB-HOSTILE"):
        [scan] = [s for s in lab.scans if s.device.get("serial") == serial]
        page = lab.pages[page_name(scan)]
        measured = page.replace('<meta http-equiv="Content-Security-Policy"', '<meta name="x"').replace(
            "</body>",
            "<script>document.body.setAttribute('data-width', document.documentElement.scrollWidth)"
            "</script></body>",
        )
        path = tmp_path / f"{serial}.html"
        path.write_text(measured, encoding="utf-8")
        out = chromium(tmp_path, "--window-size=800,1000", "--dump-dom", path.as_uri()).stdout
        width = int(dom(out).one("body").attrs["data-width"])
        assert width <= 800, f"{serial}'s page is {width} px wide"
