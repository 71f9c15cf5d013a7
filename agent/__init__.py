"""The kiosk agent: device events, read-only mounts, scanning, verdicts, lights, journal; and the CLI."""
