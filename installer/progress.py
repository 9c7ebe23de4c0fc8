"""What the user sees while the gateway is installed: one row per machine, live, with rich.

On a terminal, a live table (machine, state, address, time in state) sits under the log of
steps; elsewhere (CI, a pipe, ``--output json``) every change is one plain line, so a log
shows the same story. Nothing shown here ever carries a secret: callers pass only names,
states and addresses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

_STYLES = {
    "Allocated": "cyan",
    "Deploying": "yellow",
    "Deployed": "green",
    "Registered": "bold green",
    "Failed": "bold red",
    "Released": "dim",
}


@dataclass
class _Row:
    hostname: str
    state: str
    address: str = ""
    detail: str = ""
    since: float = field(default_factory=time.monotonic)


class InstallProgress:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: dict[str, _Row] = {}
        self._live: Live | None = None

    def __enter__(self) -> InstallProgress:
        if self.console.is_terminal:
            self._live = Live(
                console=self.console,
                get_renderable=self._table,  # re-rendered each refresh: "for" keeps counting
                refresh_per_second=4,
                transient=False,
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def step(self, text: str) -> None:
        self.console.print(f"[bold]>[/bold] {escape(text)}", highlight=False)

    def warn(self, text: str) -> None:
        self.console.print(f"[bold yellow]warning:[/bold yellow] {escape(text)}", highlight=False)

    def machine(self, system_id: str, hostname: str, state: str, *, address: str = "",
                detail: str = "") -> None:  # fmt: skip
        row = self.rows.get(system_id)
        if row is not None and row.state == state and row.detail == detail:
            return
        if row is None or row.state != state:
            row = _Row(hostname, state, address or (row.address if row else ""), detail)
            self.rows[system_id] = row
        else:
            row.detail = detail
        if address:
            row.address = address
        if self._live is not None:
            self._live.refresh()
        else:
            extra = f" {row.address}" if row.address else ""
            extra += f" ({detail})" if detail else ""
            line = f"  {hostname} [{system_id}]: {state}{extra}"
            self.console.print(escape(line), highlight=False)

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False, show_header=bool(self.rows))
        for column in ("machine", "system id", "state", "address", "for", ""):
            table.add_column(column)
        now = time.monotonic()
        for system_id, row in self.rows.items():
            style = _STYLES.get(row.state, "")
            state = escape(row.state)
            table.add_row(
                escape(row.hostname),
                escape(system_id),
                f"[{style}]{state}[/{style}]" if style else state,
                row.address,
                f"{now - row.since:.0f}s",
                escape(row.detail),
            )
        return table
