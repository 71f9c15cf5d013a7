"""Generate a synthetic phone-like tree of random bytes (no real material, ever).

Two phone layouts (``--layout``), each about 1.3-1.4 GB at ``--scale 1``:

* ``media`` (default): 300 ``DCIM/Camera`` photos of 1-6 MB, one video of 50-250 MB, 400
  ``WhatsApp Images`` of 50-300 KB, 1,500 app files of 0.2-32 KB under ``Android/data``, 30
  downloads. Files under 48 KiB hold about 2% of the bytes and there are about two of them per
  picture. That is our estimate of a real phone's shared storage (say 12,000 photos ~36 GB, 300
  videos ~15 GB, 8,000 messenger pictures ~1.2 GB, ~60,000 app and cache files ~1 GB): photos and
  videos hold almost all the bytes. An estimate, not a survey of seized phones.
* ``apps`` (the layout before 2026-05): 60 photos, three videos of 50-400 MB, 200 WhatsApp
  pictures, 5,000 app files (80 MB, 6% of the bytes: 83 app files per camera photo), 20 downloads.
  Kept to compare with earlier measurements; it overstates small files, which cost the sample
  digest their whole size (it reads files up to 12 KiB whole, by definition).

``--small N`` instead makes N small files (1-8 KB) in app-like folders; ``--camera-among N`` makes N
small files plus one photo in ``DCIM/Camera``.

Example::

    python bench/gen_tree.py /tmp/ft-bench/phone --scale 0.5
    python bench/gen_tree.py /tmp/ft-bench/phone-apps --layout apps
    python bench/gen_tree.py /tmp/ft-bench/small --small 50000
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


class Writer:
    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = np.random.default_rng(seed)
        self.files = 0
        self.bytes = 0

    def file(self, relative: str, size: int) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            left = size
            while left:
                chunk = min(left, 64 << 20)
                out.write(self.rng.bytes(chunk))
                left -= chunk
        self.files += 1
        self.bytes += size
        return path


LAYOUTS = ("media", "apps")


def phone(writer: Writer, scale: float, layout: str = "media") -> None:
    if layout == "apps":
        phone_apps(writer, scale)
        return
    rng = writer.rng
    for i in range(max(1, int(300 * scale))):
        writer.file(f"DCIM/Camera/IMG_2024{i:05d}.jpg", int(rng.integers(1_000_000, 6_000_000)))
    for i in range(max(1, int(1 * scale))):
        writer.file(f"DCIM/Camera/VID_2024{i:05d}.mp4", int(rng.integers(50_000_000, 250_000_001)))
    for i in range(int(400 * scale)):
        writer.file(f"Android/media/com.whatsapp/WhatsApp/Media/WhatsApp Images/IMG-{i:05d}-WA0001.jpg",
                    int(rng.integers(50_000, 300_000)))  # fmt: skip
    for i in range(int(1500 * scale)):
        writer.file(
            f"Android/data/com.app{i % 40}/files/cache{i % 7}/{i:06d}.dat", int(rng.integers(200, 32_000))
        )
    for i in range(int(30 * scale)):
        writer.file(f"Download/document-{i}.pdf", int(rng.integers(100_000, 3_000_000)))


def phone_apps(writer: Writer, scale: float) -> None:
    rng = writer.rng
    for i in range(max(1, int(60 * scale))):
        writer.file(f"DCIM/Camera/IMG_2024{i:05d}.jpg", int(rng.integers(1_000_000, 6_000_000)))
    video_cap = max(50_000_000, int(400_000_000 * min(scale, 1.0)))
    for i in range(max(1, int(3 * scale))):
        writer.file(f"DCIM/Camera/VID_2024{i:05d}.mp4", int(rng.integers(50_000_000, video_cap + 1)))
    for i in range(int(200 * scale)):
        writer.file(f"Android/media/com.whatsapp/WhatsApp/Media/WhatsApp Images/IMG-{i:05d}-WA0001.jpg",
                    int(rng.integers(50_000, 300_000)))  # fmt: skip
    for i in range(int(5000 * scale)):
        writer.file(
            f"Android/data/com.app{i % 40}/files/cache{i % 7}/{i:06d}.dat", int(rng.integers(200, 32_000))
        )
    for i in range(int(20 * scale)):
        writer.file(f"Download/document-{i}.pdf", int(rng.integers(100_000, 3_000_000)))


def small(writer: Writer, count: int) -> None:
    for i in range(count):
        writer.file(
            f"Android/data/com.app{i % 50}/files/{i % 97}/{i:06d}.dat", int(writer.rng.integers(1024, 8193))
        )


def camera_among(writer: Writer, count: int) -> Path:
    small(writer, count)
    return writer.file("DCIM/Camera/IMG_20240101_120000.jpg", 3_000_000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 is about 1.3 GB")
    parser.add_argument("--small", type=int, default=None, metavar="N", help="N small files instead")
    parser.add_argument("--camera-among", type=int, default=None, metavar="N", help="one photo among N files")
    parser.add_argument("--layout", choices=LAYOUTS, default="media", help="phone layout (see above)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if args.root.exists() and any(args.root.iterdir()):
        print(f"{args.root}: exists and is not empty", file=sys.stderr)
        return 2
    writer = Writer(args.root, args.seed)
    if args.small is not None:
        small(writer, args.small)
    elif args.camera_among is not None:
        camera_among(writer, args.camera_among)
    else:
        phone(writer, args.scale, args.layout)
    os.sync()
    print(f"{args.root}: {writer.files} files, {writer.bytes / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
