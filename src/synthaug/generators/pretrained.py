"""Pretrained diffusion pipelines (diffusers) as a generator family: a hub id or a local folder
saved with ``save_pretrained``, used as it is or LoRA-fine-tuned (peft, through diffusers'
adapter API) on the cell's real training images.

Pipeline kinds: ``text2img`` (Stable Diffusion: text-to-image from the class prompt for the
``synthetic`` / ``balance`` policies; img2img / SDEdit at the study's variation strength for the
``variation`` policy, plain text-to-image at strength 1 and the autoencoder round trip at 0),
``image_variation`` (Stable Diffusion image variations: a new image from the CLIP image embedding
of a real one, strength unused) and ``unclip`` (Stable unCLIP image-to-image: strength sets the
noise level of the image embedding). One-channel images go in as three equal channels and come
out as the mean of the three; images are resized to the pipeline's resolution (``image_size``)
and back to the dataset's.

The checkpoint holds only a reference to the model (the hub commit or a fingerprint of the local
folder, checked when it loads) and the LoRA weights, so it is small; the LoRA is also written in
diffusers' format (``RUN/lora/``) for ``pipeline.load_lora_weights``. No weights are downloaded
when the hub cannot be reached: the error names the model, the setting and the local-path way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from synthaug.config.external import PretrainedConfig
from synthaug.config.generators import GeneratorConfig
from synthaug.data.imageset import ImageSet, to_float
from synthaug.device import pick_device
from synthaug.generators.base import Generator, GeneratorT, SampleOptions, resize, start_fit
from synthaug.generators.pipelines import LoraTrainer, PretrainedState, add_lora, load_pipeline, resolve_model, to_pil
from synthaug.generators.samplers import SAMPLERS, make_scheduler
from synthaug.generators.training import Trainer, train_loop
from synthaug.rundir import GENERATOR

MODEL_SAMPLER = "model"  # the pipeline's own scheduler
HUB_TIMEOUT_S = 5.0


# ---------------------------------------------------------------- images in and out


def from_pipeline(images: Tensor, size: int) -> Tensor:
    """Pipeline output (N, 3, H, W) in [0, 1] -> (N, 1, size, size) in [-1, 1], channels averaged."""
    gray = images.float().mean(dim=1, keepdim=True) * 2 - 1
    return resize(gray, size).clamp(-1, 1)


class PretrainedGenerator(Generator):
    cfg: PretrainedConfig

    def __init__(
        self,
        cfg: GeneratorConfig,
        class_names: Sequence[str],
        data_size: int,
        nets: dict[str, nn.Module],
        pipe: Any = None,
    ):
        super().__init__(cfg, class_names, data_size, nets)
        state = nets.get("all")
        assert isinstance(state, PretrainedState), "a pretrained generator's checkpoint holds a PretrainedState"
        if unknown := sorted(set(self.cfg.pretrained.prompts) - set(self.class_names)):
            raise ValueError(f"pretrained.prompts names classes the data does not have: {unknown} ({self.class_names})")
        if pipe is None:
            pipe, ref = load_pipeline(self.cfg, self.device)
            if state.ref and ref != state.ref:
                raise ValueError(
                    f"pretrained.model '{self.cfg.pretrained.model}' is not the model this generator was made with "
                    f"(recorded {state.ref}, found {ref}); restore it, or use a new run directory"
                )
            if state.lora:
                add_lora(pipe.unet, self.cfg, state.lora)
        self.pipe, self.model_ref = pipe, state.ref
        self._model_scheduler = pipe.scheduler  # the pipeline's own; a sampler of ours replaces it per call
        self._img2img: Any = None

    @classmethod
    def build_net(cls, cfg: GeneratorConfig, num_classes: int | None) -> nn.Module:
        return PretrainedState()

    @classmethod
    def make_trainer(cls, cfg: GeneratorConfig, num_classes: int | None, device: torch.device) -> Trainer:
        assert isinstance(cfg, PretrainedConfig)
        pipe, ref = load_pipeline(cfg, device)
        return cast(Trainer, LoraTrainer(pipe, ref, cfg))

    def options(self, sampler: str | None, steps: int | None, guidance: float | None) -> SampleOptions:
        if sampler not in (None, MODEL_SAMPLER, *SAMPLERS):
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)} (or none: the model's)")
        p = self.cfg.pretrained
        g = p.guidance if guidance is None else float(guidance)
        return SampleOptions(sampler or MODEL_SAMPLER, int(steps or p.inference_steps), g)

    def preview_options(self) -> SampleOptions:
        return self.options(None, min(self.cfg.pretrained.inference_steps, 10), None)

    def provenance(self, class_id: int) -> dict[str, Any]:
        p = self.cfg.pretrained
        prompt = self.cfg.prompt_for(self.class_names[class_id], class_id) if p.pipeline != "image_variation" else None
        return {"model": p.model, "model_revision": self.model_ref, "pipeline": p.pipeline, "prompt": prompt}

    def uses_strength(self) -> bool:
        return self.cfg.pretrained.pipeline != "image_variation"

    def _call(self, pipe: Any, opts: SampleOptions, rng: Any, n: int, **kwargs: Any) -> Tensor:
        """Run ``pipe`` with the sampler, steps, guidance and per-image generators; (n, 1, S, S) in [-1, 1]."""
        pipe.scheduler = self._scheduler(opts)
        neg = self.cfg.pretrained.negative_prompt
        if neg and "prompt" in kwargs:
            kwargs["negative_prompt"] = [neg] * n
        size = int(self.cfg.image_size or 512)
        out = pipe(num_inference_steps=opts.steps, guidance_scale=opts.guidance, generator=rng, output_type="pt",
                   height=size, width=size, **kwargs).images  # fmt: skip
        return from_pipeline(out, size)

    def _scheduler(self, opts: SampleOptions) -> Any:
        if opts.sampler == MODEL_SAMPLER:
            return self._model_scheduler
        return make_scheduler(str(opts.sampler), self._model_scheduler.config, clip_sample=False)

    def generate(self, net: nn.Module, labels: Tensor | None, n: int, rng: Any, opts: SampleOptions) -> Tensor:
        if not self.cfg.draws():
            raise ValueError(
                f"generator '{self.cfg.name}' ({self.cfg.pretrained.pipeline}) only makes variations of real images"
            )
        assert labels is not None
        prompt = self.cfg.prompt_for(self.class_names[int(labels[0])], int(labels[0]))
        return self._call(self.pipe, opts, rng, n, prompt=[prompt] * n)

    @torch.no_grad()
    def reconstruct(self, x0: Tensor) -> Tensor:
        """The autoencoder round trip of real images (N, 1, S, S): what strength 0 gives."""
        vae = self.pipe.vae
        x3 = x0.repeat(1, 3, 1, 1).to(self.device, vae.dtype)
        decoded = vae.decode(vae.encode(x3).latent_dist.mode()).sample
        return decoded.float().mean(dim=1, keepdim=True).clamp(-1, 1)

    def vary(
        self, net: nn.Module, labels: Tensor | None, x0: Tensor, strength: float, rng: Any, opts: SampleOptions
    ) -> Tensor:
        assert labels is not None
        c, n, kind = int(labels[0]), len(x0), self.cfg.pretrained.pipeline
        prompt = [self.cfg.prompt_for(self.class_names[c], c)] * n
        if kind == "image_variation":
            return self._call(self.pipe, opts, rng, n, image=to_pil(x0))
        if kind == "unclip":
            levels = int(self.pipe.image_noising_scheduler.config.num_train_timesteps) - 1
            level = round(strength * levels)
            return self._call(self.pipe, opts, rng, n, image=to_pil(x0), prompt=prompt, noise_level=level)
        if strength <= 0.0:
            return self.reconstruct(x0)
        if strength >= 1.0:  # nothing of the source survives: plain text-to-image
            return self._call(self.pipe, opts, rng, n, prompt=prompt)
        if self._img2img is None:
            from diffusers import StableDiffusionImg2ImgPipeline

            self._img2img = StableDiffusionImg2ImgPipeline(**self.pipe.components)
            self._img2img.set_progress_bar_config(disable=True)
        size = int(self.cfg.image_size or 512)
        self._img2img.scheduler = self._scheduler(opts)
        out = self._img2img(prompt=prompt, image=to_pil(x0), strength=strength, num_inference_steps=opts.steps,
                            guidance_scale=opts.guidance, generator=rng, output_type="pt").images  # fmt: skip
        return from_pipeline(out, size)

    @classmethod
    def fit(
        cls: type[GeneratorT],
        train_data: ImageSet,
        cfg: GeneratorConfig,
        run_dir: str | Path,
        seed: int = 0,
        resume: bool = False,
        unlabelled: ImageSet | None = None,
        start: Generator | None = None,
    ) -> GeneratorT:
        """Load the pipeline; with ``lora.rank`` > 0 fine-tune it on ``train_data`` (resumable)."""
        assert isinstance(cfg, PretrainedConfig)
        run_dir, device, names = Path(run_dir), pick_device(cfg.device), train_data.class_names
        if unknown := sorted(set(cfg.pretrained.prompts) - set(names)):
            raise ValueError(f"pretrained.prompts names classes the data does not have: {unknown} ({names})")
        resolve_model(cfg)  # a missing or unreachable model fails here, named with the study's setting
        cfg = start_fit(train_data, cfg, run_dir, seed)
        if not cfg.pretrained.lora.rank:
            pipe, ref = load_pipeline(cfg, device)
            gen = cast(Any, cls)(cfg, names, train_data.size, {"all": PretrainedState(ref)}, pipe=pipe)
            gen.save(run_dir / GENERATOR)
            return gen
        size = int(cfg.image_size or train_data.size)
        with torch.random.fork_rng(devices=[]):  # LoRA init from the run's seed, global RNG untouched
            torch.manual_seed(seed)
            trainer = cast(Any, cls).make_trainer(cfg, len(names), device)
        trainer.prepare(names)
        x = resize(to_float(train_data.images), size).to(device)  # (N, 1, S, S)
        y = torch.as_tensor(train_data.labels, dtype=torch.long, device=device)
        preview: dict[str, Any] = {}

        def grid() -> Tensor:  # four images of each class, the preview sampler, current LoRA weights
            if "gen" not in preview:
                made = cast(Any, cls)
                preview["gen"] = made(cfg, names, train_data.size, {"all": trainer.export()}, pipe=trainer.pipe)
            gen = preview["gen"]
            trainer.pipe.unet.eval()
            rows = []
            with torch.no_grad():
                for c in range(len(names)):
                    rng = [torch.Generator().manual_seed(c * 4 + i) for i in range(4)]
                    label = torch.full((4,), c, dtype=torch.long)
                    if cfg.draws():
                        rows.append(gen.generate(None, label, 4, rng, gen.preview_options()))
                    else:
                        src = x[y == c][:4] if bool((y == c).any()) else x[:4]
                        rows.append(gen.vary(None, label[: len(src)], src, 0.5, rng[: len(src)], gen.preview_options()))
            return torch.cat(rows).float().cpu()

        train_loop(trainer, x, y, cfg, run_dir, seed, resume, grid)
        trainer.pipe.unet.eval()
        state = trainer.export()
        trainer.save_diffusers(run_dir / "lora")
        gen = cast(Any, cls)(cfg, names, train_data.size, {"all": state}, pipe=trainer.pipe)
        gen.save(run_dir / GENERATOR)
        return gen
