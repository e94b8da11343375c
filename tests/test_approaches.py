"""The report's table of approaches (approach, generator loss, optimiser, finding) and stage wall times."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from synthaug.augment import parse_policy, policies_json, policies_label
from synthaug.config import SynthaugConfig
from synthaug.io import read_json
from synthaug.report.approaches import approaches_table, describe
from synthaug.rundir import RunDir

GENERATORS = [
    {"family": "vae", "vae": {"beta": 0.5}},
    {"family": "gan", "gan": {"loss": "lsgan", "spectral_norm": False, "mode_seeking": 0.0, "diffaugment": []}},
    {"family": "ddpm", "mode": "per_class"},
]
POLICIES = {
    "": [0.80, 0.82, 0.81],
    "classical:p=0.2": [0.83, 0.85, 0.80],
    "synthetic:gen=vae,per_class=200": [0.70, 0.72, 0.71],
    "synthetic:gen=gan,y=0.5,min_confidence=0.8,drop_memorized=true": [0.81, 0.83, 0.82],
    "balance:gen=ddpm": [0.80, 0.82, 0.81],
}


def _config() -> SynthaugConfig:
    return SynthaugConfig.model_validate(
        {"study": {"generators": GENERATORS, "policies": [[p] if p else [] for p in POLICIES]}}
    )


def _results() -> pd.DataFrame:
    rows = []
    for text, accs in POLICIES.items():
        specs = [parse_policy(text)] if text else []
        for seed, acc in enumerate(accs):
            for fraction, shift in ((0.3, -0.1), (1.0, 0.0)):
                rows.append(
                    {
                        "model": "cnn",
                        "policy": policies_label(specs),
                        "policy_spec": policies_json(specs),
                        "real_fraction": fraction,
                        "seed": seed,
                        "test_accuracy": acc + shift,
                    }
                )
    return pd.DataFrame(rows)


def _rows(html: str) -> list[list[str]]:
    """Table cells as text: markup removed, a line break read as '; '."""
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html) if "<td>" in row]
    return [[re.sub(r"<[^>]+>", "", cell.replace("<br>", "; ")) for cell in row] for row in rows]


def test_every_policy_is_described_in_words() -> None:
    assert describe([]) == "no augmentation"
    assert describe([parse_policy("classical:p=0.5"), parse_policy("autoaugment")]) == (
        "+50% flipped / rotated / cropped copies of real images; online AutoAugment (imagenet policy)"
    )
    assert describe([parse_policy("synthetic:gen=g,fill=true")]) == (
        "synthetic images up to the full training size from generator 'g'"
    )
    assert describe([parse_policy("variation:gen=d,y=0.5")]) == (
        "+0.5·N SDEdit variations of the cell's real images from generator 'd'"
    )


def test_table_names_each_generator_objective_and_the_paired_finding() -> None:
    html = approaches_table(_results(), _config())
    rows = {r[1].split(":")[0]: r for r in _rows(html)}
    assert list(rows) == [
        "none",
        "classical 20%",
        "synthetic(gen=vae,per_class=200)",
        "synthetic(drop_memorized=True,gen=gan,min_confidence=0.8,y=0.5)",
        "balance(gen=ddpm)",
    ]
    none, classical, vae, gan, ddpm = rows.values()
    assert none[2:5] == ["–", "–", "–"]  # no generator
    assert none[5] == "0.710 [0.700, 0.720]" and none[6] == "0.810 [0.800, 0.820]"  # medians at 0.3 and 1.0
    # classical: differences +0.03, +0.03, −0.01 -> mean +0.017, two wins of three
    assert classical[6].startswith("0.830 [") and "Δ +0.017 [" in classical[6] and classical[6].endswith("2/3 wins")
    assert vae[2] == "vae (vae, conditional)" and vae[3] == "reconstruction (squared error) + β·KL, β = 0.5"
    assert vae[4] == "Adam" and "Δ -0.100 [-0.100, -0.100], 0/3 wins" in vae[5]
    assert gan[3] == "adversarial, least squares (MSE)"  # no spectral norm, no aids: the plain DCGAN
    assert gan[4].startswith("Adam (β = 0.5, 0.999)")
    assert "(judge confidence ≥ 0.8, memorized images dropped)" in gan[1]
    assert ddpm[2] == "ddpm (ddpm, per class)" and ddpm[3] == "ε-prediction MSE, 1000-step linear schedule"
    assert ddpm[4].startswith("AdamW") and "Δ +0.000 [+0.000, +0.000], 0/3 wins" in ddpm[6]
    assert "cross-entropy, adam (lr 0.001)" in html


def test_stage_times_add_up_over_attempts(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.record_time("generators", 60.0)
    run.record_time("classifiers", 30.0)
    run.record_time("generators", 1.5)
    times = read_json(run.timings)
    assert list(times) == ["generators", "classifiers"]
    assert times["generators"]["seconds"] == 61.5 and times["generators"]["runs"] == 2
    assert times["classifiers"]["runs"] == 1 and "T" in times["classifiers"]["finished"]
