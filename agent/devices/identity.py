"""What a plugged device is, as udev and sysfs describe it.

Example::

    >>> identity = DeviceIdentity.from_properties(
    ...     {"DEVNAME": "/dev/sdb", "DEVPATH": "/devices/x/block/sdb", "ID_BUS": "usb",
    ...      "ID_VENDOR": "SanDisk", "ID_MODEL": "Cruzer", "ID_SERIAL_SHORT": "4C53", "DISKSEQ": "9"},
    ...     size=16 << 30)
    >>> identity.label()
    'SanDisk Cruzer (serial 4C53, /dev/sdb)'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from filters.errors import printable

KEPT_PROPERTIES = (
    "ID_BUS", "ID_VENDOR", "ID_VENDOR_ID", "ID_MODEL", "ID_MODEL_ID", "ID_SERIAL", "ID_SERIAL_SHORT",
    "ID_PATH", "ID_PART_TABLE_TYPE", "ID_PART_TABLE_UUID", "ID_FS_TYPE", "ID_FS_UUID", "ID_FS_LABEL",
    "ID_USB_DRIVER", "ID_DRIVE_FLASH_SD", "DISK_MEDIA_CHANGE", "DISKSEQ", "DEVTYPE", "MAJOR", "MINOR",
)  # fmt: skip


@dataclass(frozen=True)
class DeviceIdentity:
    """A whole disk: where it is, what it says it is, how big; ``properties`` keeps udev's words."""

    devnode: str
    devpath: str
    sys_name: str
    size: int
    bus: str = ""
    vendor: str = ""
    model: str = ""
    serial: str = ""
    vendor_id: str = ""
    model_id: str = ""
    port_path: str = ""
    diskseq: str = ""
    removable: bool = False
    rotational: bool = False
    backing_file: str = ""
    kind: str = "disk"  # or "phone" (agent.phones.detect: read over MTP/PTP, not mounted)
    phone_kind: str = ""  # for a phone: mtp, ptp, apple or charge_only
    properties: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def present(self) -> bool:
        """A phone, or a disk with media in it (an empty card reader or a detached loop has size 0)."""
        return self.kind == "phone" or self.size > 0

    @classmethod
    def from_properties(
        cls,
        properties: Mapping[str, str],
        *,
        size: int,
        removable: bool = False,
        rotational: bool = False,
        backing_file: str = "",
    ) -> DeviceIdentity:
        devnode = properties.get("DEVNAME", "")
        return cls(
            devnode=devnode,
            devpath=properties.get("DEVPATH", ""),
            sys_name=devnode.rsplit("/", 1)[-1],
            size=size,
            bus=properties.get("ID_BUS", ""),
            vendor=properties.get("ID_VENDOR", "").replace("_", " ").strip(),
            model=properties.get("ID_MODEL", "").replace("_", " ").strip(),
            serial=properties.get("ID_SERIAL_SHORT", "") or properties.get("ID_SERIAL", ""),
            vendor_id=properties.get("ID_VENDOR_ID", ""),
            model_id=properties.get("ID_MODEL_ID", ""),
            port_path=properties.get("ID_PATH", ""),
            diskseq=properties.get("DISKSEQ", ""),
            removable=removable,
            rotational=rotational,
            backing_file=backing_file,
            properties={k: properties[k] for k in KEPT_PROPERTIES if k in properties},
        )

    @classmethod
    def from_udev(cls, device: Any) -> DeviceIdentity:
        """From a ``pyudev.Device`` of a whole disk (sysfs attributes read once)."""
        attributes = device.attributes

        def attribute(name: str) -> str:
            try:
                value = attributes.get(name)
            except (OSError, KeyError):
                return ""
            return value.decode(errors="replace").strip() if isinstance(value, bytes) else ""

        sectors = attribute("size")
        return cls.from_properties(
            {str(k): str(v) for k, v in device.properties.items()},
            size=int(sectors) * 512 if sectors.isdigit() else 0,
            removable=attribute("removable") == "1",
            rotational=attribute("queue/rotational") == "1",
            backing_file=attribute("loop/backing_file"),
        )

    def label(self) -> str:
        """How an officer or engineer would name it."""
        name = " ".join(part for part in (self.vendor, self.model) if part) or "unnamed device"
        serial = f"serial {self.serial}, " if self.serial else ""
        where = f"phone at {self.devnode}" if self.kind == "phone" else self.devnode
        return printable(f"{name} ({serial}{where})")

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            **({"phone_kind": self.phone_kind} if self.kind == "phone" else {}),
            "devnode": self.devnode,
            "devpath": self.devpath,
            "size": self.size,
            "bus": self.bus,
            "vendor": self.vendor,
            "model": self.model,
            "serial": self.serial,
            "vendor_id": self.vendor_id,
            "model_id": self.model_id,
            "port_path": self.port_path,
            "diskseq": self.diskseq,
            "removable": self.removable,
            "rotational": self.rotational,
            "backing_file": self.backing_file,
            "properties": dict(self.properties),
        }
