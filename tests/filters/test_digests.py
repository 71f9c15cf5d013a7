"""Known-answer vectors and one-pass equivalence for the digests module."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import blake3
import pytest

from filters.digests import (
    SAMPLE_CHUNK,
    FileChangedError,
    digest_fd,
    digest_path,
    normalise_kinds,
    sample_digest_of_bytes,
    sample_offsets,
)

from .reference_digests import reference_sample


def pattern(size: int) -> bytes:
    """The deterministic content the vectors in docs/filter-format.md are computed over."""
    return bytes((i * 7 + i // 251) % 256 for i in range(size))


VECTORS = {
    0: "f58d42247269850076b7e894b90ce4517f84cbb04a3b623050cedc603dd0332d",
    1: "334764ebbf4c341774b81c62cfb81375055f24c0571730e03e2c71e72748ec21",
    4095: "851eca0a9eaf6c50ddf19cac97d4faa54c0984de1373dc4846f11b31c95288fc",
    4096: "e5ce74551aa7e92ea623827618e89df869561778bbd9e1ecd640d14eac7b83bb",
    12287: "79b0fbe53d62291977d89fcb9d193e729712ac600c4dd42a54fecb3236d7435f",
    12288: "03e7be68d64b98f321f62f191e88c59aa5d55a6d64bb34b9697953f70f1debed",
    12289: "5feafb470a5fe2b90d7334b567ab3ac5d4f435ef9a7c424629ddba6043f53cdc",
    16383: "3a5c84ce0e4e45f9c8c2c1b200c584afe55f29aeede3967826118c9de7db88dd",
    16384: "c844bf8f2854d48ffaecf29fedcc4add9a983daaeb8e2ea0a46c8be01dbd5cf1",
    16385: "ad54366c56551b761d611919c84da68784c722f85dd48167e7b30a1f1eddb0b7",
    65536: "9b01d1a17e394d46395dc4eec13b94baeeae3079ebcdd592e4f8876ec588ae30",
    1048577: "9cc080251718ab9486108d8eb9f73f24d1171e2951aee451fba8e91cf25fcb9a",
    5000000: "7da8b2d1e53d7f91b39a9a36362ae70684ecb1e772b9f6320e1a23702b4b3fd8",
}


@pytest.mark.parametrize("size", sorted(VECTORS))
def test_known_answer_vectors(size: int) -> None:
    data = pattern(size)
    assert sample_digest_of_bytes(data).hex() == VECTORS[size]
    assert reference_sample(data).hex() == VECTORS[size]


@pytest.mark.parametrize("size", [1, 100, 12288, 12289, 49153, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 12345])
def test_one_pass_equals_separate_digests(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    got = digest_path(path, ["md5", "sha1", "sha256", "blake3", "sample"])
    assert got == {
        "md5": hashlib.md5(data).digest(),
        "sha1": hashlib.sha1(data).digest(),
        "sha256": hashlib.sha256(data).digest(),
        "blake3": blake3.blake3(data).digest(),
        "sample": reference_sample(data),
    }
    assert digest_path(path, ["sample"]) == {"sample": reference_sample(data)}


def test_sample_alone_reads_at_most_12_kib(tmp_path: Path) -> None:
    path = tmp_path / "big"
    with path.open("wb") as f:
        f.truncate(64 << 20)
    reads: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        reads.append(n)
        return real_pread(fd, n, offset)

    fd = os.open(path, os.O_RDONLY)
    try:
        os_pread, os.pread = os.pread, counting_pread  # type: ignore[assignment]
        try:
            digest_fd(fd, 64 << 20, ["sample"])
        finally:
            os.pread = os_pread
    finally:
        os.close(fd)
    assert sum(reads) == 3 * SAMPLE_CHUNK


def test_offsets() -> None:
    assert sample_offsets(12288) == ()
    assert sample_offsets(12289) == (0, 4096, 8192)
    assert sample_offsets(5_000_000) == (0, 2_498_560, 4_993_024)


def test_samples_are_distinct_aligned_blocks_inside_the_file() -> None:
    for size in [*range(12289, 12289 + 4 * 4096), (1 << 20) - 1, 1 << 20, 5_000_000, 1 << 40]:
        first, middle, last = sample_offsets(size)
        assert first == 0 and middle % SAMPLE_CHUNK == 0 and last % SAMPLE_CHUNK == 0, size
        assert SAMPLE_CHUNK <= middle <= size // 2 < middle + SAMPLE_CHUNK, size
        assert middle + SAMPLE_CHUNK <= last, size
        assert last + SAMPLE_CHUNK <= size < last + 2 * SAMPLE_CHUNK, size


def test_size_change_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(FileChangedError):
            digest_fd(fd, 2000, ["md5"])
        with pytest.raises(FileChangedError):
            digest_fd(fd, 500, ["sample"])
    finally:
        os.close(fd)


def test_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="'crc32'"):
        normalise_kinds(["md5", "crc32"])


def test_fifo_and_folder_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        digest_path(fifo, ["md5"])
    with pytest.raises(OSError, match="not a regular file"):
        digest_path(tmp_path, ["md5"])
