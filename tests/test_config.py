from pathlib import Path

import pytest
from pydantic import ValidationError

from synthaug.config import ConfigError, SynthaugConfig, dump_config, load_config


def test_defaults_and_yaml_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None)
    assert cfg.data.source == "phantom" and cfg.data.size == 64
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_set_overrides_nested_values(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  size: 32\nstudy:\n  seeds: [1, 2]\n")
    cfg = load_config(path, ["data.leakage.min_correlation=0.95", "study.real_fractions=[0.1, 1.0]"])
    assert cfg.data.size == 32 and cfg.study.seeds == [1, 2]
    assert cfg.data.leakage.min_correlation == 0.95 and cfg.study.real_fractions == [0.1, 1.0]


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  szie: 32\n")
    with pytest.raises(ConfigError, match=r"unknown key 'data.szie'.*Did you mean 'size'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"unknown key 'data.leakage.min_corr'.*'min_correlation'"):
        load_config(None, ["data.leakage.min_corr=0.9"])


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"data.size: .*integer.*'big'"):
        load_config(None, ["data.size=big"])
    with pytest.raises(ConfigError, match=r"data.size"):
        load_config(None, ["data.size=4"])  # below the minimum of 16


def test_bad_files_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["data.size"])


def test_config_is_frozen() -> None:
    cfg = SynthaugConfig()
    with pytest.raises(ValidationError):
        cfg.data.size = 3  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).parents[1] / "configs").glob("*.yaml")))
def test_shipped_configs_validate(name: str) -> None:
    cfg = load_config(Path(__file__).parents[1] / "configs" / name)
    assert cfg.study.policies and cfg.study.seeds
