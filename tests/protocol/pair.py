"""Two sans-I/O connections wired to each other in memory (the first tier of tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol import events as ev
from protocol.connection import ConnectionConfig, Role, TunnelConnection
from protocol.frames import Settings


@dataclass
class Side:
    conn: TunnelConnection
    events: list[ev.Event] = field(default_factory=list)

    def take(self) -> list[ev.Event]:
        out, self.events = self.events, []
        return out

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


class Pair:
    """client <-> server; :meth:`pump` moves messages both ways until both are quiet."""

    def __init__(
        self,
        client_settings: Settings | None = None,
        server_settings: Settings | None = None,
        *,
        client_versions: tuple[int, ...] = (1,),
        server_versions: tuple[int, ...] = (1,),
        handshake: bool = True,
        tuning: bool = False,
    ) -> None:
        # time stands still here, so every grant would look fast: window tuning (§6.5) is off
        # unless a test asks for it
        budget = {} if tuning else {"window_growth_budget": 0}
        self.now = 0.0
        self.client = Side(
            TunnelConnection(
                ConnectionConfig(
                    Role.CLIENT, client_settings or Settings(), versions=client_versions, **budget
                )
            )
        )
        self.server = Side(
            TunnelConnection(
                ConnectionConfig(
                    Role.SERVER, server_settings or Settings(), versions=server_versions, **budget
                )
            )
        )
        self.client.conn.initiate()
        if handshake:
            self.pump()

    def pump(self, max_rounds: int = 100_000) -> int:
        """Deliver everything queued, both ways; returns the number of messages moved."""
        moved = 0
        for _ in range(max_rounds):
            progressed = False
            for src, dst in ((self.client, self.server), (self.server, self.client)):
                while message := src.conn.data_to_send():
                    dst.events.extend(dst.conn.receive_data(message, self.now))
                    moved += 1
                    progressed = True
            if not progressed:
                return moved
        raise AssertionError("pump did not settle")

    def deliver_one_way(self, src: Side, dst: Side) -> None:
        while message := src.conn.data_to_send():
            dst.events.extend(dst.conn.receive_data(message, self.now))


def feed(conn: TunnelConnection, message: bytes, now: float = 0.0) -> list[ev.Event]:
    return conn.receive_data(message, now)


def goaway_code(conn: TunnelConnection) -> int | None:
    """The code of the last GOAWAY the connection queued, if any."""
    from protocol.frames import GoAway, decode_message

    code = None
    while message := conn.data_to_send():
        for frame in decode_message(message, 1 << 30):
            if isinstance(frame, GoAway):
                code = frame.code
    return code
