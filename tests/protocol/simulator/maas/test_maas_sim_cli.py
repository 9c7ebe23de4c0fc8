"""``pcg-sim maas``: argument handling in-process, and a real run in a subprocess driven from
outside (client + control endpoint), then stopped with SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from protocol.maas import ApiKey, MachineFailed, NodeStatus, Retryable, RetryPolicy
from protocol.maas.client import MaasClient
from protocol.simulator.cli import build_parser
from protocol.simulator.maas import cli

FAST = {"poll_interval": 0.02, "max_wait": 10.0}


def test_registered_in_pcg_sim() -> None:
    args = build_parser().parse_args(
        ["maas", "--port", "0", "--api-key", "a:b:c", "--fail-deploy", "node-02", "--busy", "2"]
    )
    assert args.func is cli.run
    simulator, source = cli.build_simulator(args)
    assert source == "--api-key"
    assert simulator.api_key == ApiKey.parse("a:b:c")
    assert simulator.faults.fail_deploy == {"node-02"}
    assert [rule.kind.value for rule in simulator.faults.rules] == ["busy"]


def test_missing_key_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([])
    args.api_key = None
    assert cli.run(args) == 2
    assert "give the MAAS API key" in capsys.readouterr().err


def test_key_file_is_generated_private_and_reused(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    key_file = tmp_path / "maas.key"
    args = parser.parse_args(["--api-key-file", str(key_file)])
    args.api_key = None
    first, source = cli.build_simulator(args)
    assert source.startswith("generated into")
    assert key_file.stat().st_mode & 0o777 == 0o600
    second, source = cli.build_simulator(args)
    assert source.startswith("--api-key-file")
    assert first.api_key == second.api_key


async def test_subprocess_run_driven_from_outside(tmp_path: Path) -> None:
    key_file = tmp_path / "maas.key"
    state_file = tmp_path / "state.json"
    env = {k: v for k, v in os.environ.items() if k != "PCG_SIM_MAAS_API_KEY"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "protocol.simulator.cli", "maas",
        "--host", "127.0.0.1", "--port", "0",
        "--api-key-file", str(key_file), "--state-file", str(state_file),
        "--deploy-seconds", "0.1", "--release-seconds", "0.05",
        "--fail-deploy", "node-02", "--log-level", "debug",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 15)).decode()
        match = re.search(r"at (http://127\.0\.0\.1:\d+/MAAS) ", line)
        assert match, f"no URL in start-up line {line!r}"
        url = match.group(1)
        key = ApiKey.parse(key_file.read_text())
        async with MaasClient(url, key, trust_env=False, retry=RetryPolicy(attempts=1)) as maas:
            machine = await maas.allocate(hostname="node-02")
            await maas.deploy(machine.system_id, user_data="#cloud-config\n")
            with pytest.raises(MachineFailed):
                await maas.wait_for_status(machine.system_id, NodeStatus.DEPLOYED, **FAST)
            async with aiohttp.ClientSession(trust_env=False) as http:
                async with http.delete(url + "/sim/faults") as response:
                    assert response.status == 200
                async with http.post(url + "/sim/faults", json={"unavailable": 1}) as response:
                    assert (await response.json())["rules"][0]["kind"] == "unavailable"
            with pytest.raises(Retryable, match="HTTP 503"):
                await maas.list_zones()
            await maas.release([machine.system_id])
            await maas.wait_for_status(machine.system_id, NodeStatus.READY, **FAST)
            await maas.deploy(machine.system_id)
            await maas.wait_for_status(machine.system_id, NodeStatus.DEPLOYED, **FAST)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, err.decode()[-2000:]
    saved = json.loads(state_file.read_text())
    statuses = {m["spec"]["hostname"]: m["status"] for m in saved["machines"]}
    assert statuses["node-02"] == int(NodeStatus.DEPLOYED)
    output = line + out.decode() + err.decode()
    for part in key.parts():
        assert part not in output, "the simulator printed or logged its API key"
