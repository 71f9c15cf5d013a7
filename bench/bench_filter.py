"""Filter benchmarks: build time, bytes per entry, load-and-verify, lookups, false-positive rate.

Run: ``.venv/bin/python bench/bench_filter.py [--sizes 1000000 10000000] [--fp-lookups 100000000]``.
Inputs are random synthetic md5 digests written as a plain list; the build goes through the same
importer, builder and signer as ``fieldtriage filter build``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine_info import machine_line

from filters.builder import FilterBuilder
from filters.container import load_filter, write_filter
from filters.importers import ImportOptions, ImportReport
from filters.importers.detect import read_input
from filters.keys import TrustStore, generate_key_pair, load_private_key


def machine() -> str:
    return machine_line(f"numpy {np.__version__}")


def write_digest_list(path: Path, count: int, rng: np.random.Generator) -> np.ndarray:
    digests = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    with path.open("w") as f:
        for start in range(0, count, 1_000_000):
            block = digests[start : start + 1_000_000]
            f.write("\n".join(bytes(row).hex() for row in block))
            f.write("\n")
    return digests


def bench_size(
    count: int, fp_lookups: int, folder: Path, key_path: Path, trust: TrustStore
) -> dict[str, str]:
    rng = np.random.default_rng(count)
    list_path = folder / f"list-{count}.txt"
    digests = write_digest_list(list_path, count, rng)

    started = time.perf_counter()
    builder = FilterBuilder(name=f"bench {count}")
    builder.add_all(read_input(str(list_path), "list", ImportOptions(), ImportReport()))
    imported = time.perf_counter()
    contraband = builder.build_unsigned()
    constructed = time.perf_counter()
    out = folder / f"bench-{count}.ftf"
    write_filter(out, contraband, load_private_key(key_path))
    written = time.perf_counter()
    del builder, contraband
    list_path.unlink()

    load_started = time.perf_counter()
    loaded = load_filter(out, trust)
    load_seconds = time.perf_counter() - load_started

    members = [bytes(row) for row in digests[:100_000]]
    lookup_started = time.perf_counter()
    found = sum(1 for d in members if loaded.lookup_digest("md5", d))
    lookup_rate = len(members) / (time.perf_counter() - lookup_started)
    assert found == len(members), "a member was not found"

    fuse = loaded.sets[0].fuse
    false_positives = 0
    truncated = {8: 0, 16: 0}
    done = 0
    vector_seconds = 0.0
    while done < fp_lookups:
        chunk = min(10_000_000, fp_lookups - done)
        keys = rng.integers(0, 1 << 63, size=chunk, dtype=np.int64).astype(np.uint64) << np.uint64(1)
        keys |= rng.integers(0, 2, size=chunk, dtype=np.int64).astype(np.uint64)
        t = time.perf_counter()
        false_positives += int(fuse.contains_many(keys).sum())
        vector_seconds += time.perf_counter() - t
        if done == 0:
            for bits in truncated:
                truncated[bits] = int(fuse.contains_many(keys, fingerprint_bits=bits).sum())
            first_chunk = chunk
        done += chunk
    size = out.stat().st_size
    out.unlink()
    return {
        "entries": f"{count:,}",
        "import s": f"{imported - started:.1f}",
        "construct s": f"{constructed - imported:.1f}",
        "sign+write s": f"{written - constructed:.2f}",
        "build total s": f"{written - started:.1f}",
        "bytes/entry": f"{size / count:.3f}",
        "load+verify s": f"{load_seconds:.3f}",
        "lookups/s (one digest)": f"{lookup_rate:,.0f}",
        "lookups/s (batched keys)": f"{done / vector_seconds:,.0f}",
        "FP 32-bit": f"{false_positives} in {done:,} (expected {done / 2**32:.3f})",
        "FP low 16 bits": f"{truncated[16] / first_chunk:.3g} (2^-16 = {2**-16:.3g})",
        "FP low 8 bits": f"{truncated[8] / first_chunk:.4f} (2^-8 = {2**-8:.4f})",
        "peak RSS MB": f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--fp-lookups", type=int, default=100_000_000)
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        key_path, public_path = generate_key_pair(folder / "bench")
        trust = TrustStore.from_paths([public_path])
        for count in args.sizes:
            rows.append(bench_size(count, args.fp_lookups, folder, key_path, trust))
            print(f"done {count:,}", file=sys.stderr)
    headers = list(rows[0])
    print("| measure | " + " | ".join(r["entries"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for name in headers[1:]:
        print(f"| {name} | " + " | ".join(r[name] for r in rows) + " |")


if __name__ == "__main__":
    main()
