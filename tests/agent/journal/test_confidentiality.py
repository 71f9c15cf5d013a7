"""The kiosk's files alone (device key, segments, station public key) decrypt nothing."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from agent.journal.sealing import station_segment_key
from agent.journal.segment_format import (
    RecordFrame,
    parse_frames,
    parse_header,
    record_associated_data,
    record_nonce,
)
from station.importer import import_sources
from tests.agent.journal.helpers import make_station, open_journal

MARKER = "SYNTHETIC-MARKER-4711"


def test_nothing_readable_without_the_station_private_key(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home) as journal:
        journal.append({"type": "scan_finished", "path": f"/DCIM/{MARKER}.jpg", "raw": MARKER.encode()})
    kiosk_files = [p for p in tmp_path.rglob("*") if p.is_file() and home.folder not in p.parents]
    for path in kiosk_files:
        assert MARKER.encode() not in path.read_bytes(), path
    segment = tmp_path / "journal" / "segment-00000000.ftj"
    data = memoryview(segment.read_bytes())
    header = parse_header(data)
    frame = next(f for f in parse_frames(data, header.frames_offset) if isinstance(f, RecordFrame))
    # Any other X25519 key (e.g. one a thief makes) derives a key that does not open the record.
    stranger = X25519PrivateKey.generate()
    key = station_segment_key(stranger, header.ephemeral_key, header.kiosk_key, header.number)
    try:
        ChaCha20Poly1305(key).decrypt(
            record_nonce(0), bytes(frame.sealed), record_associated_data(header.hash, 0)
        )
        opened = True
    except Exception:
        opened = False
    assert not opened


def test_station_with_another_key_reports_and_imports_nothing(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    other = make_station(tmp_path / "other-station")
    with open_journal(tmp_path, home) as journal:
        journal.append({"type": "x"})
    summary = import_sources(other, [tmp_path / "journal"])
    assert summary.records_new == 0
    assert any("not this station's: cannot decrypt" in f.message for f in summary.findings)
