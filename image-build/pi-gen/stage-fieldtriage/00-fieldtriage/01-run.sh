#!/bin/bash -e
# Install fieldtriage into the Raspberry Pi OS root, as image-build/build.py does for Debian.
# Needs FIELDTRIAGE_SRC (this repository), FIELDTRIAGE_WHEELS (wheels for aarch64: build.py's
# build/cache/wheels-arm64 after one arm64 build, plus the fieldtriage wheel) and FIELDTRIAGE_STATION
# (the unit's station folder) in pi-gen's config. NOT TESTED: pi-gen's stage0 needs the Raspberry Pi
# archive, which the machines this project is built on cannot reach.
: "${FIELDTRIAGE_SRC:?set FIELDTRIAGE_SRC in the pi-gen config}"
: "${FIELDTRIAGE_WHEELS:?set FIELDTRIAGE_WHEELS in the pi-gen config}"
: "${FIELDTRIAGE_STATION:?set FIELDTRIAGE_STATION in the pi-gen config}"

install -d "${ROOTFS_DIR}/tmp/fieldtriage-wheels"
cp "${FIELDTRIAGE_WHEELS}"/*.whl "${ROOTFS_DIR}/tmp/fieldtriage-wheels/"
on_chroot <<'CHROOT'
python3 -m venv /opt/fieldtriage/.venv
/opt/fieldtriage/.venv/bin/pip install --no-index --find-links /tmp/fieldtriage-wheels fieldtriage
rm -rf /tmp/fieldtriage-wheels
CHROOT

# the appliance's files; Raspberry Pi OS keeps its own fstab (PARTUUIDs): the read-only root and the
# data partition are described in docs/operations.md and set up by hand on this variant
cp -r "${FIELDTRIAGE_SRC}/image-build/rootfs/etc/fieldtriage" "${ROOTFS_DIR}/etc/"
cp "${FIELDTRIAGE_SRC}/image-build/rootfs/etc/modules-load.d/fieldtriage.conf" "${ROOTFS_DIR}/etc/modules-load.d/"
install -d "${ROOTFS_DIR}/etc/systemd/journald.conf.d"
cp "${FIELDTRIAGE_SRC}/image-build/rootfs/etc/systemd/journald.conf.d/fieldtriage.conf" \
	"${ROOTFS_DIR}/etc/systemd/journald.conf.d/"
cp "${FIELDTRIAGE_SRC}/image-build/rootfs/etc/systemd/system/fieldtriage-provision.service" \
	"${FIELDTRIAGE_SRC}/systemd/fieldtriage-agent.service" "${ROOTFS_DIR}/etc/systemd/system/"
cp "${FIELDTRIAGE_SRC}/systemd/60-fieldtriage-readonly.rules" "${ROOTFS_DIR}/etc/udev/rules.d/"
cp "${FIELDTRIAGE_SRC}/systemd/fieldtriage.conf" "${ROOTFS_DIR}/etc/tmpfiles.d/"
cp "${FIELDTRIAGE_STATION}/journal.pub" "${ROOTFS_DIR}/etc/fieldtriage/station-journal.pub"
cp "${FIELDTRIAGE_STATION}/signing.pub" "${ROOTFS_DIR}/etc/fieldtriage/station-signing.pub"
cp -r "${FIELDTRIAGE_SRC}/docs" "${ROOTFS_DIR}/opt/fieldtriage/"

on_chroot <<'CHROOT'
systemctl enable fieldtriage-provision.service fieldtriage-agent.service
# Raspberry Pi OS Lite ships udisks2: it must never see evidence (the udev rule also tells it so)
systemctl mask udisks2.service 2>/dev/null || true
systemctl disable ssh.service 2>/dev/null || true
CHROOT
