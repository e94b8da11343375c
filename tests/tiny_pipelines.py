"""Tiny random-weight diffusers pipelines built from configs and saved with ``save_pretrained``:
what the ``pretrained`` family loads in the tests (no weights can be downloaded here).

A character-level CLIP tokenizer (byte-level alphabet, no merges), 2-layer CLIP text / vision
encoders of width 32, a two-level ``UNet2DConditionModel`` and ``AutoencoderKL`` (factor 2): a
16 px image is a 8×8×4 latent. Each pipeline is built once per test process.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

WIDTH = 32
MAX_TOKENS = 77


def _bytes_to_unicode() -> dict[int, str]:
    """The byte-level BPE alphabet (GPT-2 / CLIP): printable stand-ins for the 256 byte values."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab = {t: i for i, t in enumerate([*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_TOKENS)


def _parts(work: Path, **unet: Any) -> dict[str, Any]:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = tokenizer(work / "tok")
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=WIDTH,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=MAX_TOKENS,
            projection_dim=WIDTH,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=1,
        )
    )
    return {
        "unet": UNet2DConditionModel(
            block_out_channels=(16, 32),
            layers_per_block=1,
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=WIDTH,
            attention_head_dim=2,
            norm_num_groups=8,
            **unet,
        ),
        "vae": AutoencoderKL(
            block_out_channels=(16, 32),
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            norm_num_groups=8,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            sample_size=16,
        ),
        "tokenizer": tok,
        "text_encoder": text,
        "scheduler": DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
    }


def _vision() -> tuple[Any, Any]:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=WIDTH,
            projection_dim=WIDTH,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=4,
            intermediate_size=37,
        )
    )
    return encoder, CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32})


def tiny_pipeline(kind: str = "text2img") -> str:
    """Folder of a tiny random pipeline of ``kind`` (text2img, image_variation, unclip)."""
    return _build(kind)


@functools.cache
def _build(kind: str) -> str:
    import diffusers

    work = Path(tempfile.mkdtemp(prefix=f"synthaug-tiny-{kind}-"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind == "text2img":
            pipe = diffusers.StableDiffusionPipeline(
                **_parts(work), safety_checker=None, feature_extractor=None, requires_safety_checker=False
            )
        elif kind == "image_variation":
            parts = _parts(work)
            encoder, processor = _vision()
            pipe = diffusers.StableDiffusionImageVariationPipeline(
                vae=parts["vae"],
                image_encoder=encoder,
                unet=parts["unet"],
                scheduler=parts["scheduler"],
                safety_checker=None,
                feature_extractor=processor,
                requires_safety_checker=False,
            )
        elif kind == "unclip":
            from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer

            parts = _parts(work, class_embed_type="projection", projection_class_embeddings_input_dim=2 * WIDTH)
            encoder, processor = _vision()
            pipe = diffusers.StableUnCLIPImg2ImgPipeline(
                feature_extractor=processor,
                image_encoder=encoder,
                image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=WIDTH),
                image_noising_scheduler=diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
                **parts,
            )
        else:
            raise ValueError(kind)
    out = work / "pipeline"
    pipe.save_pretrained(out)
    return str(out)
