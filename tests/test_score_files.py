"""DRAEM → ASAL score files: order, five contiguous strata, every path once, atomic rewrite."""
import numpy as np
import pytest

from kdal_lib.score_files import rank_and_stratify, read_score_files, write_score_files


def test_score_files_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    paths = [f"pool/img_{i:03d}.png" for i in range(23)]
    scores = rng.random(23)
    folder = write_score_files(paths, scores, tmp_path, "brick")
    assert folder == tmp_path / "loss_batch" / "anomaly_scores_draem" / "brick"
    got = read_score_files(tmp_path, "brick")
    order = np.argsort(-scores)
    assert got.paths == [paths[i] for i in order]  # highest first
    np.testing.assert_allclose(got.scores, scores[order])
    assert [len(s) for s in got.strata] == [5, 5, 5, 4, 4]  # contiguous, sizes differ by at most one
    assert sorted(p for s in got.strata for p in s) == sorted(paths)  # every path exactly once
    assert got.strata[0] == got.paths[:5] and got.strata[-1] == got.paths[-4:]
    assert (folder / "batch0.txt").read_text().splitlines() == got.paths[:5]


def test_rewrite_replaces_the_whole_set(tmp_path):
    write_score_files([f"a{i}" for i in range(10)], np.arange(10), tmp_path, "c")
    write_score_files([f"b{i}" for i in range(6)], np.arange(6), tmp_path, "c", n_strata=3)
    got = read_score_files(tmp_path, "c")
    assert got.paths == [f"b{i}" for i in range(5, -1, -1)] and len(got.strata) == 3
    leftovers = [p.name for p in (tmp_path / "loss_batch" / "anomaly_scores_draem").iterdir()]
    assert leftovers == ["c"]


def test_ties_keep_input_order_and_bad_input_is_named(tmp_path):
    ranked, _, _ = rank_and_stratify(["x", "y", "z", "w", "v"], [1, 1, 1, 1, 1])
    assert ranked == ["x", "y", "z", "w", "v"]
    with pytest.raises(ValueError, match="3 paths but 2 scores"):
        rank_and_stratify(["a", "b", "c"], [1, 2])
    with pytest.raises(ValueError, match="unique"):
        rank_and_stratify(["a", "a", "b", "c", "d"], range(5))
    with pytest.raises(ValueError, match="NaN"):
        rank_and_stratify(list("abcde"), [1, 2, np.nan, 4, 5])
    with pytest.raises(ValueError, match="cannot cut 3 paths into 5"):
        rank_and_stratify(list("abc"), [1, 2, 3])
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        read_score_files(tmp_path, "missing")
