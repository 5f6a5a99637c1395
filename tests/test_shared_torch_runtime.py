"""shared.torch_runtime (device, precision, distributed set-up) and shared.torch_checkpoint (the
safe loader, the strict state-dict check). torch only in this process."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from shared import precision as shared_precision  # noqa: E402
from shared import torch_runtime as rt  # noqa: E402
from shared.configs import REPO_ROOT as REPO  # noqa: E402
from shared.errors import UserError  # noqa: E402
from shared.torch_checkpoint import (  # noqa: E402
    CheckpointError,
    check_state_dict,
    load_strict,
    load_torch_file,
)


# --------------------------------------------------------------------------- device
def test_auto_is_the_cpu_without_cuda_and_a_missing_device_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert rt.pick_device("auto") == torch.device("cpu")
    assert rt.pick_device(None) == torch.device("cpu")
    assert rt.pick_device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(UserError, match=f"--device {name}: no CUDA device"):
            rt.pick_device(name)
    with pytest.raises(UserError, match="--device gpu0: not a device"):
        rt.pick_device("gpu0")
    with pytest.raises(UserError, match="not supported here"):
        rt.pick_device("meta")


def test_cuda_ranks_take_their_own_gpu(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(str(d)))
    assert rt.pick_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert rt.pick_device("cuda:0") == torch.device("cuda", 0)
    assert chosen == ["cuda:1", "cuda:0"]
    with pytest.raises(UserError, match="has 2 CUDA device"):
        rt.pick_device("cuda:2")


# --------------------------------------------------------------------------- precision
@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_native_bf16_flag(monkeypatch, native):
    monkeypatch.setattr(shared_precision, "cpu_has_native_bf16", lambda *a: native)
    want = "bf16" if native else "fp32"
    assert rt.resolve_precision("auto", "cpu") == want
    assert rt.resolve_precision(None, torch.device("cpu")) == want
    p = rt.precision_for("auto", torch.device("cpu"))
    assert (p.name, p.enabled) == (want, native)
    # explicit choices do not look at the flag
    assert rt.resolve_precision("fp32", "cpu") == "fp32"
    assert rt.resolve_precision("bf16", "cpu") == "bf16"
    # the legacy amp switch
    assert rt.resolve_precision(True, "cpu") == "bf16"
    assert rt.resolve_precision(False, "cpu") == "fp32"


def test_cuda_auto_is_the_paper_profiles_mixed_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert rt.resolve_precision("auto", "cuda") == "fp32"  # none of our originals uses AMP
    assert rt.resolve_precision("auto", "cuda:0", cuda_mixed=True) == "bf16"
    assert rt.resolve_precision("bf16", "cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert rt.resolve_precision("bf16", "cuda") == "fp16"  # with a GradScaler
    assert rt.precision_for("bf16", "cuda").name == "fp16"


def test_a_bad_precision_is_a_user_error():
    with pytest.raises(UserError, match="precision"):
        rt.resolve_precision("fp8", "cpu")
    with pytest.raises(UserError, match="fp8"):
        rt.Precision("fp8")


def test_autocast_and_scaler_rule():
    x = torch.randn(4, 8)
    lin = torch.nn.Linear(8, 3)
    with rt.Precision("bf16", "cpu").autocast():
        assert lin(x).dtype == torch.bfloat16
    with rt.Precision("fp32", "cpu").autocast():
        assert lin(x).dtype == torch.float32
    assert not rt.Precision("bf16", "cpu").grad_scaler().is_enabled()
    assert not rt.Precision("fp32", "cpu").grad_scaler().is_enabled()


def test_config_precision_and_the_legacy_amp_key():
    assert rt.fold_legacy_amp({})["precision"] == "fp32"  # a missing key: the paper's value
    assert rt.fold_legacy_amp({}, default="auto")["precision"] == "auto"
    assert rt.fold_legacy_amp({"amp": True, "precision": "fp32"}) == \
        {"amp": None, "precision": "bf16"}
    assert rt.fold_legacy_amp({"amp": False, "precision": "auto"})["precision"] == "fp32"
    assert rt.fold_legacy_amp({"amp": None, "precision": "AUTO"})["precision"] == "auto"
    with pytest.raises(UserError, match="precision='fast'"):
        rt.fold_legacy_amp({"precision": "fast"})
    with pytest.raises(UserError, match="amp='yes'"):
        rt.fold_legacy_amp({"amp": "yes"})


def test_machine_record_names_the_cpu_and_its_bf16_flags():
    rec = rt.machine_record()
    assert set(rec) == {"cpu", "cpu_id", "native_bf16", "bf16_flags", "gpu"}
    assert rec["native_bf16"] == bool(rec["bf16_flags"]) == shared_precision.cpu_has_native_bf16()


# --------------------------------------------------------------------------- distributed
def test_single_process_needs_no_process_group(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    dev, env = rt.setup("cpu")
    assert dev == torch.device("cpu") and (env.world, env.rank, env.enabled, env.main) == \
        (1, 0, False, True)
    assert not torch.distributed.is_initialized()
    rt.teardown()  # a no-op


def test_torchrun_environment_joins_a_gloo_group_on_the_cpu():
    """Two processes with torchrun's variables: one gloo group, left again by teardown."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import torch, torch.distributed as d\n"
            "from shared import torch_runtime as rt\n"
            "dev, env = rt.setup('cpu')\n"
            "t = torch.tensor([env.rank + 1.0]); d.all_reduce(t)\n"
            "print(dev, env.world, env.rank, env.main, d.get_backend(), int(t.item()))\n"
            "rt.teardown()\n"
            "print(d.is_initialized())\n")
    procs = []
    for rank in (0, 1):
        env = {"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "PATH": "/usr/bin:/bin",
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outs = [p.communicate(timeout=120) for p in procs]
    for rank, (p, (out, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, err
        assert out.split() == ["cpu", "2", str(rank), str(rank == 0), "gloo", "3", "False"]


def test_importing_the_runtime_does_not_import_torch():
    code = ("import sys; import shared.torch_runtime, shared.torch_checkpoint; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# --------------------------------------------------------------------------- checkpoints
class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_the_loader_refuses_a_code_running_pickle(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": _RunsCode(str(marker))}, path)
    with pytest.raises(CheckpointError, match=r"evil.pt: not a readable checkpoint: refused.*"
                                              "could run code"):
        load_torch_file(path)
    raw = tmp_path / "evil_raw.pth"
    with open(raw, "wb") as fh:
        pickle.dump({"w": _RunsCode(str(marker))}, fh, protocol=2)
    with pytest.raises(CheckpointError, match="evil_raw.pth"):
        load_torch_file(raw)
    assert not marker.exists()
    assert issubclass(CheckpointError, UserError)


def test_the_loader_names_missing_truncated_and_reads_both_formats(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt: checkpoint not found"):
        load_torch_file(tmp_path / "nope.pt")
    good = tmp_path / "w.pt"
    torch.save({"a": torch.ones(3)}, good)
    assert torch.equal(load_torch_file(good)["a"], torch.ones(3))
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="cut.pt: not a readable checkpoint"):
        load_torch_file(tmp_path / "cut.pt")
    from safetensors.torch import save_file

    save_file({"a": torch.ones(2)}, str(tmp_path / "w.safetensors"))
    assert torch.equal(load_torch_file(tmp_path / "w.safetensors")["a"], torch.ones(2))


def test_strict_check_lists_every_kind_of_problem_in_one_line():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    state = dict(model.state_dict())
    state.pop("1.bias")
    state["0.weight"] = torch.zeros(5, 3)
    state["extra.w"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        check_state_dict(model.state_dict(), state, "ck.pt", "dune model")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == ("ck.pt: weights do not fit the dune model: 1 missing (first: 1.bias), "
                   "1 unexpected (first: extra.w), 1 with another shape (first: 0.weight "
                   "(5, 3) != (2, 3))")
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    load_strict(fresh, model.state_dict(), "ok.pt")
    assert torch.equal(fresh[0].weight, model[0].weight)
