"""Parity of omni's Qwen2.5-Omni vision tower with the reference (Qwen2_5OmniVisionEncoder), fp32 <= 1e-4."""

import pytest
import torch

from omni.errors import ConfigError, InputError
from omni.models.qwen2_5_omni.vision import Qwen25VisionTokenizer, window_order

from reference_qwen2_5 import reference_and_tower


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    # window_size 16 px = 2 merged tokens per window side (patch 4, merge 2): small grids already need several
    # windows, with partial ones at the edges
    return reference_and_tower(tmp_path_factory.mktemp("q25vision"), Qwen25VisionTokenizer, "vision")


def _max_diff(pair, grid, seed=0):
    ref, model = pair
    grid = torch.tensor(grid, dtype=torch.long)
    n = int(grid.prod(-1).sum())
    pixels = torch.randn(n, model.patch_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = torch.cat(ref.get_image_features(pixels, grid, return_dict=True).pooler_output)
        got, deep = model(pixels, grid)
    assert deep == [] and got.shape == want.shape == (n // 4, model.cfg.out_hidden_size)
    return (got - want).abs().max().item()


def test_one_image_with_partial_windows(pair):
    assert _max_diff(pair, [[1, 6, 10]]) <= 1e-4  # 3 x 5 merged tokens: windows of 2x2, 2x1, 1x2, 1x1


def test_images_and_video_together(pair):
    # grid_t > 1 (window and full attention stay inside each frame); an exact multiple of the window; one token
    assert _max_diff(pair, [[2, 4, 6], [1, 8, 8], [1, 2, 2], [3, 6, 4]], seed=1) <= 1e-4


def test_window_order():
    index, sizes = window_order(1, 3, 3, 2)  # a 3 x 3 grid in 2 x 2 windows
    assert index.tolist() == [0, 1, 3, 4, 2, 5, 6, 7, 8] and sizes == [4, 2, 2, 1]
    index, sizes = window_order(2, 2, 2, 2)
    assert index.tolist() == list(range(8)) and sizes == [4, 4]


def test_bad_inputs_and_configs(pair):
    _, model = pair
    with pytest.raises(InputError, match="grid_thw describes"):
        model(torch.randn(10, model.patch_dim), torch.tensor([[1, 2, 2]]))
    cfg = model.cfg.replace(fullatt_block_indexes=[5])
    with pytest.raises(ConfigError, match="fullatt_block_indexes"):
        Qwen25VisionTokenizer(cfg)
