"""Phones over MTP and PTP: the camera interface, its backends, the phone states and the scan."""
