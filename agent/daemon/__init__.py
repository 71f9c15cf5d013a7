"""The kiosk daemon: device events to verdicts and lights, bay by bay, with status and journal."""
