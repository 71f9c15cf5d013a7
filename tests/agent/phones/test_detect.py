"""Which USB devices are phones, their identity and port, and the states an officer can act on."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agent.phones.camera import DUMMY_STORAGE_ID, Storage
from agent.phones.detect import (
    gphoto_port,
    phone_identity,
    phone_kind,
    phone_state,
    port_path,
    usb_properties,
)

PIXEL = {"ID_VENDOR_ID": "18d1", "ID_MODEL_ID": "4ee1", "ID_USB_INTERFACES": ":060101:", "BUSNUM": "001",
         "DEVNUM": "012", "ID_VENDOR": "Google", "ID_MODEL": "Pixel_7",
         "ID_SERIAL_SHORT": "28041FDH"}  # fmt: skip


@pytest.mark.parametrize(
    ("properties", "kind"),
    [
        (PIXEL, "mtp"),
        ({"ID_USB_INTERFACES": ":ff4201:", "ID_VENDOR_ID": "18d1"}, "charge_only"),
        ({"ID_USB_INTERFACES": ":060101:ffff00:", "ID_VENDOR_ID": "05ac", "ID_MODEL_ID": "12a8"}, "apple"),
        ({"ID_USB_INTERFACES": ":ff0000:", "ID_VENDOR_ID": "05ac", "ID_MODEL_ID": "12a8"}, "apple"),
        ({"ID_USB_INTERFACES": ":030101:", "ID_VENDOR_ID": "05ac", "ID_MODEL_ID": "0250"}, None),  # keyboard
        ({"ID_USB_INTERFACES": ":060101:", "ID_VENDOR_ID": "04a9"}, "ptp"),  # a camera
        (
            {"ID_USB_INTERFACES": ":ffff00:", "ID_MTP_DEVICE": "1", "ID_VENDOR_ID": "46f4"},
            "mtp",
        ),  # QEMU usb-mtp
        ({"ID_USB_INTERFACES": ":080650:", "ID_VENDOR_ID": "04e8"}, None),  # a Samsung USB stick
        ({"ID_USB_INTERFACES": ":090000:", "ID_VENDOR_ID": "1d6b"}, None),  # a hub
        ({}, None),
    ],
)
def test_phone_kinds(properties: dict[str, str], kind: str | None) -> None:
    assert phone_kind(properties) == kind


@dataclass
class Node:
    subsystem: str
    sys_name: str
    parent: Node | None = None


def test_the_port_path_has_the_form_of_the_disks_id_path() -> None:
    pci = Node("pci", "0000:00:14.0", Node("platform", "fd500000.pcie"))
    usb = Node("usb", "1-1.2", Node("usb", "usb1", pci))
    assert port_path(usb) == "platform-fd500000.pcie-pci-0000:00:14.0-usb-0:1.2:1.0"


def test_identity_and_gphoto_port() -> None:
    identity = phone_identity(PIXEL, "pci-x-usb-0:1:1.0", "/devices/pci/usb1/1-1")
    assert identity.kind == "phone" and identity.present and identity.phone_kind == "mtp"
    assert "Pixel 7" in identity.label() and identity.serial == "28041FDH"
    assert gphoto_port(identity) == "usb:001,012"
    assert identity.describe()["kind"] == "phone"


def test_states() -> None:
    android = phone_identity(PIXEL, "p", "/d/1-1")
    iphone = phone_identity(PIXEL | {"ID_VENDOR_ID": "05ac", "ID_MODEL_ID": "12a8"}, "p", "/d/1-1")
    placeholder = [Storage("/store_feedface", "", DUMMY_STORAGE_ID)]
    storage = [Storage("/store_00010001", "Internal shared storage", 0x00010001)]
    assert phone_state(android, []) == "unlock"
    assert phone_state(android, None) == "unlock"
    assert phone_state(android, storage) == "ready"
    assert phone_state(iphone, placeholder) == "trust"
    assert phone_state(iphone, []) == "trust"
    assert phone_state(iphone, storage) == "ready"


@dataclass
class Interface:
    device_type: str
    attributes: dict[str, bytes]


@dataclass
class UsbDevice:
    properties: dict[str, str]
    children: list[Interface]


def test_an_interface_named_mtp_marks_the_phone() -> None:
    android = UsbDevice(
        {"ID_USB_INTERFACES": ":ffff00:", "ID_VENDOR_ID": "18d1"},
        [Interface("usb_interface", {"interface": b"MTP\n"})],
    )
    assert phone_kind(usb_properties(android)) == "mtp"
    charging = UsbDevice(
        {"ID_USB_INTERFACES": ":ff4201:", "ID_VENDOR_ID": "18d1"}, [Interface("usb_interface", {})]
    )
    assert phone_kind(usb_properties(charging)) == "charge_only"
