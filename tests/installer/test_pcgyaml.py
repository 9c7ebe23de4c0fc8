"""pcg.yaml: schema v1, secrets sealed with the passphrase, mode 0600, atomic writes, and clear
errors for a wrong passphrase, a hand-edited secret or an unknown setting."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from installer import pcgyaml
from installer.config import InstallConfig
from installer.encryption import Sealer, check_passphrase
from installer.exceptions import ConfigError, PassphraseError

from .conftest import PASSPHRASE, installer_env, run_installer

KEY = "APn53wz232ZwBMxDp5:MHZIbUp3e4DJTjZEKg:mdEv33WAG536MhNC8mIywNLtjcDTnFAQ"
PASSWORD = "S3cret-Palette-pw"


def sample(**changes: object) -> InstallConfig:
    values: dict[str, object] = {
        "name": "maas-pcg-1",
        "palette_endpoint": "https://console.spectrocloud.com",
        "username": "user1@company.com",
        "password": PASSWORD,
        "pairing_code": "A1B2C3",
        "https_proxy": "http://proxy.company.com:3128",
        "no_proxy": "maas.company.com,10.10.0.0/16",
        "maas_endpoint": "http://10.11.12.13:5240/MAAS",
        "maas_api_key": KEY,
        "zone": "az1",
        "node_count": 3,
    }
    values.update(changes)
    return InstallConfig(**values)  # type: ignore[arg-type]


def test_round_trip_mode_and_no_plaintext_secret(tmp_path: Path) -> None:
    path = pcgyaml.write(tmp_path / "install-x" / "pcg.yaml", sample(), Sealer.new(PASSPHRASE))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    for secret in (PASSWORD, KEY, *KEY.split(":")):
        assert secret not in text
    document = yaml.safe_load(text)
    assert document["version"] == 1
    assert document["palette"]["password"].startswith("enc:v1:")
    assert document["maas"]["apiKey"].startswith("enc:v1:")
    assert document["maas"]["availabilityZone"] == "az1"
    assert document["encryption"]["kdf"] == "scrypt"
    assert pcgyaml.load(path, PASSPHRASE) == sample()
    assert [p.name for p in path.parent.iterdir()] == ["pcg.yaml"]  # no temporary file left


def test_install_dir_follows_the_doc_layout(tmp_path: Path) -> None:
    import datetime

    when = datetime.datetime(2021, 8, 5, 15, 50, 34)
    assert pcgyaml.install_dir(tmp_path, "gw", when) == tmp_path / "install-gw-20210805155034"


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    path = pcgyaml.write(tmp_path / "pcg.yaml", sample(), Sealer.new(PASSPHRASE))
    with pytest.raises(PassphraseError) as caught:
        pcgyaml.load(path, "Other-pass1!")
    message = str(caught.value)
    assert "passphrase is wrong" in message and "PCG_ENCRYPTION_PASSPHRASE" in message
    assert str(path) in message and "Other-pass1!" not in message


def test_a_sealed_value_does_not_open_under_another_setting(tmp_path: Path) -> None:
    path = pcgyaml.write(tmp_path / "pcg.yaml", sample(), Sealer.new(PASSPHRASE))
    document = yaml.safe_load(path.read_text())
    document["maas"]["apiKey"] = document["palette"]["password"]
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(PassphraseError, match="cannot decrypt maas.apiKey"):
        pcgyaml.load(path, PASSPHRASE)


def test_a_hand_written_secret_is_refused(tmp_path: Path) -> None:
    path = pcgyaml.write(tmp_path / "pcg.yaml", sample(), Sealer.new(PASSPHRASE))
    document = yaml.safe_load(path.read_text())
    document["palette"]["password"] = "plain-text"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(PassphraseError, match="--update-passwords") as caught:
        pcgyaml.load(path, PASSPHRASE)
    assert "plain-text" not in str(caught.value)


@pytest.mark.parametrize(
    ("passphrase", "lacks"),
    [
        ("Sh0rt!", "8 to 32 characters (it has 6)"),
        ("alllowercase1!", "an upper-case letter"),
        ("ALLUPPERCASE1!", "a lower-case letter"),
        ("NoDigits-here", "a digit"),
        ("NoSpecial123", "a special character"),
        ("A1-" + "a" * 30, "8 to 32 characters (it has 33)"),
    ],
)
def test_passphrase_rules(passphrase: str, lacks: str) -> None:
    problem = check_passphrase(passphrase)
    assert problem is not None and lacks in problem and passphrase not in problem
    with pytest.raises(PassphraseError, match="--encryption-passphrase"):
        Sealer.new(passphrase)
    assert check_passphrase(PASSPHRASE) is None


def test_schema_errors_list_every_problem(tmp_path: Path) -> None:
    path = pcgyaml.write(tmp_path / "pcg.yaml", sample(), Sealer.new(PASSPHRASE))
    document = yaml.safe_load(path.read_text())
    document["maas"]["zone"] = "az1"  # the setting is availabilityZone
    document["extra"] = 1
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as caught:
        pcgyaml.load(path, PASSPHRASE)
    fields = {p.field for p in caught.value.problems}
    assert fields == {"maas.zone", "extra"}
    assert "availabilityZone" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 2\n", "written by a newer installer"),
        ("version: 0\n", "not a pcg.yaml schema"),
        ("- a\n", "must be a YAML map"),
        ("version: [\n", "not valid YAML"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pcg.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        pcgyaml.load(path, PASSPHRASE)
    with pytest.raises(ConfigError, match="no configuration file"):
        pcgyaml.load(tmp_path / "missing.yaml", PASSPHRASE)


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = pcgyaml.write(tmp_path / "pcg.yaml", sample(), Sealer.new(PASSPHRASE))
    before = path.read_text()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        pcgyaml.write(path, sample(name="other"), Sealer.new(PASSPHRASE))
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pcg.yaml"]


async def test_cli_wrong_passphrase_and_missing_passphrase(tmp_path: Path) -> None:
    path = pcgyaml.write(tmp_path / "pcg.yaml", sample(), Sealer.new(PASSPHRASE))
    done = await run_installer(
        "-s", "true", "-c", str(path), env=installer_env(PCG_ENCRYPTION_PASSPHRASE="Wr0ng-pass!")
    )
    assert done.code == 2
    assert "passphrase is wrong" in done.output
    env = installer_env()
    del env["PCG_ENCRYPTION_PASSPHRASE"]
    done = await run_installer("-s", "true", "-c", str(path), env=env)
    assert done.code == 2 and "--encryption-passphrase" in done.output
    done = await run_installer("-s", "true", env=env)
    assert done.code == 2 and "give it with -c" in done.output


async def test_cli_update_passwords_re_encrypts(tmp_path: Path) -> None:
    path = pcgyaml.write(tmp_path / "pcg.yaml", sample(), Sealer.new(PASSPHRASE))
    new_key = "N" * 18 + ":" + "T" * 18 + ":" + "s" * 32
    new_passphrase = "N3w-passphrase!"
    env = installer_env(
        PCG_ENCRYPTION_PASSPHRASE=new_passphrase,
        PCG_PALETTE_PASSWORD="N3w-Palette-pw",
        PCG_MAAS_API_KEY=new_key,
    )
    done = await run_installer(
        "-s", "true", "-c", str(path), "--update-passwords", "--config-only", env=env
    )
    assert done.code == 0, done.output
    assert "Updated the password and API key" in done.output
    assert "N3w-Palette-pw" not in done.output and new_key not in done.output
    updated = pcgyaml.load(path, new_passphrase)
    assert updated == sample(password="N3w-Palette-pw", maas_api_key=new_key)
    assert "N3w-Palette-pw" not in path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(PassphraseError):
        pcgyaml.load(path, PASSPHRASE)
