"""``pcg-installer``: install a private cloud gateway for MAAS.

A thin layer over :func:`run`: parse the command line into :class:`Options`, then

* interactive (default): ask every answer, write ``<workdir>/install-<name>-<ts>/pcg.yaml``
* silent (``-s true -c pcg.yaml``): read the answers from the file, never prompt

then preflight (every check, every failure listed), then install. ``--config-only`` stops
after writing the file, ``--inspect-only`` after the preflight.

Exit codes: 0 done; 1 a preflight check or the install failed (machines released);
2 bad command line, pcg.yaml or passphrase; 130 interrupted (machines released).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from installer import __version__, logs, pcgyaml
from installer.bootstrap import InstallResult, Timeouts, install, new_install_id
from installer.config import InstallConfig
from installer.encryption import ENV_PASSPHRASE, Sealer
from installer.exceptions import (
    ConfigError,
    InstallerError,
    InstallFailed,
    InstallInterrupted,
    PassphraseError,
)
from installer.preflight import PreflightReport, preflight
from installer.progress import InstallProgress
from installer.report import show_preflight, show_summary

log = logging.getLogger("pcg.installer")

DEFAULT_WORKDIR = "/opt/spectrocloud"
ENV_WORKDIR = "PCG_WORKDIR"
#: for --update-passwords without a terminal (scripts)
ENV_NEW_PASSWORD = "PCG_PALETTE_PASSWORD"
ENV_NEW_API_KEY = "PCG_MAAS_API_KEY"

#: the old flags that pre-fill answers: flag -> InstallConfig field
PREFILL_FLAGS = {
    "https_proxy": "https_proxy",
    "http_proxy": "http_proxy",
    "no_proxy": "no_proxy",
    "pod_cidr": "pod_cidr",
    "svc_ip_range": "service_range",
}


@dataclass(frozen=True, slots=True)
class Options:
    silent: bool = False
    config_path: Path | None = None
    workdir: Path = Path(DEFAULT_WORKDIR)
    passphrase: str | None = field(default=None, repr=False)
    update_passwords: bool = False
    config_only: bool = False
    inspect_only: bool = False
    output: str = "text"
    ca_file: str | None = None
    prefill: dict[str, str] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)

    def __post_init__(self) -> None:
        if self.silent and self.config_path is None:
            raise ConfigError(
                "silent mode reads its answers from a file: give it with -c, e.g. "
                "-s true -c /opt/spectrocloud/pcg.yaml"
            )
        if self.update_passwords and self.config_path is None:
            raise ConfigError("--update-passwords changes a pcg.yaml: give it with -c FILE")
        if self.config_only and self.inspect_only:
            raise ConfigError("--config-only and --inspect-only exclude each other: pick one")
        if self.output not in ("text", "json"):
            raise ConfigError(f"--output {self.output!r}: use text or json")
        unknown = set(self.prefill) - set(PREFILL_FLAGS.values())
        if unknown:
            raise ConfigError(f"unknown pre-filled answers: {', '.join(sorted(unknown))}")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: use true or false")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcg-installer",
        description="Install a private cloud gateway (PCG) for MAAS: ask or read its "
        "configuration, check every prerequisite, deploy its machines through MAAS and wait "
        "until Palette shows it Running.",
        epilog="Exit codes: 0 done; 1 preflight or install failed (machines released); "
        "2 bad command line, pcg.yaml or passphrase; 130 interrupted.",
    )
    mode = parser.add_argument_group("mode")
    mode.add_argument(
        "-s", "--silent", type=_bool, nargs="?", const=True, default=False, metavar="true|false",
        help="install from -c FILE without any prompt",
    )  # fmt: skip
    mode.add_argument("-c", "--config", type=Path, metavar="FILE", help="pcg.yaml to use")
    mode.add_argument(
        "--config-only", action="store_true", help="write pcg.yaml and stop (no install)"
    )
    mode.add_argument(
        "--inspect-only", action="store_true", help="run the preflight checks only and stop"
    )
    mode.add_argument(
        "--update-passwords",
        action="store_true",
        help="set a new Palette password and MAAS API key in pcg.yaml (prompted, or from env "
        f"{ENV_NEW_PASSWORD} and {ENV_NEW_API_KEY}) and re-encrypt them",
    )
    mode.add_argument(
        "--output", choices=["text", "json"], default="text",
        help="json: one JSON document on stdout (preflight checks, install result); "
        "progress goes to stderr",
    )  # fmt: skip
    files = parser.add_argument_group("files and secrets")
    files.add_argument(
        "--workdir",
        type=Path,
        default=Path(os.environ.get(ENV_WORKDIR) or DEFAULT_WORKDIR),
        help=f"where install-<name>-<timestamp>/pcg.yaml is written (env {ENV_WORKDIR}, "
        f"default {DEFAULT_WORKDIR})",
    )
    files.add_argument(
        "--encryption-passphrase",
        metavar="PASSPHRASE",
        help=f"passphrase of pcg.yaml's secrets (prefer env {ENV_PASSPHRASE}: a command line "
        "is visible to other users); 8-32 chars with upper, lower, digit and special",
    )
    files.add_argument(
        "--ca-file", metavar="PEM", help="CA bundle that signs the Palette endpoint's certificate"
    )
    env = parser.add_argument_group("environment configuration (pre-fill the answers)")
    env.add_argument("--https_proxy", "--https-proxy", dest="https_proxy", metavar="URL")
    env.add_argument("--http_proxy", "--http-proxy", dest="http_proxy", metavar="URL")
    env.add_argument("--no_proxy", "--no-proxy", dest="no_proxy", metavar="LIST")
    env.add_argument("--pod_cidr", "--pod-cidr", dest="pod_cidr", metavar="CIDR")
    env.add_argument("--svc_ip_range", "--svc-ip-range", dest="svc_ip_range", metavar="CIDR")
    timing = parser.add_argument_group("timing (seconds)")
    timing.add_argument("--poll-interval", type=float, default=5.0, help="MAAS/Palette polling")
    timing.add_argument("--deploy-timeout", type=float, default=1800.0, help="per machine")
    timing.add_argument("--register-timeout", type=float, default=900.0,
                        help="for Palette to show the gateway Running")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"pcg-installer {__version__}")
    return parser


def options_from(args: argparse.Namespace, environ: dict[str, str]) -> Options:
    prefill = {
        PREFILL_FLAGS[flag]: getattr(args, flag)
        for flag in PREFILL_FLAGS
        if getattr(args, flag) is not None
    }
    try:
        timeouts = Timeouts(args.poll_interval, args.deploy_timeout, args.register_timeout)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return Options(
        silent=args.silent,
        config_path=args.config,
        workdir=args.workdir,
        passphrase=args.encryption_passphrase or environ.get(ENV_PASSPHRASE) or None,
        update_passwords=args.update_passwords,
        config_only=args.config_only,
        inspect_only=args.inspect_only,
        output=args.output,
        ca_file=str(Path(args.ca_file).expanduser().resolve()) if args.ca_file else None,
        prefill=prefill,
        timeouts=timeouts,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=args.output == "json", highlight=False)
    try:
        options = options_from(args, dict(os.environ))
    except ConfigError as exc:
        console.print(f"[bold red]pcg-installer:[/bold red] {escape(str(exc))}")
        return 2
    return run(options, console)


# -- the run ---------------------------------------------------------------------------------


@dataclass
class _Outcome:
    config_path: Path | None = None
    report: PreflightReport | None = None
    result: InstallResult | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.error is None,
            "configPath": str(self.config_path) if self.config_path else None,
            "preflight": self.report.to_json() if self.report else None,
            "install": self.result.to_json() if self.result else None,
            "error": self.error,
        }


def run(options: Options, console: Console | None = None) -> int:
    console = console or Console(stderr=options.output == "json", highlight=False)
    outcome = _Outcome()
    try:
        code = _run(options, console, outcome)
    except KeyboardInterrupt:
        console.print("\nCancelled; nothing was installed.")
        outcome.error = "cancelled"
        code = 130
    except InstallerError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}")
        outcome.error = str(exc)
        code = 2
    if options.output == "json":
        print(json.dumps(outcome.to_json(), indent=2), flush=True)
    return code


def _run(options: Options, console: Console, outcome: _Outcome) -> int:
    config, path = _configuration(options, console)
    outcome.config_path = path
    logs.register_secret(*config.secrets())
    log_path = logs.to_file(path.parent / "pcg-installer.log")
    console.print(f"Configuration: [bold]{escape(str(path))}[/bold]")
    log.info("installer.start version=%s config=%s gateway=%s", __version__, path, config.name)
    if options.config_only:
        console.print(f"Wrote the configuration only. To install: {_rerun(path)}")
        return 0
    report = asyncio.run(preflight(config))
    outcome.report = report
    for check in report.checks:
        log.info("preflight id=%s status=%s message=%s", check.id, check.status, check.message)
    show_preflight(console, report)
    if not report.ok:
        outcome.error = f"{len(report.failures)} preflight check(s) failed"
        console.print(f"Edit {escape(str(path))} and rerun: {_rerun(path)}")
        return 1
    if options.inspect_only:
        return 0
    install_id = new_install_id()
    console.print(f"Installing gateway {config.name} (install id {install_id}); log: {log_path}")
    try:
        result = asyncio.run(_install(config, install_id, options, console))
    except InstallFailed as exc:
        interrupted = isinstance(exc, InstallInterrupted)
        console.print(f"[bold red]{'Interrupted' if interrupted else 'Install failed'}:[/bold red]"
                      f" {escape(str(exc))}")  # fmt: skip
        if exc.hint:
            console.print(escape(exc.hint))
        console.print(f"The configuration is kept in {escape(str(path))}. Rerun: {_rerun(path)}")
        log.error("installer.failed interrupted=%s error=%s", interrupted, exc)
        outcome.error = str(exc)
        return 130 if interrupted else 1
    outcome.result = result
    show_summary(console, config.name, result)
    log.info("installer.done gateway=%s uid=%s", config.name, result.gateway_uid)
    return 0


async def _install(
    config: InstallConfig, install_id: str, options: Options, console: Console
) -> InstallResult:
    """Run the install with Ctrl-C and SIGTERM turned into one cancellation: the bootstrap
    then releases what it allocated; further signals only say that it is doing so."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signalled: list[int] = []

    def on_signal(signum: int) -> None:
        if not signalled:
            signalled.append(signum)
            console.print(
                f"\n{signal.Signals(signum).name}: stopping; releasing the machines this run "
                "allocated..."
            )
            work.cancel()
        else:
            console.print("Still releasing machines; please wait (they would stay allocated).")

    with InstallProgress(console) as progress:
        work = loop.create_task(
            install(config, install_id=install_id, progress=progress, timeouts=options.timeouts)
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            return await work
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


def _configuration(options: Options, console: Console) -> tuple[InstallConfig, Path]:
    """The answers and the pcg.yaml they live in (written here in interactive mode)."""
    if options.silent or options.update_passwords:
        return _silent_configuration(options, console)
    from installer import prompts

    previous = None
    if options.config_path is not None:  # its answers become the defaults; secrets are re-asked
        previous = pcgyaml.load(options.config_path, None)
    config = prompts.ask(
        console, prefill=options.prefill, previous=previous, ca_file=options.ca_file
    )
    passphrase = options.passphrase or prompts.ask_passphrase(console)
    path = pcgyaml.install_dir(options.workdir, config.name) / pcgyaml.FILE_NAME
    pcgyaml.write(path, config, Sealer.new(passphrase))
    return config, path


def _silent_configuration(options: Options, console: Console) -> tuple[InstallConfig, Path]:
    path = options.config_path
    assert path is not None
    if not options.update_passwords and not options.passphrase:
        raise PassphraseError(
            f"{path} holds encrypted secrets: give the passphrase with --encryption-passphrase "
            f"or {ENV_PASSPHRASE}"
        )
    if options.update_passwords:
        config = pcgyaml.load(path, None)
        password, api_key = _new_secrets(console)
        if not options.passphrase:
            raise PassphraseError(
                f"--update-passwords re-encrypts with a passphrase: give it with "
                f"--encryption-passphrase or {ENV_PASSPHRASE}"
            )
        config = config.replace(password=password, maas_api_key=api_key)
        pcgyaml.write(path, config, Sealer.new(options.passphrase))
        console.print(f"Updated the password and API key in {escape(str(path))}.")
    else:
        config = pcgyaml.load(path, options.passphrase)
    overrides: dict[str, Any] = dict(options.prefill)
    if options.ca_file:
        overrides["palette_ca_file"] = options.ca_file
    for name, value in overrides.items():
        if getattr(config, name) != value:
            console.print(f"{name} from the command line overrides {path.name}.")
    return (config.replace(**overrides) if overrides else config), path


def _new_secrets(console: Console) -> tuple[str, str]:
    password = os.environ.get(ENV_NEW_PASSWORD)
    api_key = os.environ.get(ENV_NEW_API_KEY)
    if password and api_key:
        return password, api_key
    if not sys.stdin.isatty():
        raise ConfigError(
            f"--update-passwords needs the new values: run it on a terminal to be asked, or "
            f"set {ENV_NEW_PASSWORD} and {ENV_NEW_API_KEY}"
        )
    from installer import prompts

    return prompts.ask_new_secrets(console)


def _rerun(path: Path) -> str:
    command = f"pcg-installer -s true -c {path}"
    if str(path).startswith(DEFAULT_WORKDIR + "/"):
        command += (
            " (with the image: docker run -it --rm --net=host -v /tmp:/opt/spectrocloud IMAGE "
            f"-s true -c {path})"
        )
    return command


if __name__ == "__main__":
    sys.exit(main())
