"""Command-line interface: parse, load config, call one function per command."""

from __future__ import annotations

import functools
import logging
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, ParamSpec

import typer
from pydantic import ValidationError

from synthaug.config import FAMILIES, ConfigError, DataConfig, load_config
from synthaug.config.classifier import CLASSIFIERS
from synthaug.config.generators import SAMPLER_NAMES
from synthaug.config.policies import available_policies
from synthaug.data.sources import SourceError
from synthaug.errors import describe_os_error, resume_hint
from synthaug.lock import RunDirLocked

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Does synthetic data beat classical augmentation? Measure it."
)
log = logging.getLogger("synthaug")
P = ParamSpec("P")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def _fail(exc: Exception | str) -> None:
    if isinstance(exc, ValidationError):  # pydantic: keep the message, drop the URL boilerplate
        exc = ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a command like Ctrl-C: cleanly, with a message


def guarded(command: Callable[P, None]) -> Callable[P, None]:
    """Turn file-system failures and interruptions of ``command`` into one line (``-v``: with traceback)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except KeyboardInterrupt:
            typer.secho(
                f"interrupted: finished work is kept; run the same command to resume ({resume_hint()})",
                fg=typer.colors.YELLOW,
                err=True,
            )
            raise typer.Exit(130) from None
        except (OSError, RuntimeError) as exc:
            message = describe_os_error(exc)
            if message is None:
                raise
            if logging.getLogger().isEnabledFor(logging.DEBUG):  # -v
                traceback.print_exc()
            _fail(message)

    return wrapper


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging and tracebacks")] = False,
) -> None:
    _setup_logging(verbose)
    signal.signal(signal.SIGTERM, _interrupt)


@app.command()
@guarded
def audit(
    data: Annotated[str, typer.Argument(help="image folder, parquet file/folder, hf:<id>, or 'phantom'")],
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the audit as JSON here")] = None,
    size: Annotated[int, typer.Option(help="preprocessing size used for near-duplicate checks")] = 64,
    config: Annotated[Path | None, typer.Option(help="YAML config whose data: section to use")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override, e.g. data.leakage.min_correlation=0.98")
    ] = None,
) -> None:
    """Counts, sizes, modes, unreadable files, duplicate groups and train/test leakage."""
    from synthaug.data.audit import format_report
    from synthaug.data.prepare import prepare_data
    from synthaug.io import write_json

    try:
        cfg = load_config(config, [f"data.source={data}", f"data.size={size}", *(set_ or [])]).data
        report = prepare_data(cfg).audit
    except (ConfigError, SourceError) as exc:
        _fail(exc)
    typer.echo(format_report(report))
    if json_out:
        write_json(json_out, report)
        typer.echo(f"\nwrote {json_out}")


@app.command()
@guarded
def phantoms(
    out: Annotated[Path, typer.Argument(help="output folder (Training/, Testing/, masks/)")],
    n: Annotated[int, typer.Option(help="number of images")] = 2000,
    size: Annotated[int, typer.Option(help="image side in pixels")] = 64,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    imbalance: Annotated[str | None, typer.Option(help="class weights, e.g. 'pituitary=0.1,glioma=0.5'")] = None,
    rare_class: Annotated[bool, typer.Option("--rare-class", help="add a fifth 'metastasis' class")] = False,
    test_fraction: Annotated[float, typer.Option(help="share of images in Testing/")] = 0.2,
) -> None:
    """Write the built-in phantom MRI dataset as an image folder with lesion masks."""
    from synthaug.data.phantoms import generate
    from synthaug.data.prepare import write_image_folder

    try:
        weights = _parse_weights(imbalance) if imbalance else None
        PhantomArgs = DataConfig.model_fields["phantom"].annotation
        PhantomArgs.model_validate({"n": n, "seed": seed, "imbalance": weights, "test_fraction": test_fraction})  # type: ignore[union-attr]
        data = generate(n, size, seed, weights, rare_class, test_fraction)
    except (ValueError, ConfigError) as exc:
        _fail(exc)
    if out.exists() and any(out.iterdir()):
        _fail(FileExistsError(f"output folder '{out}' is not empty; choose a new folder so nothing is overwritten"))
    write_image_folder(data, out)
    typer.echo(f"wrote {len(data)} images of {list(data.class_names)} to {out} (counts {data.class_counts().tolist()})")


def _parse_weights(text: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--imbalance expects name=weight pairs like 'pituitary=0.1', got {part!r}") from None
    return weights


@app.command()
@guarded
def run(
    config: Annotated[Path, typer.Argument(help="study YAML (see configs/)")],
    data: Annotated[str | None, typer.Option(help="override data.source (folder, parquet, hf:<id>, phantom)")] = None,
    out: Annotated[Path, typer.Option(help="run directory; an existing one with the same config resumes")] = Path(
        "runs/study"
    ),
    set_: Annotated[list[str] | None, typer.Option("--set", help="override, e.g. study.seeds=[0,1,2]")] = None,
    force: Annotated[list[str] | None, typer.Option(help="re-run this stage even if complete")] = None,
) -> None:
    """Run the whole study, resuming stages that are already complete."""
    from synthaug.study.executors import TasksFailed
    from synthaug.study.runner import run_study

    overrides = ([f"data.source={data}"] if data else []) + list(set_ or [])
    try:
        cfg = load_config(config, overrides)
        run_dir = run_study(cfg, out, set(force or []))
    except (ConfigError, SourceError, ValueError, RunDirLocked, TasksFailed) as exc:
        _fail(exc)
    typer.echo(f"study complete: {run_dir.root} (report: {run_dir.root / 'report.html'})")


@app.command()
@guarded
def report(run_dir: Annotated[Path, typer.Argument(help="a finished (or partial) run directory")]) -> None:
    """Rebuild RUN_DIR/report.html from the run directory alone."""
    from synthaug.report import build_report

    try:
        path = build_report(run_dir)
    except FileNotFoundError as exc:
        _fail(exc)
    typer.echo(f"wrote {path}")


@app.command()
@guarded
def table(
    run_dir: Annotated[Path, typer.Argument(help="a run directory whose statistics stage has run")],
    metric: Annotated[
        list[str] | None, typer.Option(help="metric column(s) to show (default: test_accuracy, test_macro_f1)")
    ] = None,
    paired_metric: Annotated[str, typer.Option(help="metric of the paired comparison columns")] = "test_accuracy",
    against: Annotated[
        list[str] | None,
        typer.Option(help="also the paired difference against this policy (repeatable), e.g. 'classical 50%'"),
    ] = None,
) -> None:
    """Print the run's results as a Markdown table: medians, 95% CIs, paired differences vs baseline."""
    from synthaug.report.markdown import markdown_table

    try:
        text = markdown_table(run_dir, metric, paired_metric, against)
    except (FileNotFoundError, ValueError) as exc:
        _fail(exc)
    typer.echo(text, nl=False)


@app.command("train-classifier")
@guarded
def train_classifier(
    run_dir: Annotated[Path, typer.Argument(help="run directory made by `synthaug run` (its config.yaml is used)")],
    model: Annotated[str, typer.Option(help=f"classifier registry key: {', '.join(CLASSIFIERS)}")] = "cnn",
    policy: Annotated[
        list[str] | None,
        typer.Option(help=f"policy, repeatable, e.g. classical:p=0.2; one of {', '.join(available_policies())}"),
    ] = None,
    fraction: Annotated[float, typer.Option(help="real fraction of the training split")] = 1.0,
    seed: Annotated[int, typer.Option(help="seed (fixes the real subset, validation split and training)")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override, e.g. train.epochs=5")] = None,
) -> None:
    """Train and evaluate one grid cell; its row is added to RUN_DIR/results.parquet."""
    from synthaug.classifiers.cell import run_cell
    from synthaug.config import ClassifierConfig, ModelConfig, PolicySpec
    from synthaug.config.policies import parse_policy, policy_params
    from synthaug.data.prepare import prepared
    from synthaug.rundir import RunDir, cell_id
    from synthaug.study.synthetic import study_cell

    run = RunDir(run_dir)
    try:
        cfg = load_config(run.config, list(set_ or []))
        mcfg = ModelConfig(name=model)
        policies: list[PolicySpec] = [parse_policy(p) for p in (policy or []) if p != "none"]
        for spec in policies:
            policy_params(spec)  # named errors before any data is read
        data = prepared(cfg.data, seed=cfg.study.seeds[0])
        cell = study_cell(cfg, data.train, fraction, seed, run)
        out = run.classifier_dir(cell_id(mcfg.label(), policies, fraction, seed))
        ccfg = ClassifierConfig(model=mcfg, train=cfg.train)
        row = run_cell(data.train, data.test, ccfg, policies, cell, out, device=cfg.study.device)
    except (ConfigError, SourceError, ValueError) as exc:
        _fail(exc)
    run.append_result(row)
    typer.echo(f"{row['cell_id']}: test accuracy {row['test_accuracy']:.3f}, macro-F1 {row['test_macro_f1']:.3f}")


@app.command()
@guarded
def explain(
    run_dir: Annotated[Path, typer.Argument(help="run directory with trained classifiers (made by `synthaug run`)")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override, e.g. quality.explain.per_class=8")] = None,
) -> None:
    """Grad-CAM of the study's classifiers on real vs synthetic images, quantified, into RUN_DIR/explain/."""
    from synthaug.study.explain import run_explain

    try:
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"'{run_dir}' is not a synthaug run directory (no config.yaml); run `synthaug run`")
        from synthaug.rundir import RunDir

        path = run_explain(load_config(run_dir / "config.yaml", list(set_ or [])), RunDir(run_dir))
    except (ConfigError, SourceError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    typer.echo(f"wrote {path} (`synthaug report {run_dir}` adds it to the report)")


@app.command("train-generator")
@guarded
def train_generator(
    out: Annotated[Path, typer.Argument(help="output folder (checkpoints, loss.csv, sample grids, generator.pt)")],
    data: Annotated[str | None, typer.Option(help="training data (folder, parquet, hf:<id>, phantom)")] = None,
    config: Annotated[Path | None, typer.Option(help="study YAML: its data: section and study.generators")] = None,
    generator: Annotated[
        str | None, typer.Option(help="name of a generator in the config's study.generators (default: --family)")
    ] = None,
    family: Annotated[str, typer.Option(help=f"one of {', '.join(FAMILIES)} (without --generator)")] = "ddpm",
    steps: Annotated[int | None, typer.Option(help="optimiser steps (default: the preset's)")] = None,
    fraction: Annotated[float, typer.Option(help="real fraction of the training split (a study cell's subset)")] = 1.0,
    seed: Annotated[int, typer.Option(help="seed: fixes the real subset and the training randomness")] = 0,
    resume: Annotated[bool, typer.Option(help="continue from OUT's last checkpoint")] = True,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override, e.g. data.size=32")] = None,
) -> None:
    """Train one generator on the training images of a dataset (never its validation or test images)."""
    from synthaug.config import parse_generator
    from synthaug.data.prepare import prepared
    from synthaug.study.synthetic import fit_on_cell, study_cell

    try:
        cfg = load_config(config, ([f"data.source={data}"] if data else []) + list(set_ or []))
        by_name = {g.name: g for g in cfg.study.generators}
        name = generator or family
        if generator is not None and generator not in by_name:
            raise ConfigError(f"--generator {generator!r} is not in study.generators ({sorted(by_name)})")
        gcfg = by_name[name] if name in by_name else parse_generator({"family": family})
        if steps is not None:
            gcfg = gcfg.model_copy(update={"steps": steps})
        train = prepared(cfg.data, seed=cfg.study.seeds[0]).train
        cell = study_cell(cfg, train, fraction, seed)
        gen, real = fit_on_cell(train, gcfg, cell, out, resume=resume)
    except (ConfigError, SourceError, ValueError) as exc:
        _fail(exc)
    typer.echo(f"trained {gen.family} on {len(real)} images of {list(real.class_names)}: {out / 'generator.pt'}")


@app.command()
@guarded
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="generator.pt written by train-generator or a study")],
    out: Annotated[Path, typer.Option(help="bank root: images go to OUT/<family>/<class>/*.png")] = Path("synthetic"),
    n: Annotated[int, typer.Option(help="images per class")] = 100,
    class_: Annotated[list[str] | None, typer.Option("--class", help="only this class (repeatable)")] = None,
    sampler: Annotated[
        str | None, typer.Option(help=f"{', '.join(SAMPLER_NAMES)} (diffusion; default: the model's)")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="sampler steps (diffusion)")] = None,
    guidance: Annotated[float | None, typer.Option(help="classifier-free guidance scale (diffusion)")] = None,
    variations_of: Annotated[
        str | None, typer.Option(help="make image variations of this dataset's training images (diffusion)")
    ] = None,
    strength: Annotated[float, typer.Option(help="noise level of variations, 0..1")] = 0.5,
    seed: Annotated[int, typer.Option(help="bank seed; image k of class c always gets the same noise")] = 0,
    batch_size: Annotated[int, typer.Option(help="images per forward batch")] = 64,
) -> None:
    """Write a synthetic image bank with manifest.parquet; an interrupted bank continues where it stopped."""
    from synthaug.generators import load_generator, write_bank

    try:
        if not checkpoint.is_file():
            raise FileNotFoundError(f"no generator checkpoint at '{checkpoint}'; train one with `train-generator`")
        if n < 1:
            raise ValueError(f"--n must be at least 1, got {n}")
        gen = load_generator(checkpoint)
        names = list(gen.class_names)
        unknown = [c for c in class_ or [] if c not in names]
        if unknown:
            raise ValueError(f"--class {unknown} not among the generator's classes {names}")
        sources = None
        if variations_of is not None:
            from synthaug.data.prepare import prepare_data

            dcfg = load_config(None, [f"data.source={variations_of}", f"data.size={gen.data_size}"]).data
            sources = prepare_data(dcfg).train
            if tuple(sources.class_names) != gen.class_names:
                raise ValueError(f"{variations_of} has classes {sources.class_names}, the generator {names}")
        counts = {names.index(c): n for c in (class_ or names)}
        family = "variation" if sources is not None else gen.family
        manifest = write_bank(gen, out / family, counts, seed=seed, sampler=sampler, steps=steps, guidance=guidance,
                              batch_size=batch_size, sources=sources, strength=strength)  # fmt: skip
    except (ConfigError, SourceError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    typer.echo(f"bank {out / family}: {len(manifest)} images, manifest {out / family / 'manifest.parquet'}")
