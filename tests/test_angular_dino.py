"""AngularDINO (kdal_lib.angular_dino) and its PU baselines: margins, schedules, EMA, centring, roles,
sampler, PU split, bad inputs, a tiny fit, the CLI, and the papermill smoke run of notebook 06."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdal_lib.angular_dino import (AngularDINO, CentredCrossEntropy, MultiCrop, SmallCNN, additive_margin,
                                   assign_prototype_roles, class_balance_weights, ema_update, evaluate_pu,
                                   lambda_schedule, load_digit_images, load_pu_task, main, make_balanced_sampler,
                                   make_pu_task, prototype_scores, resolve_parameters, subtractive_margin,
                                   warmup_cosine_schedule)
from kdal_lib.pu_baselines import DeepSAD, deepsad_loss, pusvdd_loss

M = 0.5


# -- margins ---------------------------------------------------------------------------------------
def test_additive_margin_lowers_and_subtractive_raises_the_cosine():
    cos = torch.linspace(-0.999, 0.999, 401)
    add, sub = additive_margin(cos, M), subtractive_margin(cos, M)
    assert torch.all(add < cos - 1e-4)
    assert torch.all(sub > cos + 1e-4)
    # on the regular branch they are exactly cos(θ ± m)
    theta = torch.tensor([0.9, 1.5, 2.0])
    assert torch.allclose(additive_margin(torch.cos(theta), M), torch.cos(theta + M), atol=1e-5)
    assert torch.allclose(subtractive_margin(torch.cos(theta), M), torch.cos(theta - M), atol=1e-5)
    # both are monotone in cos (the ordering of samples is kept)
    assert torch.all(add[1:] > add[:-1]) and torch.all(sub[1:] > sub[:-1])


@pytest.mark.parametrize("m", [0.1, 0.3, 0.5, 1.0])
def test_margins_are_continuous_at_their_limits(m):
    eps = 1e-6
    th_add = math.cos(math.pi - m)  # θ + m reaches π
    th_sub = math.cos(m)  # θ − m reaches 0
    a = additive_margin(torch.tensor([th_add - eps, th_add + eps], dtype=torch.float64), m)
    b = subtractive_margin(torch.tensor([th_sub - eps, th_sub + eps], dtype=torch.float64), m)
    assert abs(float(a[1] - a[0])) < 1e-3 and abs(float(a[0]) + 1) < 1e-3  # value −1 = cos(π) there
    assert abs(float(b[1] - b[0])) < 1e-3 and abs(float(b[1]) - 1) < 1e-3  # value 1 = cos(0) there
    # and m → 0 gives back the cosine
    cos = torch.linspace(-0.99, 0.99, 50, dtype=torch.float64)
    assert torch.allclose(additive_margin(cos, 1e-7), cos, atol=1e-5)
    assert torch.allclose(subtractive_margin(cos, 1e-7), cos, atol=1e-5)


def test_the_original_arcface_fallback_jumps_at_the_limit():
    th = math.cos(math.pi - M)
    a = additive_margin(torch.tensor([th - 1e-6, th + 1e-6], dtype=torch.float64), M, fallback="arcface")
    assert float(a[1] - a[0]) > 0.1  # ≈ m sin m − (1 − cos m)... a visible jump: the reason for our default
    with pytest.raises(ValueError, match="fallback"):
        additive_margin(torch.zeros(2), M, fallback="bogus")


# -- schedules ------------------------------------------------------------------------------------
def test_lambda_ramp_end_points_and_shape():
    assert lambda_schedule(0, 100) == 0.0
    assert lambda_schedule(100, 100) == 1.0 and lambda_schedule(500, 100) == 1.0
    assert lambda_schedule(50, 100) == pytest.approx(0.5)
    assert lambda_schedule(100, 100, end=0.3) == pytest.approx(0.3)
    vals = [lambda_schedule(t, 100) for t in range(101)]
    assert all(b >= a for a, b in zip(vals, vals[1:]))
    assert lambda_schedule(0, 0) == 1.0  # no ramp


def test_lr_warmup_then_cosine():
    lr = warmup_cosine_schedule(1.0, 0.0, 100, 15)
    assert len(lr) == 100 and lr[0] == 0.0 and lr[15] == pytest.approx(1.0) and lr[-1] == pytest.approx(0.0)
    assert np.argmax(lr) == 15


# -- EMA teacher and centring --------------------------------------------------------------------
def test_ema_teacher_moves_toward_the_student():
    torch.manual_seed(0)
    student, teacher = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    dist = lambda: sum(float((a - b).detach().norm()) for a, b in zip(teacher.parameters(), student.parameters()))
    d0 = dist()
    ema_update(teacher, student, 0.9)
    d1 = dist()
    assert d1 == pytest.approx(0.9 * d0, rel=1e-5)
    before = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, 1.0)  # momentum 1: frozen
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    ema_update(teacher, student, 0.0)  # momentum 0: copy
    assert dist() == pytest.approx(0.0, abs=1e-6)


def test_centring_updates_the_centre_and_flattens_a_dominant_dimension():
    ce = CentredCrossEntropy(3, centre_momentum=0.9)
    t = [torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])] * 2
    ce.update_center(t)
    assert torch.allclose(ce.center, torch.tensor([[0.5, 0.0, 0.0]]))
    for _ in range(200):
        ce.update_center(t)
    assert torch.allclose(ce.center, torch.tensor([[5.0, 0.0, 0.0]]), atol=1e-4)
    # once centred, a dimension that is large for every sample no longer dominates the target
    s = [torch.zeros(2, 3)] * 2
    q_centred = torch.softmax((t[0] - ce.center) / 0.04, -1)
    assert torch.allclose(q_centred, torch.full((2, 3), 1 / 3), atol=1e-3)
    loss = ce(s, t, tau_s=0.1, tau_t=0.04)
    assert float(loss) == pytest.approx(math.log(3), rel=1e-3)  # uniform target, uniform student
    w = torch.tensor([2.0, 0.0])
    assert float(ce(s, t, 0.1, 0.04, weights=w)) == pytest.approx(math.log(3), rel=1e-3)


# -- roles, weights, sampler -----------------------------------------------------------------------
def _constructed_cosines():
    rng = np.random.default_rng(0)
    k = 8
    cos_u = rng.uniform(-0.2, 0.1, (50, k))
    cos_u[:25, 0] = 0.9
    cos_u[25:, 1] = 0.8
    cos_u[:, 2] = 0.3  # weakly liked by U ...
    cos_p = rng.uniform(-0.2, 0.1, (5, k))
    cos_p[:, 6] = 0.95
    cos_p[:, 7] = 0.85
    cos_p[:, 2] = 0.6  # ... but strongly by P: U(2) − P(2) < 0, so not normal
    return cos_u, cos_p


def test_prototype_roles_on_a_constructed_case():
    cos_u, cos_p = _constructed_cosines()
    r = assign_prototype_roles(cos_u, cos_p, pt_num=2, top_k=3)
    assert set(r["normal"]) == {0, 1}
    assert set(r["anomaly"]) == {6, 7}
    assert r["p_mass"][6] == pytest.approx(0.95, abs=1e-9)
    # exclusive roles: a prototype never holds both
    r2 = assign_prototype_roles(cos_u, cos_p, pt_num=3, top_k=3)
    assert not set(r2["normal"]) & set(r2["anomaly"])
    assert 2 in r2["anomaly"] and 2 not in r2["normal"]
    with pytest.raises(ValueError, match="pt_num"):
        assign_prototype_roles(cos_u, cos_p, pt_num=5)
    with pytest.raises(ValueError, match="positives"):
        assign_prototype_roles(cos_u, cos_p[:0], pt_num=2)


def test_class_weights_and_sampler_balance():
    s = np.r_[np.zeros(950), np.ones(50)].astype(int)
    w = class_balance_weights(s)
    assert w[0] == pytest.approx(1000 / 1900) and w[-1] == pytest.approx(10.0)
    assert w[s == 0].sum() == pytest.approx(w[s == 1].sum())
    draws = np.array(list(make_balanced_sampler(s, random_state=0, num_samples=20000)))
    assert 0.47 < s[draws].mean() < 0.53
    again = np.array(list(make_balanced_sampler(s, random_state=0, num_samples=200)))
    assert np.array_equal(again, np.array(list(make_balanced_sampler(s, random_state=0, num_samples=200))))
    with pytest.raises(ValueError, match="no labelled positives"):
        class_balance_weights(np.zeros(10))


# -- data -------------------------------------------------------------------------------------------
def test_embedded_pu_task_follows_the_protocol():
    task = load_pu_task("embedded", random_state=0)
    d = task.describe()
    tr = task.train
    assert d["image_size"] == 16 and tr.images.shape[1:] == (1, 16, 16)
    assert 0 not in set(tr.digit.tolist())  # the unseen class never reaches training
    assert set(tr.digit[tr.s == 1].tolist()) <= set(task.seen_classes)
    assert set(tr.digit[tr.y == 0].tolist()) == {5}
    assert 0.03 < d["U_contamination"] < 0.08
    assert d["n_test_seen"] == d["n_test_normal"] // 2 == d["n_test_unseen"]
    assert set(task.test.digit[task.test.group == "unseen"].tolist()) == {0}
    assert d["n_val_P"] >= 1
    again = load_pu_task("embedded", random_state=0)
    assert np.array_equal(again.train.images, tr.images)


def test_bad_inputs_raise_clear_errors():
    images, labels = load_digit_images("embedded")
    with pytest.raises(ValueError, match=r"class\(es\) \[11\] do not exist"):
        make_pu_task(images, labels, normal_classes=[11])
    with pytest.raises(ValueError, match="both normal and unseen"):
        make_pu_task(images, labels, normal_classes=[5], unseen_classes=[5])
    with pytest.raises(ValueError, match="unknown DATA"):
        load_digit_images("cifar")
    X = images[:20]
    with pytest.raises(ValueError, match="no labelled positives"):
        AngularDINO(epochs=1).fit(X, np.zeros(20))
    with pytest.raises(ValueError, match="PU labels"):
        AngularDINO(epochs=1).fit(X)
    with pytest.raises(ValueError, match="pt_num"):
        AngularDINO(n_prototypes=4, pt_num=3).fit(X, np.r_[np.zeros(18), np.ones(2)])
    with pytest.raises(ValueError, match="unknown parameter"):
        resolve_parameters({"EPOCS": 3})
    with pytest.raises(FileNotFoundError):
        load_digit_images("mnist", data_dir="/nonexistent/folder")


def test_mnist_loader_reads_the_idx_files(shared_data):
    images, labels = load_digit_images("mnist", str(shared_data))
    assert images.shape == (10000, 1, 28, 28) and images.max() <= 1.0
    assert np.bincount(labels).tolist()[5] == 892


# -- pieces of the network ----------------------------------------------------------------------------
def test_multicrop_shapes_and_l2_embedding():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 16, 16)
    crops = MultiCrop(16, 12, n_global=2, n_local=3)(x, gen)
    assert [tuple(c.shape) for c in crops] == [(5, 1, 16, 16)] * 2 + [(5, 1, 12, 12)] * 3
    z = SmallCNN(1, 8)(torch.cat([crops[0], crops[1]]))
    assert torch.allclose(z.norm(dim=1), torch.ones(10), atol=1e-5)
    with pytest.raises(ValueError, match="n_global"):
        MultiCrop(16, 12, n_global=1)


def test_margins_hit_only_the_role_pairs():
    det = AngularDINO(margin=0.5)
    cos = torch.full((3, 4), 0.5)
    s = torch.tensor([0, 0, 1])
    out = det._margin_cos(cos, s, torch.tensor([0]), torch.tensor([3]), additive_margin)
    changed = (out != cos)
    expect = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(changed, expect)


def test_prototype_score_direction():
    protos = np.eye(3)
    z = np.array([[1.0, 0, 0], [0, 0, 1.0]])
    sc = prototype_scores(z, protos, normal=[0], anomaly=[2])
    assert sc[1] > sc[0] and sc[0] == -1.0


# -- a tiny fit ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_task():
    return load_pu_task("embedded", image_size=12, random_state=1)


def test_tiny_fit_is_seeded_and_keeps_snapshots(tiny_task):
    tr, va = tiny_task.train, tiny_task.val
    kw = dict(epochs=3, batch_size=32, n_prototypes=8, pt_num=2, emb_dim=16, width=8, out_dim=32, n_local=2,
              margin_start_fraction=0.3, random_state=0, device="cpu")
    det = AngularDINO(**kw).fit(tr.images, tr.s, va.images, va.s)
    sc = det.decision_function(tiny_task.test.images)
    assert np.isfinite(sc).all() and sc.shape == (len(tiny_task.test),)
    h = det.history_
    assert len(h["loss"]) == 3 and h["margin_on"] == [False, True, True]
    assert h["lambda"][0] < h["lambda"][-1] <= 1.0
    assert h["momentum"][0] < h["momentum"][-1]
    assert len(det.snapshots_) == 3 and det.snapshots_[-1]["embeddings"].shape == (len(tr), 16)
    assert not set(det.roles_["normal"]) & set(det.roles_["anomaly"])
    m = evaluate_pu(tiny_task.test, sc)
    assert {"AUROC", "AUROC_seen", "AUROC_unseen"} <= set(m)
    sc2 = AngularDINO(**kw).fit(tr.images, tr.s, va.images, va.s).decision_function(tiny_task.test.images)
    assert np.allclose(sc, sc2)
    sel = AngularDINO(**{**kw, "select": "val_pu_auroc"}).fit(tr.images, tr.s, va.images, va.s)
    assert 1 <= sel.best_epoch_ <= 3


def test_save_and_load_give_the_same_scores(tiny_task, tmp_path):
    tr = tiny_task.train
    det = AngularDINO(epochs=2, batch_size=32, n_prototypes=8, pt_num=2, emb_dim=16, width=8, out_dim=32, n_local=2,
                      device="cpu").fit(tr.images, tr.s)
    det.save(tmp_path / "ad.pt")
    again = AngularDINO.load(tmp_path / "ad.pt", device="cpu")
    assert np.allclose(det.decision_function(tiny_task.test.images), again.decision_function(tiny_task.test.images))
    assert again.threshold_ == det.threshold_ and again.get_params()["n_prototypes"] == 8
    assert np.array_equal(again.predict(tr.images), det.predict(tr.images))


def test_deep_pu_baselines_losses_and_fit(tiny_task):
    d = torch.tensor([1.0, 2.0, 4.0])
    s = torch.tensor([0, 0, 1])
    assert float(deepsad_loss(d, s)) == pytest.approx((1 + 2 + 1 / 4) / 3, rel=1e-5)
    # PU-SVDD: R+ = α/4, R− = 1.5 − α·4
    assert float(pusvdd_loss(d, s, alpha=0.1)) == pytest.approx(0.1 / 4 + abs(1.5 - 0.4), rel=1e-5)
    tr = tiny_task.train
    for loss in ("deepsad", "pusvdd"):
        det = DeepSAD(loss=loss, epochs=2, pretrain_epochs=1, device="cpu").fit(tr.images, tr.s)
        sc = det.decision_function(tiny_task.test.images)
        assert np.isfinite(sc).all() and (sc >= 0).all()
    with pytest.raises(ValueError, match="labelled positives"):
        DeepSAD(loss="pusvdd").fit(tr.images, np.zeros(len(tr)))


def test_cli_runs_a_config(tmp_path, capsys):
    from kdal_lib.metrics import load_results

    cfg = tmp_path / "config.yml"
    cfg.write_text("EPOCHS: 2\nIMAGE_SIZE: 12\nN_PROTOTYPES: 8\npt_num: 2\nBASELINES: [OCSVM]\n"
                   f"OUT_DIR: {tmp_path / 'out'}\n")
    assert main(["--config", str(cfg)]) == 0
    m = load_results(tmp_path / "out")
    assert {r["method"] for r in m["records"]} == {"AngularDINO", "OCSVM"}
    assert m["params"]["PT_NUM"] == 2 and m["params"]["EPOCHS"] == 2
    assert "AngularDINO_AUROC_unseen" in m["summary"]
    bad = tmp_path / "bad.yml"
    bad.write_text("NORMAL_CLASSES: [12]\n")
    with pytest.raises(SystemExit, match="do not exist"):
        main(["--config", str(bad)])


# -- the notebook ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_angular_dino_notebook_smoke(run_notebook):
    m = run_notebook("06_angular_dino")
    s = m["summary"]
    assert m["params"]["INTERACTIVE"] is False and m["params"]["EPOCHS"] == 4
    assert s["n_train_P"] >= 2 and s["n_test_unseen"] > 0
    methods = {r["method"] for r in m["records"]}
    assert methods == {"AngularDINO", "OCSVM", "IsolationForest", "DeepSAD", "PUSVDD"}
    for r in m["records"]:
        for k in ("AUROC", "AUROC_seen", "AUROC_unseen"):
            assert 0.0 <= r[k] <= 1.0
    # simple pixel baselines separate 5s from other digits well on this split (measured ≥ 0.85)
    assert s["IsolationForest_AUROC"] > 0.8
    assert s["n_saved_epochs"] == 4 and s["n_normal_prototypes"] == s["n_anomaly_prototypes"] == m["params"]["PT_NUM"]


def test_resnet18_option_gives_unit_embeddings():
    from kdal_lib.angular_dino import resnet18_backbone

    net = resnet18_backbone(1, 16).eval()
    with torch.no_grad():
        z = net(torch.rand(3, 1, 12, 12))
    assert z.shape == (3, 16) and torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    assert isinstance(AngularDINO(backbone="resnet18")._build(1).backbone.net.conv1, torch.nn.Conv2d)
    with pytest.raises(ValueError, match="backbone"):
        AngularDINO(backbone="vit_small").fit(np.zeros((8, 1, 12, 12), np.float32), np.r_[np.zeros(6), np.ones(2)])


def test_example_config_uses_known_parameters():
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "angular_dino.yml").read_text())
    p = resolve_parameters(cfg)
    assert p["DATA"] == "mnist" and p["NORMAL_CLASSES"] == [5] and p["UNSEEN_CLASSES"] == [0]
    assert resolve_parameters({"prototype_num": 50, "pt_num": 7})["N_PROTOTYPES"] == 50  # original key names


def test_cli_defaults_are_the_notebook_parameters():
    import ast
    from pathlib import Path

    from kdal_lib.angular_dino import DEFAULT_PARAMETERS
    from kdal_lib.runner import notebook_parameters

    nb = Path(__file__).resolve().parents[1] / "notebooks" / "06_angular_dino.ipynb"
    declared = {k: ast.literal_eval(v["default"]) for k, v in notebook_parameters(nb).items()}
    assert set(DEFAULT_PARAMETERS) <= set(declared)
    assert {k: declared[k] for k in DEFAULT_PARAMETERS} == DEFAULT_PARAMETERS
    assert set(declared) - set(DEFAULT_PARAMETERS) == {"INTERACTIVE", "MAP_METHOD"}  # display-only
