"""Lights and buzzer of each bay: the signal table, rendering, and the hardware backends."""
