"""Runnable peers for tests and users: the Palette hub and API, a MAAS API, a NAT topology."""
