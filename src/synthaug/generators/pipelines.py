"""Loading pretrained diffusers pipelines (hub id or local folder, offline-safe) and fine-tuning
their UNet with LoRA (peft, through diffusers' adapter API); used by the ``pretrained`` family.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from synthaug.config.external import PretrainedConfig
from synthaug.data.imageset import to_uint8
from synthaug.generators.base import noise

PIPELINES = {
    "text2img": "StableDiffusionPipeline",
    "image_variation": "StableDiffusionImageVariationPipeline",
    "unclip": "StableUnCLIPImg2ImgPipeline",
}
HUB_TIMEOUT_S = 5.0


def require_hf(what: str = "the pretrained generator family") -> None:
    """transformers (text / image encoders) and peft (LoRA) come with the ``hf`` extra."""
    missing = [m for m in ("transformers", "peft") if not _importable(m)]
    if missing:
        raise ImportError(f"{what} needs {' and '.join(missing)}: pip install 'synthaug[hf]'")


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- finding and loading the model


def folder_fingerprint(root: Path) -> str:
    """Fingerprint of a pipeline folder: every file's relative path, size, first and last MiB."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        size = p.stat().st_size
        h.update(f"{p.relative_to(root).as_posix()}\0{size}\0".encode())
        with open(p, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(-(1 << 20), os.SEEK_END)
                h.update(f.read())
    return "sha256:" + h.hexdigest()[:16]


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached (None when it can): offline mode, or no connection in 5 s."""
    if os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_TIMEOUT_S).close()
    except OSError as exc:
        return f"{host}:{port} cannot be reached ({exc})"
    return None


def resolve_model(cfg: PretrainedConfig) -> tuple[str, str]:
    """(folder to load from, reference recorded with every image: hub commit or folder fingerprint)."""
    p = cfg.pretrained
    setting = f"generator '{cfg.name}': pretrained.model"
    local = Path(p.model).expanduser()
    if local.exists() or p.model.startswith((".", "/", "~")) or p.model.count("/") > 1:
        if not (local / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{setting} = '{p.model}' is not a diffusers pipeline folder (no model_index.json there); "
                "save one with pipeline.save_pretrained(folder), or give a hub id"
            )
        return str(local), folder_fingerprint(local)
    from diffusers import DiffusionPipeline

    try:  # the local cache first: no network when the model was downloaded before
        folder = DiffusionPipeline.download(p.model, revision=p.revision, local_files_only=True)
    except Exception:
        reason = hub_unreachable()
        if reason is not None:
            raise ConnectionError(
                f"{setting} = '{p.model}' is not in the local cache and the Hugging Face hub is unreachable "
                f"({reason}). Download it where there is internet (DiffusionPipeline.from_pretrained(...)"
                ".save_pretrained(DIR)) and set pretrained.model to DIR"
            ) from None
        folder = DiffusionPipeline.download(p.model, revision=p.revision)
    return str(folder), f"{p.model}@{Path(folder).name}"


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":  # bfloat16 where the GPU has it: LoRA training needs no loss scaling then
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return cast(torch.dtype, getattr(torch, name))


def load_pipeline(cfg: PretrainedConfig, device: torch.device) -> tuple[Any, str]:
    """The pipeline on ``device`` (memory options applied, progress bars off) and its reference."""
    require_hf()
    import diffusers
    import transformers

    if not sys.stderr.isatty():  # loading bars are noise in a log file
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()

    p = cfg.pretrained
    folder, ref = resolve_model(cfg)
    cls = getattr(diffusers, PIPELINES[p.pipeline])
    try:  # medical images trip the NSFW filter (it blacks them out): no safety checker
        pipe = cls.from_pretrained(folder, torch_dtype=_dtype(p.dtype, device), safety_checker=None)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(
            f"generator '{cfg.name}': cannot load '{p.model}' as a {cls.__name__} (pretrained.pipeline = "
            f"{p.pipeline}): {exc}"
        ) from exc
    if p.cpu_offload and device.type == "cuda":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if p.attention_slicing:
        pipe.enable_attention_slicing()
    if p.vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe, ref


def lora_config(cfg: PretrainedConfig) -> Any:
    from peft import LoraConfig

    lo = cfg.pretrained.lora
    return LoraConfig(
        r=lo.rank, lora_alpha=lo.alpha or lo.rank, init_lora_weights="gaussian", target_modules=list(lo.target_modules)
    )


def add_lora(unet: Any, cfg: PretrainedConfig, weights: dict[str, Tensor] | None = None) -> None:
    """Attach the LoRA adapter to the UNet (diffusers' PEFT integration) and load ``weights`` into it."""
    from peft.utils import set_peft_model_state_dict

    unet.add_adapter(lora_config(cfg))
    if weights is not None:
        result: Any = set_peft_model_state_dict(unet, weights)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"LoRA weights do not fit the model: unexpected keys {result.unexpected_keys[:3]}")


def lora_weights(unet: Any) -> dict[str, Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().float().cpu().clone() for k, v in get_peft_model_state_dict(unet).items()}


class PretrainedState(nn.Module):
    """What the checkpoint holds: the model reference (checked on load) and the LoRA weights, if any."""

    def __init__(self, ref: str = "", lora: dict[str, Tensor] | None = None):
        super().__init__()
        self.ref, self.lora = ref, dict(lora or {})

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        ref = torch.tensor(list(self.ref.encode()), dtype=torch.uint8)
        return {"ref": ref, **{f"lora.{k}": v for k, v in self.lora.items()}}

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        self.ref = bytes(state["ref"].tolist()).decode()
        self.lora = {k[5:]: v for k, v in state.items() if k.startswith("lora.")}


def to_pil(x: Tensor) -> list[Image.Image]:
    """(N, 1, S, S) in [-1, 1] -> N RGB images with three equal channels."""
    return [Image.fromarray(a).convert("RGB") for a in to_uint8(x)]


class LoraTrainer:
    """LoRA on the pipeline's UNet: the noise-prediction loss on the latents of real images, each
    conditioned on its class's rare-token prompt (text2img) or its own CLIP image embedding
    (image_variation). Only the LoRA matrices train; the rest of the pipeline is frozen."""

    def __init__(self, pipe: Any, ref: str, cfg: PretrainedConfig):
        from diffusers import DDPMScheduler

        self.pipe, self.ref, self.cfg = pipe, ref, cfg
        for part in ("unet", "vae", "text_encoder", "image_encoder"):
            if getattr(pipe, part, None) is not None:
                getattr(pipe, part).requires_grad_(False)
        add_lora(pipe.unet, cfg)
        self.params = [p for p in pipe.unet.parameters() if p.requires_grad]
        for p in self.params:  # trainable weights in float32 even when the pipeline is half precision
            p.data = p.data.float()
        self.opt = torch.optim.AdamW(self.params, lr=float(cfg.lr or 1e-4))
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.prompt_embeds: Tensor | None = None

    def prepare(self, class_names: Sequence[str]) -> None:
        """Encode each class's fine-tuning prompt once (text2img)."""
        if self.cfg.pretrained.pipeline != "text2img":
            return
        prompts = [self.cfg.prompt_for(name, c) for c, name in enumerate(class_names)]
        with torch.no_grad():
            self.prompt_embeds = self.pipe.encode_prompt(prompts, self.pipe.device, 1, False)[0]

    @property
    def nets(self) -> dict[str, nn.Module]:
        return {"all": self.export()}

    def _condition(self, x: Tensor, y: Tensor | None) -> Tensor:
        if self.prompt_embeds is not None:
            assert y is not None
            return self.prompt_embeds[y]
        pixels = self.pipe.feature_extractor(images=to_pil(x), return_tensors="pt").pixel_values
        enc = self.pipe.image_encoder
        return cast(Tensor, enc(pixels.to(x.device, enc.dtype)).image_embeds.unsqueeze(1))

    def step(self, x: Tensor, y: Tensor | None, gen: torch.Generator) -> dict[str, float]:
        pipe, sched = self.pipe, self.noise_scheduler
        pipe.unet.train()
        with torch.no_grad():
            vae = pipe.vae
            latents = vae.encode(x.repeat(1, 3, 1, 1).to(vae.dtype)).latent_dist.sample(generator=gen)
            latents = latents * vae.config.scaling_factor
            cond = self._condition(x, y)
        eps = noise(tuple(latents.shape), gen, latents.device).to(latents.dtype)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(x),), generator=gen, device=gen.device)
        t = t.to(latents.device)
        noisy = sched.add_noise(latents, eps, t)
        target = eps if sched.config.prediction_type == "epsilon" else sched.get_velocity(latents, eps, t)
        pred = pipe.unet(noisy, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred.float(), target.float())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}

    def export(self) -> PretrainedState:
        return PretrainedState(self.ref, lora_weights(self.pipe.unet))

    def state_dict(self) -> dict[str, Any]:
        return {"lora": lora_weights(self.pipe.unet), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from peft.utils import set_peft_model_state_dict

        set_peft_model_state_dict(self.pipe.unet, state["lora"])
        self.opt.load_state_dict(state["opt"])

    def save_diffusers(self, folder: Path) -> None:
        """The LoRA in diffusers' format: ``pipeline.load_lora_weights(folder)`` applies it elsewhere."""
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(self.pipe.unet))
        StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)
