"""Which USB devices are phones, what they say they are, and what state they are in.

A phone is a udev ``usb_device`` with a still-image interface (class 06: PTP, and MTP on some
devices), or an interface named "MTP" (Android's MTP function is vendor class ff), or one that
libmtp's or libgphoto2's udev rules mark (``ID_MTP_DEVICE``, ``ID_GPHOTO2``), or an Apple
iPhone/iPad (vendor 05ac, products 12xx), or a device of an Android phone maker with no
mass-storage interface (a phone in "charging only"). The identity comes from
the USB descriptors, so it is known even when the phone is locked.

States an officer can act on (``phone_state``), each with its own signal:

* ``ready``: the phone shows storages: it is scanned;
* ``unlock``: an Android in "charging only", or MTP with no storage (locked): "unlock the phone and
  choose File transfer";
* ``trust``: an iPhone that shows no storage or only its placeholder (0xfeedface): "unlock the
  iPhone and tap Trust".

Example::

    >>> phone_kind({"ID_USB_INTERFACES": ":060101:", "ID_VENDOR_ID": "18d1"})
    'mtp'
    >>> phone_kind({"ID_USB_INTERFACES": ":080650:", "ID_VENDOR_ID": "04e8"}) is None
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from agent.devices.identity import DeviceIdentity
from agent.phones.camera import Storage

PhoneKind = Literal["mtp", "ptp", "apple", "charge_only"]
PhoneState = Literal["ready", "unlock", "trust"]
APPLE = "05ac"
MTP_INTERFACE = "FIELDTRIAGE_MTP_INTERFACE"  # set by usb_properties: an interface named "MTP"
# USB vendor ids of Android phone makers (a device of theirs without mass storage is a phone)
ANDROID_VENDORS = frozenset(
    ("18d1", "04e8", "22b8", "1004", "0bb4", "0fce", "12d1", "2717", "2a70", "22d9",
     "2d95", "19d2", "17ef", "2e04", "1ebf", "0e8d", "1bbb", "2a45", "29a9")
)  # fmt: skip
STATE_MESSAGES: dict[PhoneState, str] = {
    "ready": "phone ready: scanning",
    "unlock": "unlock the phone and choose File transfer",
    "trust": "unlock the iPhone and tap Trust",
}
PHONE_PROPERTIES = (
    MTP_INTERFACE, "ID_USB_INTERFACES", "ID_MTP_DEVICE", "ID_GPHOTO2", "BUSNUM", "DEVNUM", "PRODUCT",
    "ID_VENDOR_FROM_DATABASE", "ID_MODEL_FROM_DATABASE", "ID_USB_MODEL", "ID_USB_VENDOR",
)  # fmt: skip


def interfaces(properties: Mapping[str, str]) -> list[str]:
    """udev's ``ID_USB_INTERFACES`` (``:060101:ff4201:``) as class/subclass/protocol words."""
    return [word for word in properties.get("ID_USB_INTERFACES", "").split(":") if word]


def phone_kind(properties: Mapping[str, str]) -> PhoneKind | None:
    """What kind of phone a ``usb_device``'s udev properties describe, or None (not a phone)."""
    classes = {word[:2].lower() for word in interfaces(properties)}
    vendor = properties.get("ID_VENDOR_ID", "").lower()
    product = properties.get("ID_MODEL_ID", "").lower()
    if "08" in classes or "09" in classes:  # a USB disk or a hub: never taken as a phone
        return None
    if vendor == APPLE and (product.startswith("12") or "06" in classes):
        return "apple"
    if "06" in classes or properties.get("ID_MTP_DEVICE") == "1" or properties.get(MTP_INTERFACE) == "1":
        return "ptp" if properties.get("ID_MTP_DEVICE") != "1" and vendor not in ANDROID_VENDORS else "mtp"
    if properties.get("ID_GPHOTO2") == "1":
        return "ptp"
    if vendor in ANDROID_VENDORS:
        return "charge_only"
    return None


def usb_properties(device: Any) -> dict[str, str]:
    """A ``usb_device``'s udev properties, with ``MTP_INTERFACE`` set when one of its interfaces
    calls itself "MTP": Android's MTP function is a vendor-class interface (ff/ff/00), not class 06,
    and is known by that name (libmtp's udev rules probe every USB device for it instead, sending
    requests to evidence sticks too: not installed)."""
    properties = {str(k): str(v) for k, v in device.properties.items()}
    try:
        for child in device.children:
            if child.device_type == "usb_interface":
                name = child.attributes.get("interface")
                if isinstance(name, bytes) and name.strip() == b"MTP":
                    properties[MTP_INTERFACE] = "1"
    except (OSError, KeyError):
        pass
    return properties


def port_path(device: Any) -> str:
    """A ``usb_device``'s port in the form of udev's ``ID_PATH`` for the disks behind it
    (``pci-0000:00:14.0-usb-0:1.2:1.0``), so that a bay's ``port`` glob matches phones and sticks
    in the same socket alike."""
    parts: list[str] = []
    parent = device.parent
    while parent is not None:
        if parent.subsystem in ("pci", "platform"):
            parts.insert(0, f"{parent.subsystem}-{parent.sys_name}")
        parent = parent.parent
    name = str(device.sys_name)
    chain = name.split("-", 1)[1] if "-" in name else name
    return "-".join([*parts, f"usb-0:{chain}:1.0"])


def phone_identity(properties: Mapping[str, str], port: str, devpath: str) -> DeviceIdentity:
    """The identity of a phone (``kind`` "phone"): names and serial from its USB descriptors."""
    devnode = properties.get("DEVNAME", "")
    return DeviceIdentity(
        devnode=devnode,
        devpath=devpath,
        sys_name=devpath.rsplit("/", 1)[-1],
        size=0,
        bus="usb",
        vendor=(properties.get("ID_VENDOR") or properties.get("ID_VENDOR_FROM_DATABASE", ""))
        .replace("_", " ")
        .strip(),
        model=(properties.get("ID_MODEL") or properties.get("ID_MODEL_FROM_DATABASE", ""))
        .replace("_", " ")
        .strip(),
        serial=properties.get("ID_SERIAL_SHORT", ""),
        vendor_id=properties.get("ID_VENDOR_ID", ""),
        model_id=properties.get("ID_MODEL_ID", ""),
        port_path=port,
        removable=True,
        kind="phone",
        phone_kind=phone_kind(properties) or "",
        properties={k: properties[k] for k in PHONE_PROPERTIES if k in properties},
    )


def gphoto_port(identity: DeviceIdentity) -> str:
    """libgphoto2's name for the phone's USB port: ``usb:BBB,DDD``."""
    bus, number = identity.properties.get("BUSNUM", ""), identity.properties.get("DEVNUM", "")
    if not (bus.isdigit() and number.isdigit()):
        parts = identity.devnode.rsplit("/", 2)  # /dev/bus/usb/001/005
        bus, number = (parts[-2], parts[-1]) if len(parts) == 3 else ("", "")
    return f"usb:{int(bus or 0):03d},{int(number or 0):03d}"


def phone_state(identity: DeviceIdentity, storages: Sequence[Storage] | None) -> PhoneState:
    """The state from what the phone shows: ``storages`` None when no session could be opened."""
    apple = identity.phone_kind == "apple"
    if identity.phone_kind == "charge_only" or storages is None:
        return "trust" if apple else "unlock"
    if not [s for s in storages if not s.dummy]:
        return "trust" if apple else "unlock"
    return "ready"
