"""`omni convert --quantize` writes a pack-quantized checkpoint that loads quantized; `omni info` reports it."""

import omni
from omni.cli import main
from omni.demo import build_tiny_checkpoint
from omni.quant import QuantExperts, is_quantized


def test_convert_quantize_and_info(tmp_path, capsys):
    src = build_tiny_checkpoint(str(tmp_path / "tiny"), seed=0)
    out = tmp_path / "int4"
    assert main(["convert", "--model", src, "--out", str(out), "--quantize", "int4", "--group-size", "32",
                 "--quiet"]) == 0
    model = omni.load(out, quiet=True)
    assert is_quantized(model) and isinstance(model.thinker.decoder.layers[0].ffn.experts, QuantExperts)
    assert model.processor is not None  # the tokenizer files travel with it
    capsys.readouterr()
    assert main(["info", "--model", str(out)]) == 0
    text = capsys.readouterr().out
    assert "this checkpoint is quantized: int4 group 32" in text and "as int4 group 128" in text
