"""Exhibit references: a barcode scanner's labels tie the next device plugged in to its exhibit.

``keys`` turns a keyboard's key events into labels (US layout), ``reader`` is the scanner behind a
small interface (``LabelSource``: python-evdev with an exclusive grab, or a fake), ``pending`` the
one reference waiting for a device, dropped after ``exhibit.timeout_seconds``.
"""
