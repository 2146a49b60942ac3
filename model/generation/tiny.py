"""The ``tiny`` backend's models: diffusers' Wan2.2 classes at test size, weights drawn from a seed.

Used by :func:`model.generation.backbone.load_backbone` for ``backend="tiny"`` (tests only: random weights),
and :func:`wan22_vae` builds the full-size Wan2.2 VAE at random weights for benchmarks (it costs
exactly what the real one costs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from model.generation.profiles import WAN22_LATENT_CHANNELS

if TYPE_CHECKING:
    from model.generation.backbone import BackboneConfig

#: Vocabulary of the tiny backend's word-level tokenizer, after ``<pad>`` (0), ``</s>`` (1), ``<unk>`` (2).
TINY_WORDS = (
    "a an the of in on at with and to from by near under over behind through along "
    "room kitchen hall corridor stairs door window wall floor ceiling table chair bed sofa lamp shelf "
    "house street road bridge city village garden park forest tree trees grass field hill mountain "
    "river lake sea beach sand rock cave sky cloud clouds sun moon night day morning evening snow rain "
    "red orange yellow green blue purple white black grey brown dark bright old new wooden stone "
    "walk walking fly flying move moving turn look camera view scene photo realistic cinematic"
).split()


def seeded(seed: int, factory: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``factory()`` with torch's CPU RNG seeded to ``seed``; the caller's RNG state is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer built in code: lower-cased whitespace words from :data:`TINY_WORDS`,
    others ``<unk>``; ``</s>`` appended; ids ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2."""
    vocab = {token: i for i, token in enumerate(("<pad>", "</s>", "<unk>", *dict.fromkeys(TINY_WORDS)))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_text_encoder(vocab_size: int) -> UMT5EncoderModel:
    """UMT5 encoder with ``d_model`` 32, 2 layers (random weights from the current RNG)."""
    return UMT5EncoderModel(
        UMT5Config(
            vocab_size=vocab_size,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )


def tiny_transformer(config: BackboneConfig, text_dim: int) -> WanTransformer3DModel:
    """TI2V-5B-shaped transformer (48 channels, patch 1x2x2) with the tiny sizes of ``config``.

    ``rope_max_seq_len`` keeps the real model's 1024, so any token grid up to 1024 per axis works.
    """
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=config.tiny_num_heads,
        attention_head_dim=config.tiny_head_dim,
        in_channels=WAN22_LATENT_CHANNELS,
        out_channels=WAN22_LATENT_CHANNELS,
        text_dim=text_dim,
        freq_dim=256,
        ffn_dim=config.tiny_ffn_dim,
        num_layers=config.tiny_num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,
    )


def tiny_wan_vae() -> AutoencoderKLWan:
    """Wan2.2-shaped ``AutoencoderKLWan`` from diffusers' own tests (48 channels, stride 16 x 4)."""
    return AutoencoderKLWan(
        base_dim=3,
        z_dim=WAN22_LATENT_CHANNELS,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * WAN22_LATENT_CHANNELS,
        latents_std=[1.0] * WAN22_LATENT_CHANNELS,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )


#: ``latents_mean`` / ``latents_std`` of the Wan2.2 VAE (``vae22_diffusers_config`` in diffusers' converter).
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]  # fmt: skip
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]  # fmt: skip


def wan22_vae() -> AutoencoderKLWan:
    """The full-size Wan2.2 ``AutoencoderKLWan`` (``vae22_diffusers_config``: 705M parameters, 48 channels,
    stride 16 x 4) with random weights from the current RNG: the real VAE's cost without its weights."""
    return AutoencoderKLWan(
        base_dim=160,
        decoder_base_dim=256,
        z_dim=WAN22_LATENT_CHANNELS,
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_temporal=4,
        scale_factor_spatial=16,
        latents_mean=WAN22_LATENTS_MEAN,
        latents_std=WAN22_LATENTS_STD,
    )
