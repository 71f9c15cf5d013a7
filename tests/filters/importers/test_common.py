from __future__ import annotations

import pytest

from filters.importers import DigestEntry, ImportReport
from filters.importers.common import admit, one_line, parse_hex_digest, quote

from .synthetic import EMPTY_BLAKE3, EMPTY_MD5, EMPTY_SHA1, EMPTY_SHA256, random_digest

DIGEST = random_digest("md5")


@pytest.mark.parametrize(
    "text",
    [DIGEST.hex(), DIGEST.hex().upper(), f"  {DIGEST.hex()}\t", f"\n{DIGEST.hex()}".encode()],
)
def test_parse_hex_digest_accepts(text: str | bytes) -> None:
    assert parse_hex_digest(text, "md5") == DIGEST


@pytest.mark.parametrize(
    "text",
    [
        DIGEST.hex()[:-2],
        DIGEST.hex() + "00",
        DIGEST.hex()[:-1] + "g",
        DIGEST.hex()[:10] + " " + DIGEST.hex()[11:],  # 32 characters, one of them a space
        DIGEST.hex()[:10] + "\u0660" + DIGEST.hex()[11:],  # Arabic-Indic digit zero
        b"\xff" * 32,
        "",
    ],
)
def test_parse_hex_digest_refuses(text: str | bytes) -> None:
    with pytest.raises(ValueError, match=r"not a md5 digest \(32 hex digits\)"):
        parse_hex_digest(text, "md5")


@pytest.mark.parametrize(
    ("kind", "hex_digest"),
    [("md5", EMPTY_MD5), ("sha1", EMPTY_SHA1), ("sha256", EMPTY_SHA256), ("blake3", EMPTY_BLAKE3)],
)
def test_admit_leaves_out_empty_content_of_each_kind(kind: str, hex_digest: str) -> None:
    report = ImportReport()
    assert not admit(report, "src", DigestEntry(kind, bytes.fromhex(hex_digest), "c", "priority"))
    assert admit(report, "src", DigestEntry(kind, random_digest(kind), "c", "priority"))
    assert report.left_out == {"digest of empty content": 1}
    assert report.records == {"src": 1}


def test_sha256_of_empty_content_is_not_left_out_as_blake3() -> None:
    report = ImportReport()
    assert admit(report, "src", DigestEntry("blake3", bytes.fromhex(EMPTY_SHA256), "c", "priority"))


def test_messages_stay_on_one_line() -> None:
    assert quote("a\nb\x1b[31m\u202e") == "'a\\nb\\x1b[31m\\u202e'"
    assert len(quote("x" * 500)) == 80
    assert one_line(ValueError("parse error: premature EOF\n   text\n  (right here) ---^\n")) == (
        "parse error: premature EOF"
    )
    assert one_line(ValueError("b'lexical error: invalid bytes\\n  x\\n'")) == "lexical error: invalid bytes"
