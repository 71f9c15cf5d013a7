#!/usr/bin/env python3
"""Build the kiosk image from Debian 12 packages: one recipe, two targets.

* ``arm64``: a Raspberry Pi 4/5 SD card image (Debian's ``linux-image-arm64`` and ``raspi-firmware``,
  as Debian's own Pi images boot): MBR with FAT ``RASPIFIRM``, the read-only root ``FTROOT`` and the
  data partition ``FTDATA`` (journal, keys, filters: a power cut is how a kiosk is switched off).
* ``amd64``: the same root content, for the system test under QEMU, plus its instruments (the QEMU
  guest agent, and gpio-sim built for the image's kernel, so that the lights are real GPIO lines).

Stages, each cached under ``--cache`` by a key of everything that goes into it:

1. ``base``: ``mmdebstrap`` of the packages; the Python environment ``/opt/fieldtriage/.venv`` from
   wheels for the target (Debian 12 has no python3-blake3); gpio-sim (amd64).
2. ``assemble`` (every build, seconds): fieldtriage itself, the unit, the udev rule, tmpfiles,
   ``/etc/fieldtriage`` (agent.toml for the box's wiring, the station's public keys when given), a
   read-only fstab; then the filesystems and the disk image, and a manifest of package versions.

Usage (root)::

    python3 image-build/build.py --arch amd64 --out build/image-amd64 --station STATION_FOLDER
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MiB = 1 << 20
SUITE = "bookworm"
BASE_RECIPE = 2  # bump when build_base() or what it calls changes: cached base trees are rebuilt
# the agent's own dependencies, as pyproject.toml states them (pip resolves theirs)
PYTHON_DEPENDENCIES = tuple(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
# Dependencies taken from Debian, not from wheels: PyPI has no wheel of them for the image (the base
# stage installs wheels only, pip download --only-binary). python-evdev (the barcode scanner,
# agent/exhibit) is an sdist only (evdev-binary: x86_64 only); Debian 12 builds python3-evdev for
# both targets against the image's own Python 3.11. Only these modules are shown to the venv (a
# folder of links and a .pth file): the rest of Debian's dist-packages stays out of it.
DEBIAN_PYTHON = {"evdev": "python3-evdev"}
WHEEL_DEPENDENCIES = tuple(
    d for d in PYTHON_DEPENDENCIES if re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0] not in DEBIAN_PYTHON
)
DEBIAN_PYTHON_FOLDER = "/opt/fieldtriage/debian-python"
# What the agent runs on the kiosk: blkid/findmnt/umount, the FUSE drivers for what a kernel may lack,
# xmount (the copy-on-write layer journals are replayed onto), dmsetup (dm-snapshot, where present).
COMMON_PACKAGES = (
    "systemd-sysv", "udev", "kmod", "python3", "python3-venv", "util-linux", "mount", "e2fsprogs",
    "fuse3", "ntfs-3g", "exfat-fuse", "fuseiso", "xmount", "dmsetup", "systemd-timesyncd",
    "ca-certificates", *DEBIAN_PYTHON.values(),
)  # fmt: skip


@dataclass(frozen=True)
class Target:
    arch: str
    kernel: str
    packages: tuple[str, ...]
    root_mib: int
    data_mib: int
    firmware_mib: int = 0  # a FAT boot partition (Raspberry Pi firmware) first when > 0
    test_instruments: bool = False


TARGETS = {
    # fusefat: Debian builds it for amd64, not arm64 (whose kernels have vfat anyway)
    "amd64": Target(
        "amd64",
        "linux-image-amd64",
        ("fusefat", "qemu-guest-agent", "gpiod"),
        1400,
        256,
        test_instruments=True,
    ),
    "arm64": Target("arm64", "linux-image-arm64", ("raspi-firmware", "firmware-brcm80211"), 1400, 1024, 256),
}


def log(message: str) -> None:
    print(f"[image-build {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(*argv: str | os.PathLike[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.fspath(a) for a in argv], check=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def base_key(target: Target) -> str:
    """What the base stage is made of: its packages, Python dependencies and recipe revision."""
    return digest(str(BASE_RECIPE), repr(target), SUITE, *COMMON_PACKAGES, *PYTHON_DEPENDENCIES)


# ---- stage 1: base --------------------------------------------------------------------------------


def build_base(target: Target, cache: Path) -> Path:
    """The root tree with packages, the Python environment and test instruments (cached)."""
    key = base_key(target)
    tree = cache / f"base-{target.arch}-{key}"
    if (tree / ".complete").exists():
        log(f"base {target.arch}: cached ({tree.name})")
        return tree
    started = time.monotonic()
    if not (tree / ".packages-installed").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.parent.mkdir(parents=True, exist_ok=True)
        debootstrap(target, tree)
        (tree / ".packages-installed").touch()
    if not (tree / ".python-installed").exists():
        install_python_environment(target, tree, cache)
        (tree / ".python-installed").touch()
    if target.test_instruments:
        install_gpio_sim(tree, cache)
    (tree / ".complete").write_text(json.dumps({"seconds": round(time.monotonic() - started, 1)}))
    log(f"base {target.arch}: {time.monotonic() - started:.0f} s")
    return tree


def debootstrap(target: Target, tree: Path) -> None:
    log(f"base {target.arch}: mmdebstrap {SUITE}")
    components = "main,non-free-firmware" if target.arch == "arm64" else "main"
    hooks = []
    if target.arch == "arm64":  # raspi-firmware: no cma= (can leave a Pi 4 unbootable), root by label
        hooks.append(
            '--essential-hook=mkdir -p "$1/etc/default" && '
            "printf 'ROOTPART=LABEL=FTROOT\\nCMA=0\\nCONSOLES=\"ttyS1,115200 tty0\"\\n' "
            '> "$1/etc/default/raspi-firmware"'
        )
    run(
        "mmdebstrap", "--variant=apt", f"--architectures={target.arch}", f"--components={components}",
        f"--include={','.join((target.kernel, *COMMON_PACKAGES, *target.packages))}",
        "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        # our /etc/default/raspi-firmware (written before the package) is kept, never asked about
        "--dpkgopt=force-confdef", "--dpkgopt=force-confold",
        *hooks, SUITE, tree,
    )  # fmt: skip


def wheel_platform(arch: str) -> list[str]:
    machine = {"amd64": "x86_64", "arm64": "aarch64"}[arch]
    platforms = [f"manylinux_2_{n}_{machine}" for n in (36, 35, 34, 28, 17)] + [f"manylinux2014_{machine}"]
    return [arg for p in platforms for arg in ("--platform", p)]


def install_python_environment(target: Target, tree: Path, cache: Path) -> None:
    """``/opt/fieldtriage/.venv`` made by the image's own Python from wheels for the target."""
    wheels = cache / f"wheels-{target.arch}"
    wheels.mkdir(parents=True, exist_ok=True)
    log(f"wheels {target.arch}: {', '.join(WHEEL_DEPENDENCIES)}")
    run(
        sys.executable, "-m", "pip", "download", "--quiet", "--dest", wheels, "--only-binary=:all:",
        *wheel_platform(target.arch), "--python-version", "3.11", "--implementation", "cp",
        *WHEEL_DEPENDENCIES,
    )  # fmt: skip
    inside = tree / "tmp" / "wheels"
    shutil.copytree(wheels, inside, dirs_exist_ok=True)
    chroot(tree, "python3", "-m", "venv", "/opt/fieldtriage/.venv")
    chroot(
        tree, VENV_PIP, "install", "--quiet", "--no-index", "--find-links", "/tmp/wheels",
        *WHEEL_DEPENDENCIES,
    )  # fmt: skip
    shutil.rmtree(inside)
    expose_debian_python(tree)


def expose_debian_python(tree: Path) -> None:
    """``DEBIAN_PYTHON``'s modules (and their metadata, for ``pip list``) linked into one folder that
    a .pth file puts on the venv's path; the venv sees nothing else of Debian's dist-packages."""
    dist_packages = tree / "usr/lib/python3/dist-packages"
    folder = tree / DEBIAN_PYTHON_FOLDER.lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    for module in DEBIAN_PYTHON:
        found = [dist_packages / module, *dist_packages.glob(f"{module}-*.*-info")]
        if not found[0].is_dir():
            raise SystemExit(f"image-build: {DEBIAN_PYTHON[module]} has no {found[0]}")
        for item in found:
            link = folder / item.name
            link.unlink(missing_ok=True)
            link.symlink_to(Path("/usr/lib/python3/dist-packages") / item.name)
    (site_packages,) = (tree / "opt/fieldtriage/.venv/lib").glob("python3*/site-packages")
    (site_packages / "fieldtriage-debian-python.pth").write_text(DEBIAN_PYTHON_FOLDER + "\n")
    checks = "; ".join(f"import {m}; assert {m}.__file__.startswith({DEBIAN_PYTHON_FOLDER!r}), {m}.__file__"
                       for m in DEBIAN_PYTHON)  # fmt: skip
    chroot(tree, "/opt/fieldtriage/.venv/bin/python", "-c", checks)


VENV_PIP = "/opt/fieldtriage/.venv/bin/pip"
DPKG_FORMAT = "${Package}\t${Version}\t${Architecture}\n"
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LC_ALL": "C.UTF-8",
    "PIP_CONFIG_FILE": "/dev/null",
}


def chroot(tree: Path, *argv: str) -> None:
    """A command inside the tree (qemu-user through binfmt for a foreign architecture)."""
    with mounted_pseudo_filesystems(tree):
        run("chroot", tree, *argv, env=CHROOT_ENV)


class mounted_pseudo_filesystems:
    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.mounted: list[Path] = []

    def __enter__(self) -> None:
        for name, kind in (("proc", "proc"), ("sys", "sysfs"), ("dev", "devtmpfs")):
            target = self.tree / name
            target.mkdir(exist_ok=True)
            run("mount", "-t", kind, kind, target)
            self.mounted.append(target)

    def __exit__(self, *exc: object) -> None:
        for target in reversed(self.mounted):
            subprocess.run(["umount", "-l", target], check=False)


def kernel_version(tree: Path) -> str:
    (kernel,) = sorted((tree / "boot").glob("vmlinuz-*"))
    return kernel.name.removeprefix("vmlinuz-")


def install_gpio_sim(tree: Path, cache: Path) -> None:
    """gpio-sim (with irq_sim, which Debian's config leaves out), built for the image's kernel from
    Debian's own linux-source and headers; the kernel ships neither gpio-sim nor gpio-mockup."""
    version = kernel_version(tree)
    upstream = version.split("-")[0]  # 6.1.0
    work = cache / f"gpio-sim-{version}"
    module = work / "build" / "gpio-sim.ko"
    if not module.exists():
        log(f"gpio-sim for {version}")
        shutil.rmtree(work, ignore_errors=True)
        (work / "debs").mkdir(parents=True)
        flavour_common = version.rsplit("-", 1)[0] + "-common"
        series = ".".join(upstream.split(".")[:2])
        packages = [f"linux-headers-{version}", f"linux-headers-{flavour_common}", f"linux-kbuild-{series}",
                    f"linux-source-{series}"]  # fmt: skip
        run("apt-get", "download", *packages, cwd=work / "debs")
        root = work / "root"
        for deb in (work / "debs").glob("*.deb"):
            run("dpkg-deb", "-x", deb, root)
        (source_tar,) = (root / "usr" / "src").glob("linux-source-*.tar.xz")
        prefix = source_tar.name.removesuffix(".tar.xz")
        build = work / "build"
        build.mkdir()
        for member in ("drivers/gpio/gpio-sim.c", "drivers/gpio/gpiolib.h", "kernel/irq/irq_sim.c"):
            run("tar", "-xJf", source_tar, "-C", work, f"{prefix}/{member}")
            shutil.copy(work / prefix / member, build / Path(member).name)
        (build / "Kbuild").write_text("obj-m := gpio-sim.o\ngpio-sim-y := gpio-sim-main.o irq_sim.o\n")
        (build / "gpio-sim.c").rename(build / "gpio-sim-main.c")
        # irq_to_desc() is not exported to modules; the handler irq_sim installs is what the exported
        # generic_handle_irq_safe() calls
        irq_sim = build / "irq_sim.c"
        irq_sim.write_text(
            irq_sim.read_text().replace(
                "handle_simple_irq(irq_to_desc(irqnum));", "generic_handle_irq_safe(irqnum);"
            )
        )
        headers = root / "usr" / "src" / f"linux-headers-{version}"
        # the flavour's Makefile includes the common headers' by an absolute path: point it here
        makefile = headers / "Makefile"
        makefile.write_text(makefile.read_text().replace("/usr/src/", f"{root}/usr/src/"))
        run("make", "-C", headers, f"M={build}", "modules", stdout=subprocess.DEVNULL)
    destination = tree / "lib" / "modules" / version / "extra"
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy(module, destination / "gpio-sim.ko")
    chroot(tree, "depmod", version)


# ---- stage 2: assemble ----------------------------------------------------------------------------


def assemble(target: Target, base: Path, out: Path, station: Path, cache: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    tree = out / "root"
    if tree.exists():
        run("rm", "-rf", "--one-file-system", tree)
    log("assemble: copying the base tree")
    run("cp", "-a", "--reflink=auto", base, tree)
    for marker in (".complete", ".packages-installed", ".python-installed"):
        (tree / marker).unlink(missing_ok=True)
    install_fieldtriage(tree, cache / f"wheels-{target.arch}")
    overlay(tree, target, station)
    manifest(tree, out, target)
    version = kernel_version(tree)
    for name in (f"vmlinuz-{version}", f"initrd.img-{version}"):
        shutil.copy(tree / "boot" / name, out / name.split("-", 1)[0])
    disk = make_disk(target, tree, out)
    return disk


def install_fieldtriage(tree: Path, wheels: Path) -> None:
    log("assemble: fieldtriage wheel")
    with tempfile.TemporaryDirectory() as scratch:
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", scratch, REPO)
        inside = tree / "tmp" / "wheels"
        shutil.copytree(wheels, inside, dirs_exist_ok=True)
        for wheel in Path(scratch).glob("*.whl"):
            shutil.copy(wheel, inside)
        chroot(
            tree, VENV_PIP, "install", "--quiet", "--no-index", "--find-links", "/tmp/wheels",
            "--force-reinstall", "--no-deps", "fieldtriage",
        )  # fmt: skip
        shutil.rmtree(inside)
    shutil.copytree(REPO / "docs", tree / "opt" / "fieldtriage" / "docs", dirs_exist_ok=True)
    for name in ("README.md", "LICENSE", "ARCHITECTURE.md"):
        shutil.copy(REPO / name, tree / "opt" / "fieldtriage" / name)


def overlay(tree: Path, target: Target, station: Path) -> None:
    """Files of the appliance: the unit and rules from systemd/, the rest from image-build/rootfs/."""
    log("assemble: appliance files")
    shutil.copytree(HERE / "rootfs", tree, dirs_exist_ok=True, symlinks=True)
    if target.test_instruments:
        shutil.copytree(HERE / "rootfs-test", tree, dirs_exist_ok=True, symlinks=True)
    systemd = REPO / "systemd"
    # the agent, and the clock helper it asks to step the clock (agent/daemon/clock_step.py)
    for unit in ("fieldtriage-agent.service", "fieldtriage-clock.path", "fieldtriage-clock.service"):
        shutil.copy(systemd / unit, tree / "etc/systemd/system" / unit)
    shutil.copy(
        systemd / "60-fieldtriage-readonly.rules", tree / "etc/udev/rules.d/60-fieldtriage-readonly.rules"
    )
    shutil.copy(systemd / "fieldtriage.conf", tree / "etc/tmpfiles.d/fieldtriage.conf")
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in (
        "fieldtriage-agent.service",
        "fieldtriage-provision.service",
        "fieldtriage-clock.path",
        *(
            ("fieldtriage-test-gpio-sim.service", "fieldtriage-test-lights.service")
            if target.test_instruments
            else ()
        ),
    ):
        link = wants / unit
        link.unlink(missing_ok=True)
        link.symlink_to(f"/etc/systemd/system/{unit}")
    (tree / "etc/machine-id").write_text("")  # systemd puts a transient id over it (read-only root)
    (tree / "etc/hostname").write_text("fieldtriage-kiosk\n")
    (tree / "var/lib/fieldtriage").mkdir(parents=True, exist_ok=True)
    for name in ("journal.pub", "signing.pub"):  # the kiosk journals only to its own unit's station
        shutil.copy(station / name, tree / "etc/fieldtriage" / f"station-{name}")


def manifest(tree: Path, out: Path, target: Target) -> None:
    packages = subprocess.run(
        ["dpkg-query", f"--admindir={tree}/var/lib/dpkg", "-W", "-f", DPKG_FORMAT],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    python = subprocess.run(
        ["chroot", str(tree), "/opt/fieldtriage/.venv/bin/python", "-m", "pip", "list", "--format=freeze"],
        capture_output=True, text=True, check=False, env={**CHROOT_ENV, "PATH": os.environ.get("PATH", "")},
    ).stdout  # fmt: skip
    (out / "manifest.txt").write_text(
        f"# fieldtriage image, {target.arch}, Debian {SUITE}\n# Debian packages\n{packages}"
        f"# Python (/opt/fieldtriage/.venv)\n{python}"
    )


def make_disk(target: Target, tree: Path, out: Path) -> Path:
    """Filesystems from the tree (mkfs -d, no mount), copied into a partitioned disk image."""
    log("assemble: filesystems and disk")
    parts: list[tuple[str, Path, int]] = []
    if target.firmware_mib:
        firmware = out / "firmware.vfat"
        firmware.unlink(missing_ok=True)
        run(
            "mkfs.vfat",
            "-n",
            "RASPIFIRM",
            "-C",
            firmware,
            str(target.firmware_mib * 1024),
            stdout=subprocess.DEVNULL,
        )
        for item in sorted((tree / "boot" / "firmware").rglob("*")):
            relative = item.relative_to(tree / "boot" / "firmware").as_posix()
            run(
                "mmd" if item.is_dir() else "mcopy",
                "-i",
                firmware,
                *([] if item.is_dir() else [item]),
                f"::/{relative}",
            )
        parts.append(("c", firmware, target.firmware_mib))
    root = out / "root.ext4"
    root.unlink(missing_ok=True)
    run("mkfs.ext4", "-q", "-L", "FTROOT", "-d", tree, root, f"{target.root_mib}M")
    parts.append(("83", root, target.root_mib))
    data = out / "data.ext4"
    data.unlink(missing_ok=True)
    run("mkfs.ext4", "-q", "-L", "FTDATA", data, f"{target.data_mib}M")
    parts.append(("83", data, target.data_mib))
    disk = out / f"fieldtriage-{target.arch}.img"
    with disk.open("wb") as f:
        f.truncate((1 + sum(size for _, _, size in parts) + 1) * MiB)
    script = "label: dos\n" + "".join(f",{size * MiB // 512},{kind}\n" for kind, _, size in parts)
    run("sfdisk", "-q", disk, input=script)
    layout = json.loads(run("sfdisk", "-J", disk, capture_output=True).stdout)
    for (_, image, _), entry in zip(parts, layout["partitiontable"]["partitions"], strict=True):
        run("dd", f"if={image}", f"of={disk}", "bs=4M", f"seek={entry['start'] * 512}", "oflag=seek_bytes",
            "conv=notrunc,sparse", "status=none")  # fmt: skip
        image.unlink()
    return disk


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=sorted(TARGETS), default="amd64")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the disk image, kernel and manifest"
    )
    parser.add_argument("--cache", type=Path, default=REPO / "build" / "cache", help="stage cache")
    parser.add_argument(
        "--station", type=Path, required=True,
        help="the unit's station folder (fieldtriage station init): its journal.pub and signing.pub go in "
        "the image",
    )  # fmt: skip
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("image-build: needs root (mmdebstrap, chroot, loop-free filesystem images)", file=sys.stderr)
        return 2
    target = TARGETS[args.arch]
    missing = [name for name in ("journal.pub", "signing.pub") if not (args.station / name).is_file()]
    if missing:
        hint = "make it with: fieldtriage station init"
        print(f"image-build: {args.station}: no {', '.join(missing)} ({hint})",
              file=sys.stderr)  # fmt: skip
        return 2
    started = time.monotonic()
    base = build_base(target, args.cache)
    disk = assemble(target, base, args.out, args.station, args.cache)
    log(f"{disk} ({disk.stat().st_size // MiB} MiB) in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
