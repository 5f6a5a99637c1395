
import numpy as np
import pytest
import torch

from dune_vlm.models.fusion import build_fusion_model, build_model
from dune_vlm.models.segformer import SegFormerBaseline, count_parameters
from dune_vlm.utils.config import load_run_config
from shared.configs import resolve_path

# the authors' text embeddings where the paper profile expects them (text.embed_path), if there
PUBLISHED = resolve_path(load_run_config("paper")["text"]["embed_path"])


@pytest.fixture(scope="module")
def fusion():
    torch.manual_seed(0)
    return build_fusion_model(num_classes=10, text_dim=512).eval()


def test_exact_parameter_counts(fusion):
    assert count_parameters(fusion) == 22_021_834
    assert count_parameters(SegFormerBaseline(in_chans=64, num_classes=10)) == 3_811_082


def test_parameter_count_follows_text_dim_and_classes():
    m = build_fusion_model(num_classes=10, text_dim=384)
    # only k_proj and v_proj see text_dim: 2 * (512 - 384) * 512 fewer weights
    assert count_parameters(m) == 22_021_834 - 2 * 128 * 512
    b = build_model("baseline", num_classes=4)
    assert count_parameters(b) == 3_811_082 - 6 * 257


@pytest.mark.parametrize("hw", [(32, 32), (64, 96), (160, 64)])
def test_output_size_equals_input_size(fusion, hw):
    x = torch.randn(1, 64, *hw)
    with torch.no_grad():
        assert fusion(x, torch.randn(10, 512)).shape == (1, 10, *hw)
        assert SegFormerBaseline().eval()(x).shape == (1, 10, *hw)


def test_batched_text_equals_shared_text(fusion):
    x = torch.randn(2, 64, 32, 32)
    t = torch.randn(10, 512)
    with torch.no_grad():
        a = fusion(x, t)
        b = fusion(x, t.expand(2, -1, -1))
    assert torch.allclose(a, b, atol=1e-5)


def test_text_changes_the_prediction(fusion):
    x = torch.randn(1, 64, 32, 32)
    with torch.no_grad():
        a = fusion(x, torch.randn(10, 512))
        b = fusion(x, torch.randn(10, 512))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("shape,msg", [
    ((9, 512), "9 rows"), ((10, 384), "384-dimensional"), ((512,), "(C, D) or (B, C, D)"),
    ((3, 10, 512), "batch 3"),
])
def test_text_shape_errors(fusion, shape, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        fusion(torch.randn(2, 64, 32, 32), torch.randn(*shape))


def test_missing_text_and_bad_input(fusion):
    with pytest.raises(ValueError, match="needs text embeddings"):
        fusion(torch.randn(1, 64, 32, 32))
    with pytest.raises(ValueError, match="multiples of 32"):
        fusion(torch.randn(1, 64, 48, 32), torch.randn(10, 512))
    with pytest.raises(ValueError, match="64 input bands"):
        fusion(torch.randn(1, 3, 32, 32), torch.randn(10, 512))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("unet")


def test_published_text_embeddings_load_and_run(fusion, tmp_path):
    """The authors' (10, 512) file when it lies beside the repository, else a stand-in in its
    format (float32, unit rows): the test needs nothing outside the clone."""
    from dune_vlm.checkpoint import load_text_embeds

    path = PUBLISHED
    if not path.is_file():
        rng = np.random.default_rng(0)
        stand_in = rng.standard_normal((10, 512)).astype(np.float32)
        path = tmp_path / "text_embeds_detailed.npy"
        np.save(path, stand_in / np.linalg.norm(stand_in, axis=1, keepdims=True))
    emb = load_text_embeds(path, num_classes=10)
    assert emb.shape == (10, 512) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    with torch.no_grad():
        out = fusion(torch.randn(1, 64, 64, 64), torch.from_numpy(emb))
    assert out.shape == (1, 10, 64, 64) and torch.isfinite(out).all()


def test_model_from_spec_with_quick_arch():
    """The quick profile's MiT-B0-sized fusion model is rebuilt from a checkpoint spec."""
    from dune_vlm.checkpoint import UserError, model_from_spec

    arch = load_run_config("quick")["model"]["fusion_arch"]
    m = model_from_spec({"name": "fusion", "num_classes": 10, "text_dim": 384, "arch": arch})
    assert count_parameters(m) == 4_141_578
    with torch.no_grad():
        assert m.eval()(torch.randn(1, 64, 64, 64), torch.randn(10, 384)).shape == (1, 10, 64, 64)
    with pytest.raises(UserError, match="bad model specification.*width"):
        model_from_spec({"name": "fusion", "num_classes": 10, "arch": {"width": 3}})


def test_layernorm_eps_and_dropout_as_reference():
    import torch

    from dune_vlm.models.fusion import build_model

    fus = build_model("fusion", text_dim=16, embed_dims=(32, 64, 160, 256),
                      num_heads=(1, 2, 5, 8), depths=(1, 1, 1, 1))
    enc = fus.encoder
    assert enc.patch_embeds[0].norm.eps == 1e-5
    assert enc.stages[0][0].attn.norm.eps == 1e-5
    assert enc.stages[0][0].norm1.eps == 1e-6 and enc.stages[0][0].norm2.eps == 1e-6
    assert enc.norms[3].eps == 1e-6
    assert fus.align.norm.eps == 1e-5
    assert type(fus.head.dropout) is torch.nn.Dropout
    base = build_model("baseline")
    eps = {m.eps for m in base.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps == {1e-5}
