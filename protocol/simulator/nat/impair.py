"""Loss and delay on the router's interfaces: tc netem, or NFQUEUE where the kernel has no netem.

netem (``tc qdisc ... root netem delay D loss L%``) is used when the kernel has ``sch_netem``.
Some kernels (minimal VM and CI kernels) are built without it; there, loss is an iptables
``statistic`` match and delay is a userspace delayer (:mod:`protocol.simulator.nat.nfqueue`)
bound to an NFQUEUE, both on the same interface's egress, so the behaviour is the same.
Both are read back from the kernel (``tc qdisc show`` / rule comments), never from memory.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
from enum import StrEnum
from pathlib import Path

from protocol.simulator.nat import netns
from protocol.simulator.nat.exceptions import CommandFailed
from protocol.simulator.nat.firewall import (
    IMPAIR_CHAINS,
    QUEUE_NUMBERS,
    Impairment,
    impairment_ruleset,
    parse_comments,
)
from protocol.simulator.nat.topology import Host, NatPlan, Side

DELAYER_MODULE = "protocol.simulator.nat.nfqueue"


class ImpairmentBackend(StrEnum):
    AUTO = "auto"  # netem when the kernel has it, else nfqueue
    NETEM = "netem"
    NFQUEUE = "nfqueue"


_NETEM_DELAY = re.compile(r"\bdelay ([\d.]+)(us|ms|s)\b")
_NETEM_LOSS = re.compile(r"\bloss (?:random )?([\d.]+)%")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_netem(qdisc_show: str) -> Impairment | None:
    """The netem settings in ``tc qdisc show dev IF`` output, or None when there is no netem."""
    line = next((line for line in qdisc_show.splitlines() if "qdisc netem" in line), None)
    if line is None:
        return None
    delay = _NETEM_DELAY.search(line)
    loss = _NETEM_LOSS.search(line)
    return Impairment(
        delay_ms=float(delay.group(1)) * _UNIT_MS[delay.group(2)] if delay else 0.0,
        loss_percent=float(loss.group(1)) if loss else 0.0,
    )


class RouterImpairments:
    """Sets and reads loss/delay on the router's public and private interfaces."""

    def __init__(self, plan: NatPlan, state_dir: Path) -> None:
        self._plan = plan
        self._state_dir = state_dir
        self._delayers: dict[Side, subprocess.Popen[bytes]] = {}

    @property
    def _namespace(self) -> str:
        return self._plan.namespace(Host.ROUTER)

    def set(
        self,
        side: Side,
        impairment: Impairment,
        backend: ImpairmentBackend = ImpairmentBackend.AUTO,
    ) -> ImpairmentBackend | None:
        """Replace ``side``'s impairment; returns the backend used (None when cleared)."""
        self.clear(side)
        if not impairment.active:
            return None
        if backend in (ImpairmentBackend.AUTO, ImpairmentBackend.NETEM):
            try:
                self._set_netem(side, impairment)
                return ImpairmentBackend.NETEM
            except CommandFailed as exc:
                if backend is ImpairmentBackend.NETEM or not _netem_missing(exc):
                    raise
        self._set_nfqueue(side, impairment)
        return ImpairmentBackend.NFQUEUE

    def clear(self, side: Side) -> None:
        ifname = self._plan.side_ifname(side)
        netns.run(
            ["tc", "qdisc", "del", "dev", ifname, "root"], namespace=self._namespace, check=False
        )
        netns.iptables_restore(
            self._namespace, impairment_ruleset(side, Impairment(), userspace_delay=False)
        )
        self._stop_delayer(side)

    def get(self, side: Side) -> tuple[Impairment, ImpairmentBackend | None]:
        ifname = self._plan.side_ifname(side)
        shown = netns.run(["tc", "qdisc", "show", "dev", ifname], namespace=self._namespace)
        netem = parse_netem(shown.stdout)
        if netem is not None:
            return netem, ImpairmentBackend.NETEM
        listing = netns.run(
            ["iptables", "-w", "-t", "mangle", "-S", IMPAIR_CHAINS[side]],
            namespace=self._namespace,
        )
        comments = parse_comments(listing.stdout)
        impairment = Impairment(
            delay_ms=float(comments.get("delay", 0)),
            loss_percent=float(comments.get("loss", 0)),
        )
        return impairment, (ImpairmentBackend.NFQUEUE if impairment.active else None)

    def _set_netem(self, side: Side, impairment: Impairment) -> None:
        options = []
        if impairment.delay_ms > 0:
            options += ["delay", f"{impairment.delay_ms:g}ms"]
        if impairment.loss_percent > 0:
            options += ["loss", f"{impairment.loss_percent:g}%"]
        ifname = self._plan.side_ifname(side)
        netns.run(
            ["tc", "qdisc", "replace", "dev", ifname, "root", "netem", *options],
            namespace=self._namespace,
        )

    def _set_nfqueue(self, side: Side, impairment: Impairment) -> None:
        if impairment.delay_ms > 0:
            self._start_delayer(side, impairment.delay_ms)
        rules = impairment_ruleset(side, impairment, userspace_delay=True)
        netns.iptables_restore(self._namespace, rules)

    def _tag(self, side: Side) -> str:
        return f"{self._plan.prefix}-{side.value}"

    def _start_delayer(self, side: Side, delay_ms: float, *, timeout: float = 5.0) -> None:
        self._state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            DELAYER_MODULE,
            "--queue",
            str(QUEUE_NUMBERS[side]),
            "--delay-ms",
            f"{delay_ms:g}",
            "--tag",
            self._tag(side),
        ]
        env = dict(os.environ)
        # the delayer imports this package; make that work whatever the caller's cwd
        package_root = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        with (self._state_dir / f"delay-{side.value}.log").open("ab") as log:
            process = subprocess.Popen(
                netns.exec_argv(self._namespace, argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if ready else b""
        process.stdout.close()
        if line.strip() != b"ready":
            netns.terminate([process.pid])
            process.wait(timeout=5)
            log_path = self._state_dir / f"delay-{side.value}.log"
            raise CommandFailed(argv, process.returncode, f"delayer did not start; see {log_path}")
        self._delayers[side] = process

    def forget(self, side: Side) -> None:
        """Reap a delayer this object started once its namespace has been torn down."""
        process = self._delayers.pop(side, None)
        if process is not None:
            netns.terminate([process.pid])
            process.wait(timeout=5)

    def _stop_delayer(self, side: Side) -> None:
        if self._namespace in netns.list_namespaces():
            netns.terminate(
                pid
                for pid in netns.namespace_pids(self._namespace)
                if DELAYER_MODULE in (argv := netns.cmdline(pid)) and self._tag(side) in argv
            )
        self.forget(side)


def _netem_missing(exc: CommandFailed) -> bool:
    """True when tc failed because the kernel has no netem qdisc (not a usage error)."""
    stderr = exc.stderr.lower()
    return "unknown" in stderr or "not supported" in stderr or "no such file" in stderr
