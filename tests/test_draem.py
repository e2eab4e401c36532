"""DRAEM pieces: Perlin masks, texture augmentation, networks, losses, image score, detector API."""
import numpy as np
import pytest
import torch

from kdal_lib.base import load_or_fit
from kdal_lib.draem import (DRAEM, AnomalySynthesizer, DiscriminativeSubNetwork, ReconstructiveSubNetwork,
                            augment_texture, filtered_max, focal_loss, mean_filter_size, perlin_mask, perlin_noise,
                            procedural_textures, ssim)


def test_perlin_noise_is_smooth_bounded_and_seeded():
    a = perlin_noise((64, 64), (4, 4), np.random.default_rng(0))
    b = perlin_noise((64, 64), (4, 4), np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (64, 64) and np.abs(a).max() <= 1.5
    assert np.abs(np.diff(a, axis=0)).max() < 0.2  # smooth: neighbours differ little
    assert np.allclose(a[::16, ::16], 0, atol=1e-9)  # gradient noise vanishes on lattice points
    with pytest.raises(ValueError, match="divisible"):
        perlin_noise((64, 64), (3, 3), np.random.default_rng(0))


def test_perlin_masks_are_binary_sized_and_coverage_varies():
    rng = np.random.default_rng(1)
    masks = [perlin_mask(64, rng) for _ in range(40)]
    assert all(m.shape == (64, 64) and set(np.unique(m)) <= {0.0, 1.0} for m in masks)
    coverage = np.array([m.mean() for m in masks])
    assert coverage.max() > 0.05 and coverage.min() < 0.02 and coverage.std() > 0.01


def test_augment_texture_keeps_shape_and_range_and_changes_pixels():
    rng = np.random.default_rng(2)
    tex = procedural_textures(3, 32, rng)
    assert tex.shape == (3, 3, 32, 32)
    out = augment_texture(tex[0], rng, n_ops=3)
    assert out.shape == (3, 32, 32) and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, tex[0])


def test_synthesizer_blends_only_inside_the_mask_and_leaves_half_clean():
    rng = np.random.default_rng(3)
    syn = AnomalySynthesizer(procedural_textures(4, 32, rng), 32, p_clean=0.5)
    images = torch.rand(64, 1, 32, 32)
    aug, masks, flags = syn(images, rng)
    assert aug.shape == images.shape and masks.shape == (64, 1, 32, 32)
    outside = masks == 0
    assert torch.equal(aug[outside], images[outside])  # I ⊙ (1 − M) untouched
    assert 0.25 < flags.mean() < 0.75  # p_clean = 0.5
    assert torch.equal(flags > 0, masks.flatten(1).sum(1) > 0)
    with pytest.raises(ValueError, match="built for 32 px"):
        syn(torch.rand(2, 1, 16, 16), rng)


def test_network_shapes():
    rec = ReconstructiveSubNetwork(channels=3, width=4)
    disc = DiscriminativeSubNetwork(in_channels=6, width=4, depth=3)
    x = torch.rand(2, 3, 32, 32)
    assert rec(x).shape == (2, 3, 32, 32)
    assert disc(torch.cat([x, x], 1)).shape == (2, 2, 32, 32)


def test_ssim_and_focal_loss_values():
    x = torch.rand(2, 1, 24, 24)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(x, torch.rand(2, 1, 24, 24)).item() < 0.5
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1
    right = torch.cat([1 - mask, mask], 1) * 20 - 10  # confident and correct
    assert focal_loss(right, mask).item() < 1e-6
    assert focal_loss(-right, mask).item() > 1.0


def test_image_score_is_the_mean_filtered_max():
    maps = torch.zeros(2, 16, 16)
    maps[0, 3, 3] = 1.0  # one hot pixel: the 3×3 mean around it is 1/9
    maps[1, 5:8, 5:8] = 0.5  # a 3×3 blob of 0.5: its centre keeps 0.5
    np.testing.assert_allclose(filtered_max(maps, 3).numpy(), [1 / 9, 0.5], rtol=1e-6)
    np.testing.assert_allclose(filtered_max(maps, 1).numpy(), [1.0, 0.5])
    assert mean_filter_size(256) == 21 and mean_filter_size(64) == 5 and mean_filter_size(128) == 11


def tiny_images(n=16, size=32, seed=0):
    rng = np.random.default_rng(seed)
    base = np.tile(np.sin(np.linspace(0, 8 * np.pi, size))[None, :], (size, 1))
    imgs = 0.5 + 0.25 * base[None, None] + 0.05 * rng.normal(size=(n, 1, size, size))
    return np.clip(imgs, 0, 1).astype(np.float32)


def test_draem_loss_decreases_and_api_shapes(tmp_path):
    X = tiny_images()
    det = DRAEM(recon_width=4, disc_width=4, epochs=8, batch_size=8, lr=2e-3, random_state=0).fit(X)
    loss = det.history_["loss"]
    assert loss[-1] < loss[0]
    s = det.decision_function(X)
    maps = det.anomaly_maps(X[:3])
    assert s.shape == (16,) and maps.shape == (3, 32, 32) and (maps >= 0).all() and (maps <= 1).all()
    np.testing.assert_allclose(det.decision_function(X[:3]),
                               filtered_max(torch.from_numpy(maps), mean_filter_size(32)).numpy(), rtol=1e-5)
    assert det.reconstruct(X[:2]).shape == (2, 1, 32, 32)
    # LR drops at 80 % and 90 % of training
    assert det.scheduler_.milestones == {6: 1, 7: 1}
    loaded = DRAEM.load(det.save(tmp_path / "d.pt"), device="cpu")
    np.testing.assert_allclose(loaded.decision_function(X), s, rtol=1e-5)
    # load-or-fit reuses the saved model for the same settings and images
    again = load_or_fit(DRAEM(recon_width=4, disc_width=4, epochs=8, batch_size=8, lr=2e-3, random_state=0), X,
                        tmp_path / "d.pt")
    np.testing.assert_allclose(again.decision_function(X), s, rtol=1e-5)


def test_draem_is_reproducible_and_rejects_bad_input():
    X = tiny_images(n=8)
    a = DRAEM(recon_width=4, disc_width=4, epochs=2, random_state=1).fit(X).decision_function(X)
    b = DRAEM(recon_width=4, disc_width=4, epochs=2, random_state=1).fit(X).decision_function(X)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="4 dimensions"):
        DRAEM(epochs=1).fit(X[:, 0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DRAEM(epochs=1).fit((X - 0.5) / 0.2)
    with pytest.raises(ValueError, match="divisible"):
        DRAEM(epochs=1).fit(np.zeros((4, 1, 34, 34), np.float32))
    with pytest.raises(ValueError, match="score"):
        DRAEM(epochs=1, score="mean").fit(X)


def test_bottlenecks_keep_the_original_resolution():
    det = DRAEM()
    assert det.depths(256) == (4, 5)  # paper: 16 × 16 and 8 × 8 bottlenecks
    assert det.depths(64) == (2, 3)
    net = ReconstructiveSubNetwork(channels=1, width=2, depth=2)
    assert net.encoder(torch.rand(1, 1, 64, 64)).shape[-1] == 16


def test_bundled_photo_sources_need_no_files_and_are_seeded():
    from kdal_lib.draem import BUNDLED_PHOTOS, anomaly_sources

    assert not {"brick", "grass", "gravel"} & set(BUNDLED_PHOTOS)  # never the embedded categories' own photos
    a = anomaly_sources("skimage", 5, 32, np.random.default_rng(1))
    b = anomaly_sources("skimage", 5, 32, np.random.default_rng(1))
    c = anomaly_sources("skimage", 5, 32, np.random.default_rng(2))
    assert a.shape == (5, 3, 32, 32) and a.dtype == torch.float32
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0 and float(a.std()) > 0.05
    assert torch.equal(a, b) and not torch.equal(a, c)
    noise = anomaly_sources(None, 5, 32, np.random.default_rng(1))
    assert noise.shape == (5, 3, 32, 32) and not torch.equal(noise, a)
