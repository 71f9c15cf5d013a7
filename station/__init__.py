"""The unit workstation ("station"): its keys, journal import, reports, exports and sync sticks."""
