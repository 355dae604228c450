"""The benchmark models: one random transformers reference, saved in the official layout, that omni loads.

Sizes:
    reference   the thinker text config of /work/shared/REFERENCE_NOTES.md (hidden 1024, 8 layers, 16/4 heads,
                head_dim 64, 64 experts top-8, moe_intermediate 256, vocab 32000), a 4-block vision tower
                (width 256, 16-pixel patches), a 4-layer audio tower
                (width 256, 128 mel bins) and a 2-layer Code2Wav (width 256, decoder 256, official rates)
    small       the same shapes scaled down, to check that the scripts run (seconds)
"""

from __future__ import annotations

import torch

from common import HERE  # noqa: F401  (puts tests/ on sys.path for `reference`)
from reference import tiny_config_dict

SIZES = {
    "reference": dict(
        text=dict(vocab_size=32000, hidden_size=1024, intermediate_size=3072, num_hidden_layers=8,
                  num_attention_heads=16, num_key_value_heads=4, head_dim=64, moe_intermediate_size=256,
                  num_experts=64, num_experts_per_tok=8, max_position_embeddings=4096,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [12, 10, 10],
                                   "interleaved": True}),
        vision=dict(depth=4, hidden_size=256, intermediate_size=1024, num_heads=4, patch_size=16,
                    temporal_patch_size=2, spatial_merge_size=2, num_position_embeddings=2304,
                    deepstack_visual_indexes=[1, 2]),
        code2wav=dict(codebook_size=2048, num_quantizers=16, hidden_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, intermediate_size=512, sliding_window=72,
                      upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2], decoder_dim=256),
        audio=dict(num_mel_bins=128, encoder_layers=4, encoder_attention_heads=4, encoder_ffn_dim=1024, d_model=256,
                   n_window=50, n_window_infer=400, downsample_hidden_size=64, max_source_positions=1500),
        prefill=256, new_tokens=24, image=(1, 32, 32), audio_frames=1000, code_frames=50,
        speech=dict(prompt=32, new_tokens=16, frames=50),
    ),
    "small": dict(
        text=dict(vocab_size=4096, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=64, moe_intermediate_size=64,
                  num_experts=16, num_experts_per_tok=4, max_position_embeddings=1024,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [12, 10, 10],
                                   "interleaved": True}),
        vision=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, patch_size=16,
                    temporal_patch_size=2, spatial_merge_size=2, num_position_embeddings=256,
                    deepstack_visual_indexes=[0]),
        code2wav=dict(codebook_size=256, num_quantizers=16, hidden_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, intermediate_size=128, sliding_window=72,
                      upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2], decoder_dim=32),
        audio=dict(num_mel_bins=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128, d_model=64,
                   n_window=50, n_window_infer=200, downsample_hidden_size=16, max_source_positions=200),
        prefill=64, new_tokens=24, image=(1, 16, 16), audio_frames=300, code_frames=12,
        speech=dict(prompt=16, new_tokens=6, frames=12),
    ),
}


# chat-format ids inside the small vocabularies (the Talker's prompt is built from a chat turn)
CHAT_IDS = dict(im_start_token_id=250, im_end_token_id=251, tts_pad_token_id=252, tts_bos_token_id=253,
                tts_eos_token_id=254, system_token_id=245, user_token_id=246, assistant_token_id=247)


def chat_prompt(body: list[int]) -> list[int]:
    """<|im_start|>user\n body <|im_end|>\n<|im_start|>assistant\n, in the ids above (10 = newline)."""
    c = CHAT_IDS
    return [c["im_start_token_id"], c["user_token_id"], 10, *body, c["im_end_token_id"], 10,
            c["im_start_token_id"], c["assistant_token_id"], 10]


def build(directory: str, size: str, seed: int = 0):
    """Build, randomise and save the reference model of `size`; returns it (fp32, eval mode)."""
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    s = SIZES[size]
    width = s["text"]["hidden_size"]
    cfg = tiny_config_dict(
        text=s["text"], vision={**s["vision"], "out_hidden_size": width}, audio={**s["audio"], "output_dim": width},
        # the Talker speaks in the Code2Wav's codebooks (the tiny Talker's codec ids sit below the codebook size)
        talker={"thinker_hidden_size": width, "num_code_groups": s["code2wav"]["num_quantizers"],
                "text_config": {"vocab_size": s["code2wav"]["codebook_size"] + 1024},
                "code_predictor_config": {"vocab_size": s["code2wav"]["codebook_size"],
                                          "num_code_groups": s["code2wav"]["num_quantizers"]}},
        code2wav=s["code2wav"],
    )
    torch.manual_seed(seed)
    model = Qwen3OmniMoeForConditionalGeneration(Qwen3OmniMoeConfig(**cfg, **CHAT_IDS)).float().eval()
    with torch.no_grad():  # small random weights everywhere (norms near 1) so activations stay in range
        for name, p in model.named_parameters():
            centre = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(centre + 0.02 * torch.randn_like(p))
    model.save_pretrained(directory)
    return model
