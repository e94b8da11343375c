"""The command line, run as a user would, in a temporary folder."""

import json
from pathlib import Path

from typer.testing import CliRunner

from synthaug.cli import app

runner = CliRunner()


def test_phantoms_then_audit_writes_folder_and_json(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    res = runner.invoke(app, ["phantoms", str(out), "--n", "48", "--size", "32", "--imbalance", "pituitary=0.5"])
    assert res.exit_code == 0, res.output
    assert len(list((out / "Training").rglob("*.png"))) + len(list((out / "Testing").rglob("*.png"))) == 48
    assert len(list((out / "masks").rglob("*.png"))) == 48
    res = runner.invoke(app, ["audit", str(out), "--json", str(tmp_path / "audit.json"), "--size", "32"])
    assert res.exit_code == 0, res.output
    assert "glioma" in res.output and "exact" in res.output
    report = json.loads((tmp_path / "audit.json").read_text())
    assert report["images"] == 48 and report["counts"]["train"]["pituitary"] < report["counts"]["train"]["glioma"]


def test_bad_inputs_exit_with_a_clear_message(tmp_path: Path) -> None:
    res = runner.invoke(app, ["audit", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["audit", "phantom", "--set", "data.leakage.treshold=3"])
    assert res.exit_code == 2 and "unknown key" in res.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    res = runner.invoke(app, ["phantoms", str(tmp_path / "full"), "--n", "8"])
    assert res.exit_code == 2 and "not empty" in res.output
    assert (tmp_path / "full" / "keep.txt").read_text() == "precious"
    res = runner.invoke(app, ["phantoms", str(tmp_path / "p"), "--imbalance", "pituitary"])
    assert res.exit_code == 2 and "name=weight" in res.output
