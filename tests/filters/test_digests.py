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


def pattern(size: int) -> bytes:
    """The deterministic content the vectors in docs/filter-format.md are computed over."""
    return bytes((i * 7 + i // 251) % 256 for i in range(size))


VECTORS = {
    0: "23afb9f86240d793df9158f814fee0096bd40ce6fc35cf3d9bee62aeb69812da",
    1: "375c105707294e61706f49a02ae3a6f666adde7c08c85591a4afdb4101454078",
    16383: "a0852982168dc0be07442301c9f4c2c9574f38c6f2e5db5e691e83762fce5acc",
    16384: "6910fc4e3116f57055682d67f68fab1bab2538471ebdfdf96c8e4b1b8d778954",
    49151: "363d50d35c12d25d2423b7ca99cc765e4e4e385750207b37a413c2e189a3565f",
    49152: "41f9ff5a0a26b50fd97b088b7051a2d255d23d9634f32c9cb7b970239bf39052",
    49153: "fa6fd872ddaac6d78e11f59a4aa4f839e2c0d65b5ead82951843579b54e51d6e",
    65536: "2ddb6538a02a45189189e69dad11734e13352ed3c7b67e69885f0be457c340cd",
    1048577: "f4926cf0fe7f9dfdaf1ac8054d484194951763cb9b50b3b17f7ec71949ead44b",
    5000000: "215548f44834e0b5a3e50db26fff01002dae7d6b74a292635d3fd9cc9ea85dc5",
}


def reference_sample(data: bytes) -> bytes:
    """The definition, written out independently of the module."""
    size = len(data)
    if size <= 3 * 16384:
        sampled = data
    else:
        middle = (size - 16384) // 2
        sampled = data[:16384] + data[middle : middle + 16384] + data[size - 16384 :]
    return blake3.blake3(b"fieldtriage sample v1\x00" + size.to_bytes(8, "little") + sampled).digest()


@pytest.mark.parametrize("size", sorted(VECTORS))
def test_known_answer_vectors(size: int) -> None:
    data = pattern(size)
    assert sample_digest_of_bytes(data).hex() == VECTORS[size]
    assert reference_sample(data).hex() == VECTORS[size]


@pytest.mark.parametrize("size", [1, 100, 49152, 49153, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 12345])
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


def test_sample_alone_reads_at_most_48_kib(tmp_path: Path) -> None:
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
    assert sample_offsets(49152) == ()
    assert sample_offsets(49153) == (0, (49153 - 16384) // 2, 49153 - 16384)


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
