# Quick start: `make demo` and `make test`, as root on a fresh Debian 12 machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PACKAGES := agent filters station
# udev for hotplug; util-linux/fdisk/e2fsprogs/dosfstools/mtools/exfatprogs/ntfs-3g/xfsprogs/btrfs-progs/
# genisoimage/cryptsetup-bin build and read test images; exfat-fuse/fusefat/fuseiso/ntfs-3g are the FUSE
# drivers for what this kernel lacks; xmount is the copy-on-write layer that journals are replayed onto
# where the kernel has no device-mapper snapshot; b3sum is compared against in tests; chromium renders
# the station's pages in tests (DOM, 800 px, screenshot, print to PDF).
APT_PACKAGES := udev util-linux fdisk e2fsprogs dosfstools mtools exfatprogs exfat-fuse ntfs-3g \
	fusefat fuseiso xfsprogs btrfs-progs genisoimage xmount cryptsetup-bin b3sum chromium

.PHONY: demo test lint typecheck unit bench deps udevd venv clean image system-test image-deps

ARCH ?= amd64
STATION ?=
# mmdebstrap builds the image; qemu-user-static and binfmt-support run arm64 packages' scripts on an
# amd64 host; qemu-system-x86 and qemu-utils boot the amd64 image for the system test; swig builds lgpio
# where no wheel exists; f2fs-tools makes the system test's f2fs stick
IMAGE_PACKAGES := mmdebstrap qemu-system-x86 qemu-utils dosfstools mtools swig f2fs-tools genisoimage
ifeq ($(ARCH),arm64)
IMAGE_PACKAGES += qemu-user-static binfmt-support arch-test
endif

demo: venv deps udevd
	$(VENV)/bin/fieldtriage demo

test: venv lint typecheck unit

lint: venv
	$(VENV)/bin/ruff check $(PACKAGES) tests bench image-build
	$(VENV)/bin/ruff format --check $(PACKAGES) tests bench image-build

typecheck: venv
	$(VENV)/bin/mypy $(PACKAGES)
	$(VENV)/bin/mypy image-build/build.py

unit: venv deps udevd
	$(VENV)/bin/pytest -q --doctest-modules --ignore=tests/system $(PACKAGES) tests

# Hotplug tests need a running udevd (not started on this kind of machine); start it if we can.
udevd: deps
	@if [ "$$(id -u)" = 0 ] && ! udevadm control --ping >/dev/null 2>&1; then \
		/lib/systemd/systemd-udevd --daemon && udevadm trigger --subsystem-match=block && udevadm settle; \
	fi

# Benchmarks print Markdown tables (docs/performance.md); they take minutes, never part of `make test`.
bench: venv deps
	$(PY) bench/bench_filter.py
	$(PY) bench/bench_scan.py
	$(PY) bench/bench_journal.py

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || (apt-get update -qq && apt-get install -y -qq python3 python3-venv)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# System tools the tests compare with or drive; installed only when one is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else echo "missing apt packages:$$missing (tests that need them will skip)"; fi; \
	fi

image-deps:
	@missing=""; for p in $(IMAGE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# The kiosk image: make image ARCH=amd64|arm64 STATION=~/.fieldtriage-station (root; docs/operations.md)
image: venv deps image-deps
	@test -n "$(STATION)" || { echo "make image: give STATION=FOLDER (the unit's station: fieldtriage station init)"; exit 2; }
	$(PY) image-build/build.py --arch $(ARCH) --out build/image-$(ARCH) --cache build/cache --station $(STATION)

# The amd64 image booted under QEMU with USB hotplug, gpio-sim lights and power cuts (tests/system)
system-test: venv deps image-deps
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/system

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
