"""The gateway agent: dials out to the control plane and relays its requests to MAAS."""

__version__ = "0.1.0"
