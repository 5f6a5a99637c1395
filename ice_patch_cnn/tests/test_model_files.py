"""Foreign and truncated model files are one named UserError, never a traceback."""

import zipfile

import pytest

from ice_patch_cnn.model import load_model
from shared.errors import UserError


def test_truncated_and_foreign_keras_files_are_named(tmp_path):
    trunc = tmp_path / "trunc.keras"
    trunc.write_bytes(b"PK\x03\x04" + b"\0" * 200)
    with pytest.raises(UserError, match="trunc.keras: not a .keras model"):
        load_model(trunc)
    foreign = tmp_path / "torch.keras"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("archive/data.pkl", b"x")
    with pytest.raises(UserError, match="torch.keras: .*no config.json"):
        load_model(foreign)
