"""Detector base: checkpoints with weights_only, resume after an interruption, load-or-fit, utils."""
import json

import numpy as np
import pytest
import torch

from kdal_lib.base import load_or_fit
from kdal_lib.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from kdal_lib.goad import GOAD, AutoEncoderDetector
from kdal_lib.utils import resolve_device, seed_everything


class Evil:  # an arbitrary pickled object: refused by weights_only=True
    pass


def data(n=300, d=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def make(**kw):
    return GOAD(**{"n_transforms": 8, "transform_dim": 4, "hidden_dim": 4, "epochs": 4, **kw})


def test_save_load_roundtrip_gives_identical_scores(tmp_path):
    X = data()
    det = make().fit(X)
    path = det.save(tmp_path / "goad.pt")
    assert (tmp_path / "goad.pt.json").is_file()
    meta = json.loads((tmp_path / "goad.pt.json").read_text())
    assert meta["class"] == "GOAD" and meta["params"]["n_transforms"] == 8 and "torch" in meta["versions"]
    loaded = GOAD.load(path, device="cpu")
    np.testing.assert_array_equal(loaded.decision_function(X), det.decision_function(X))
    assert loaded.threshold_ == det.threshold_
    with pytest.raises(ValueError, match="holds a GOAD"):
        AutoEncoderDetector.load(path)


def test_checkpoints_load_with_weights_only_and_reject_pickles(tmp_path):
    p = save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(2), "n": 3}, {"epoch": 1})
    assert load_checkpoint(p)["n"] == 3
    assert read_metadata(p)["epoch"] == 1

    torch.save({"obj": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="could not be loaded safely"):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    X = data()
    full = make(epochs=4).fit(X)

    class Interrupt(Exception):
        pass

    ckdir = tmp_path / "ck"
    crashing = make(epochs=4, checkpoint_dir=str(ckdir))
    original = crashing._on_epoch_start

    def crash_at_epoch_2(epoch):
        if epoch == 2:
            raise Interrupt
        original(epoch)

    crashing._on_epoch_start = crash_at_epoch_2
    with pytest.raises(Interrupt):
        crashing.fit(X)
    assert read_metadata(ckdir / "last.pt")["epoch"] == 1  # epochs 0 and 1 completed
    resumed = make(epochs=4, checkpoint_dir=str(ckdir))
    ran = []
    original_resumed = resumed._on_epoch_start
    resumed._on_epoch_start = lambda epoch: (ran.append(epoch), original_resumed(epoch))
    resumed.fit(X)
    assert ran == [2, 3]  # only the missing epochs were trained
    assert len(resumed.history_["loss"]) == 4
    np.testing.assert_allclose(resumed.history_["loss"], full.history_["loss"], rtol=1e-5)
    np.testing.assert_allclose(resumed.decision_function(X), full.decision_function(X), rtol=1e-4)


def test_checkpoint_with_other_parameters_is_not_resumed(tmp_path):
    X = data()
    make(epochs=2, checkpoint_dir=str(tmp_path)).fit(X)
    other = make(epochs=2, lmbda=0.5, checkpoint_dir=str(tmp_path)).fit(X)
    assert len(other.history_["loss"]) == 2 and read_metadata(tmp_path / "last.pt")["params"]["lmbda"] == 0.5


def test_load_or_fit_trains_once_then_loads(tmp_path):
    X = data()
    path = tmp_path / "m.pt"
    first = load_or_fit(make(), X, path)
    mtime = path.stat().st_mtime_ns
    second = load_or_fit(make(), X, path)
    assert path.stat().st_mtime_ns == mtime  # loaded, not retrained
    np.testing.assert_array_equal(first.decision_function(X), second.decision_function(X))
    third = load_or_fit(make(epochs=1), X, path)  # other parameters: retrain and overwrite
    assert path.stat().st_mtime_ns != mtime and len(third.history_["loss"]) == 1
    fourth = load_or_fit(make(epochs=1), X[:200], path)  # other data: retrain
    assert len(fourth.decision_scores_) == 200


def test_validation_fraction_records_validation_loss():
    det = make(validation_fraction=0.2).fit(data())
    assert len(det.history_["val_loss"]) == 4 and np.isfinite(det.history_["val_loss"]).all()


def test_resolve_device_and_seed():
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    seed_everything(5)
    a = torch.rand(3)
    seed_everything(5)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)
