"""The structure the code promises: a light config package, load-time validation, one owner per layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from synthaug.config import ConfigError, load_config

SRC = Path(__file__).resolve().parents[1] / "src" / "synthaug"
CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_loading_every_shipped_config_and_the_cli_help_import_no_torch() -> None:
    assert CONFIGS, "no shipped configs found"
    script = (
        "import sys\n"
        "from synthaug.config import load_config\n"
        f"for path in {[str(p) for p in CONFIGS]!r}:\n"
        "    load_config(path)\n"
        "from typer.testing import CliRunner\n"
        "from synthaug.cli import app\n"
        "for args in (['--help'], ['run', '--help'], ['train-generator', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'diffusers', 'timm') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ("classical:q=1", r"classical\(q=1\).*unknown parameter 'q'.*p=0.2"),
        ("classical:p=-1", r"classical\(p=-1\).*greater than or equal to 0"),
        ("classical:p=abc", r"classical\(p=abc\).*valid number"),
        ("autoaugment:policy=foo", r"autoaugment\(policy=foo\).*'imagenet', 'cifar10' or 'svhn'"),
        ("randaugment:magnitude=31", r"randaugment\(magnitude=31\).*less than or equal to 30"),
        ("synthetic:gen=ddpm,fill=true,per_class=5", r"per_class cannot be combined with fill"),
        ("trivialaugment:x=1", r"unknown parameter 'x'.*none"),
        ("clasical", r"unknown policy 'clasical'.*Did you mean 'classical'"),
    ],
)
def test_bad_policies_fail_when_the_config_loads(policy: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(None, [f"study.policies=[['{policy}']]", "study.generators=[{family: ddpm}]"])


def test_bad_bank_and_generator_settings_fail_when_the_config_loads() -> None:
    with pytest.raises(ConfigError, match=r"study.bank.sampler.*'ddpm', 'ddim', 'dpm\+\+' or 'dpm\+\+sde'"):
        load_config(None, ["study.bank.sampler=foo"])
    with pytest.raises(ConfigError, match=r"unknown generator family 'dpm'"):
        load_config(None, ["study.generators=[{family: dpm}]"])
    with pytest.raises(ConfigError, match=r"study.generators.0.vae.channel"):
        load_config(None, ["study.generators=[{family: vae, vae: {channel: [8]}}]"])


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_layers_do_not_import_upwards_and_modules_stay_small() -> None:
    for package, forbidden in (("report", ("synthaug.study",)), ("config", ("synthaug.",))):
        for path in (SRC / package).glob("*.py"):
            bad = {m for m in _imports(path) if m.startswith(forbidden) and not m.startswith("synthaug.config")}
            assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"
    long = {p.relative_to(SRC).as_posix(): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"
