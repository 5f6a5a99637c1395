"""--precision of the chunk classifier (issue 29): bf16 (mixed_bfloat16) and fp32
predictions of a trained model agree on the chunks; train.precision resolved and recorded."""

import numpy as np


def _chunks(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grey noise chunks; every other one carries a bright blob (a toy ice patch)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(90, 25, (n, size, size, 1)).clip(0, 255).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    for i in np.flatnonzero(y):
        cy, cx = rng.integers(6, size - 6, 2)
        r = rng.uniform(3, 6)
        x[i, ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r, 0] = rng.uniform(200, 250)
    return x, y


def test_bf16_and_fp32_predictions_of_a_trained_model_agree(tmp_path):
    """A classifier trained (fp32) for a few dozen steps and saved, then loaded by the
    predictor's own loader in fp32 and in bf16: the chunk decisions (p >= 0.5) agree on at
    least 99 % of 400 held-out chunks, and the model did learn (so the decisions mean
    something)."""
    import keras

    from ice_patch_cnn.model import build_xception, compile_model
    from ice_patch_cnn.predict import load_predictor

    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    x, y = _chunks(240, seed=0)
    model = compile_model(build_xception((32, 32, 1), width_scale=0.0625, bn_momentum=0.5),
                          learning_rate=3e-3)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=True)  # 45 steps
    path = tmp_path / "tiny.keras"
    model.save(path)
    xt, yt = _chunks(400, seed=1)
    p = {}
    for precision in ("fp32", "bf16"):
        predictor = load_predictor(str(path), batch_size=50, threads=2, precision=precision)
        policies = {layer.dtype_policy.name for layer in predictor.model.layers[1:-1]}
        assert policies == {"float32" if precision == "fp32" else "mixed_bfloat16"}
        assert predictor.model.layers[-1].dtype_policy.name == "float32"  # the output
        p[precision] = np.concatenate([predictor(xt[i:i + 50]) for i in range(0, 400, 50)])
    keras.mixed_precision.set_global_policy("float32")
    assert ((p["fp32"] >= 0.5) == yt).mean() >= 0.9      # it learned
    assert not np.array_equal(p["fp32"], p["bf16"])      # bf16 did run in bf16
    agree = ((p["fp32"] >= 0.5) == (p["bf16"] >= 0.5)).mean()
    assert agree >= 0.99, agree


def test_train_precision_resolved_from_the_profile_and_the_cpu(monkeypatch):
    """auto -> bf16 where the CPU has native bf16, else fp32; the paper profile keeps fp32;
    the CPU it resolved against is recorded under machine."""
    import keras

    import shared.precision as sp
    from ice_patch_cnn.config import load_config
    from ice_patch_cnn.train import resolve_run_precision

    quick, paper = load_config("quick"), load_config("paper")
    assert quick["train"]["precision"] == "auto" and paper["train"]["precision"] == "fp32"
    try:
        for native, want in ((True, "bf16"), (False, "fp32")):
            monkeypatch.setattr(sp, "cpu_has_native_bf16", lambda native=native: native)
            cfg = resolve_run_precision(quick)
            assert cfg["train"]["precision"] == want
            assert keras.mixed_precision.global_policy().name == (
                "mixed_bfloat16" if want == "bf16" else "float32")
            assert "native_bf16" in cfg["machine"]
            assert resolve_run_precision(paper)["train"]["precision"] == "fp32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
