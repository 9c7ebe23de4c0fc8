"""How the preflight report and the install summary look on a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from installer.bootstrap import InstallResult
from installer.preflight import PreflightReport, Status

_MARKS = {
    Status.OK: "[green]  ok   [/green]",
    Status.WARNING: "[yellow] warn  [/yellow]",
    Status.FAILED: "[bold red] FAIL  [/bold red]",
    Status.SKIPPED: "[dim] skip  [/dim]",
}


def show_preflight(console: Console, report: PreflightReport) -> None:
    console.print("[bold]Preflight checks[/bold]")
    for check in report.checks:
        console.print(
            f"{_MARKS[check.status]}{escape(check.title)}: {escape(check.message)}",
            highlight=False,
        )
    failures, warnings = len(report.failures), len(report.warnings)
    if failures:
        console.print(
            f"[bold red]{failures} check(s) failed[/bold red]"
            f"{f', {warnings} warning(s)' if warnings else ''}: nothing was allocated. Fix "
            "every FAIL above, then rerun.",
            highlight=False,
        )
    else:
        console.print(
            f"[green]All checks passed[/green]{f' ({warnings} warning(s))' if warnings else ''}.",
            highlight=False,
        )


def show_summary(console: Console, name: str, result: InstallResult) -> None:
    console.print(f"[bold green]Gateway {escape(name)} is {result.state}.[/bold green]")
    console.print(f"  gateway uid        {result.gateway_uid}", highlight=False)
    console.print(f"  MAAS cloud account {result.cloud_account_uid}", highlight=False)
    console.print(f"  install id         {result.install_id}", highlight=False)
    for node in result.nodes:
        dns = "" if node.resolves else "  (FQDN does not resolve here)"
        console.print(
            f"  node {node.hostname:<14} {node.system_id:<8} {node.address:<15} {node.fqdn}{dns}",
            highlight=False,
        )
