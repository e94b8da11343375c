"""Generator families that are not trained from scratch: images a user already has (``folder``)
and pretrained diffusion pipelines from the Hugging Face hub or a local folder (``pretrained``),
optionally fine-tuned with LoRA on the cell's real images.

Imported by ``synthaug.config.generators`` (which registers them before building the union), so
these classes are light like every config: nothing here loads torch or diffusers.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from synthaug.config.base import StrictModel
from synthaug.config.generators import GeneratorConfig, register_family


class FolderOptions(StrictModel):
    """Synthetic images a user already has, one sub-folder per class (``DIR/<class>/*``)."""

    path: str = Field("", description="folder with one sub-folder per class name of the dataset")


@register_family
class FolderConfig(GeneratorConfig):
    """Bring your own synthetic images: nothing is trained; banks take images from the folder.

    With ``DIR/manifest.csv`` (columns ``path``, ``source``: each image and the real image it was
    made from) the folder also serves the ``variation`` policy.
    """

    family: Literal["folder"] = "folder"
    folder: FolderOptions = FolderOptions()

    section: ClassVar[str] = "folder"
    implementation: ClassVar[str] = "synthaug.generators.folder:FolderGenerator"
    presets: ClassVar[dict[str, dict[str, Any]]] = {"cpu": {"steps": 1}, "gpu": {"steps": 1}}
    variations: ClassVar[bool] = True  # when the folder has a manifest.csv naming sources
    external: ClassVar[bool] = True

    @model_validator(mode="after")
    def _path(self) -> FolderConfig:
        if not self.folder.path:
            raise ValueError("family folder needs folder.path: the folder with one sub-folder per class")
        return self

    def objective(self) -> tuple[str, str]:
        return f"none (images from {self.folder.path})", "none"


PipelineKind = Literal["text2img", "image_variation", "unclip"]


class LoraOptions(StrictModel):
    """LoRA fine-tuning of the pipeline's UNet on the cell's real training images (rank 0: none).

    Each class gets its own prompt with a rare token (DreamBooth-style): the class prompt with
    ``{token}{class_id} `` before the class name, e.g. "a brain MRI slice showing sks2 pituitary".
    The steps, batch size and learning rate are the generator's common ``steps``, ``batch_size``, ``lr``.
    """

    rank: int = Field(0, ge=0, description="LoRA rank; 0 uses the pretrained weights as they are")
    alpha: int | None = Field(None, gt=0, description="LoRA scale numerator (default: the rank)")
    target_modules: tuple[str, ...] = Field(("to_q", "to_k", "to_v", "to_out.0"), description="UNet layers adapted")
    token: str = Field("sks", min_length=1, description="rare token marking each class's fine-tuned prompt")


class PretrainedOptions(StrictModel):
    """A diffusers pipeline: hub id or local folder, which kind, prompts and inference settings."""

    model: str = Field("", description="hub id (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5) or local folder")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit); None: the default branch")
    pipeline: PipelineKind = Field(
        "text2img",
        description="text2img: text-to-image for synthetic/balance, img2img (SDEdit) for variation; "
        "image_variation / unclip: variations of real images only",
    )
    prompt: str = Field("a grayscale medical image showing {class}", description="class prompt template")
    prompts: dict[str, str] = Field(default_factory=dict, description="per-class prompts (override the template)")
    negative_prompt: str = ""
    inference_steps: int = Field(30, ge=1, description="denoising steps of the pipeline")
    guidance: float = Field(7.5, ge=0, description="classifier-free guidance scale")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on CUDA (float16 where it lacks bf16), float32 on CPU"
    )
    attention_slicing: bool = Field(False, description="lower memory, slower (small GPUs)")
    vae_tiling: bool = Field(False, description="decode in tiles (large images, small GPUs)")
    cpu_offload: bool = Field(False, description="enable_model_cpu_offload: keep only the active part on the GPU")
    lora: LoraOptions = LoraOptions()

    @field_validator("prompt")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{class}" not in value:
            raise ValueError(f"prompt template {value!r} must contain {{class}} (the class name goes there)")
        return value


@register_family
class PretrainedConfig(GeneratorConfig):
    """A pretrained diffusion pipeline (diffusers), used as it is or LoRA-fine-tuned per cell."""

    family: Literal["pretrained"] = "pretrained"
    pretrained: PretrainedOptions = PretrainedOptions()

    section: ClassVar[str] = "pretrained"
    implementation: ClassVar[str] = "synthaug.generators.pretrained:PretrainedGenerator"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {"image_size": 512, "steps": 200, "batch_size": 1, "lr": 1e-4},
        "gpu": {"image_size": 512, "steps": 1000, "batch_size": 4, "lr": 1e-4},
    }
    variations: ClassVar[bool] = True
    external: ClassVar[bool] = True

    @model_validator(mode="after")
    def _model(self) -> PretrainedConfig:
        if not self.pretrained.model:
            raise ValueError(
                "family pretrained needs pretrained.model: a hub id such as "
                "stable-diffusion-v1-5/stable-diffusion-v1-5, or a folder saved with save_pretrained"
            )
        if self.mode != "conditional":
            raise ValueError("family pretrained draws every class from one pipeline: use mode: conditional")
        if self.pretrained.lora.rank and self.pretrained.pipeline == "unclip":
            raise ValueError("pretrained.lora: LoRA fine-tuning supports the text2img and image_variation pipelines")
        return self

    def draws(self) -> bool:
        return self.pretrained.pipeline == "text2img"

    def prompt_for(self, class_name: str, class_id: int) -> str:
        """The prompt of a class; fine-tuned models use the class's rare token before its name."""
        p = self.pretrained
        template = p.prompts.get(class_name, p.prompt)
        token = f"{p.lora.token}{class_id} " if p.lora.rank else ""
        return template.replace("{class}", token + class_name)

    def objective(self) -> tuple[str, str]:
        p = self.pretrained
        if not p.lora.rank:
            return f"none (pretrained {p.model}, used as it is)", "none"
        return (
            f"LoRA (rank {p.lora.rank}) fine-tuning of {p.model}'s UNet: noise-prediction MSE on the latents "
            "of the cell's real images with per-class rare-token prompts",
            f"AdamW (lr {self.lr:g})" if self.lr else "AdamW",
        )
