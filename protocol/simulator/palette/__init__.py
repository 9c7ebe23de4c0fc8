"""The Palette simulator: Palette's REST API for gateways, clusters and cloud accounts, with the
tunnel hub on the same server (see README.md next to this file)."""

from protocol.simulator.palette.model import Clock, PaletteUser
from protocol.simulator.palette.server import PaletteSimulator

__all__ = ["Clock", "PaletteSimulator", "PaletteUser"]
