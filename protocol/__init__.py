"""The gateway's wire protocol.

The package root is the sans-I/O core: :mod:`protocol.frames`, :mod:`protocol.events`,
:mod:`protocol.state`, :mod:`protocol.windows`, :mod:`protocol.rpc` and
:mod:`protocol.connection` never touch a socket, an event loop or a clock.
:mod:`protocol.aio` drives the core over websockets; :mod:`protocol.maas` is the MAAS API client;
:mod:`protocol.simulator` holds runnable peers for tests and users.

The modules of the per-message path may run compiled with mypyc: :mod:`protocol.native` picks
the build, on import of this package and before any of them loads.
"""

from protocol.native import STATUS as NATIVE

PROTOCOL_VERSION = 1

__all__ = ["NATIVE", "PROTOCOL_VERSION"]
