"""Device side: udev events, identities, partition tables, read-only loop devices and mounts."""
