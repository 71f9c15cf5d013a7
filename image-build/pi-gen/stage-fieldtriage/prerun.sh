#!/bin/bash -e
# fieldtriage stage for pi-gen: starts from the previous stage's root (stage2, Raspberry Pi OS Lite).
if [ ! -d "${ROOTFS_DIR}" ]; then
	copy_previous
fi
