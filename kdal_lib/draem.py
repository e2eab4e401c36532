"""DRAEM: a discriminatively trained reconstruction embedding for surface anomaly detection
(Zavrtanik, Kristan & Skočaj, ICCV 2021).

Training images get simulated anomalies: a Perlin-noise mask M cuts a piece out of an augmented
anomaly-source texture A and blends it into the image I (opacity β),

    I_a = I ⊙ (1 − M) + (1 − β) A ⊙ M + β I ⊙ M.

A reconstructive sub-network (encoder-decoder, no skips) maps I_a back to I; a discriminative
sub-network (U-Net with skips) sees concat(I_r, I_a) and segments M. Loss (paper Eq. 1-4):

    L = L2(I_r, I) + (1 − SSIM(I_r, I)) + Focal(softmax(M_o), M),   γ = 2.

Pixel map = softmax anomaly channel; image score = max of the map after a mean filter (21 × 21
at 256 px; scaled with the image size), or the raw max (anomalib's choice) with ``score="max"``.
Inputs stay in [0, 1]: no ImageNet normalisation (the bug anomalib PR #1431 fixed).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

from .base import BaseDeepDetector
from .validation import check_features, check_param

__all__ = ["perlin_noise", "perlin_mask", "augment_texture", "procedural_textures", "bundled_photo_textures", "anomaly_sources",
           "AnomalySynthesizer",
           "ReconstructiveSubNetwork", "DiscriminativeSubNetwork", "ssim", "focal_loss", "filtered_max",
           "mean_filter_size", "DRAEM", "evaluate_draem", "pixel_baselines", "run_categories", "score_pool_for_asal",
           "PAPER_SETTINGS", "CPU_SETTINGS"]

#: The paper's / original code's settings, and the laptop-CPU defaults used by notebook 03.
PAPER_SETTINGS = dict(image_size=256, recon_width=128, disc_width=64, epochs=700, batch_size=8, lr=1e-4,
                      filter_size=21)
CPU_SETTINGS = dict(image_size=64, recon_width=16, disc_width=8, epochs=12, batch_size=8, lr=1e-3, filter_size=5,
                    anomaly_source="skimage")


# --------------------------------------------------------------------------------- synthesis
def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D gradient (Perlin) noise on a ``res`` lattice; ``shape`` must be divisible by ``res``.
    Random unit gradients at lattice corners, dot products with the offsets, quintic fade."""
    h, w = shape
    ry, rx = res
    if h % ry or w % rx:
        raise ValueError(f"perlin_noise: shape {shape} must be divisible by res {res}")
    cy, cx = h // ry, w // rx
    ang = 2 * np.pi * rng.random((ry + 1, rx + 1))
    grad = np.stack([np.cos(ang), np.sin(ang)], -1)
    # position inside the cell in [0, 1)
    ty = (np.arange(h) % cy) / cy
    tx = (np.arange(w) % cx) / cx
    fy, fx = np.meshgrid(ty, tx, indexing="ij")
    iy = np.arange(h) // cy
    ix = np.arange(w) // cx
    IY, IX = np.meshgrid(iy, ix, indexing="ij")

    def corner(dy, dx):
        g = grad[IY + dy, IX + dx]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    def fade(t):
        return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3

    uy, ux = fade(fy), fade(fx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    return np.sqrt(2) * (top * (1 - uy) + bottom * uy)


def perlin_mask(size: int, rng: np.random.Generator, threshold: float = 0.5, max_scale: int | None = None,
                rotate: float = 90.0) -> np.ndarray:
    """A binary anomaly mask: Perlin noise at lattice resolution (2^a, 2^b), a and b drawn
    independently up to ``max_scale`` (default size // 8, i.e. 1..32 at 256 px as the original),
    rotated by U(−rotate, rotate) degrees and thresholded at ``threshold``."""
    max_scale = max_scale or max(1, size // 8)
    max_exp = int(math.log2(max_scale))
    while size % (2 ** max_exp):
        max_exp -= 1
    ry, rx = 2 ** rng.integers(0, max_exp + 1), 2 ** rng.integers(0, max_exp + 1)
    noise = perlin_noise((size, size), (int(ry), int(rx)), rng)
    if rotate:
        noise = ndimage.rotate(noise, rng.uniform(-rotate, rotate), reshape=False, order=1, mode="reflect")
    return (noise > threshold).astype(np.float32)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def augment_texture(texture: torch.Tensor, rng: np.random.Generator, n_ops: int = 3) -> torch.Tensor:
    """Apply ``n_ops`` of the paper's 10 augmentations, drawn at random, to an RGB texture in [0, 1]
    (torchvision functional ops): gamma contrast, brightness ×, brightness +, sharpness, hue and
    saturation, solarize, posterize, invert, autocontrast, equalize, affine rotation ±45°."""
    from torchvision.transforms.v2 import functional as TF

    ops = [
        lambda t: TF.adjust_gamma(t, float(rng.uniform(0.5, 2.0))),
        lambda t: (t * float(rng.uniform(0.8, 1.2))).clamp(0, 1),
        lambda t: (t + float(rng.uniform(-0.12, 0.12))).clamp(0, 1),
        lambda t: TF.adjust_sharpness(t, float(rng.uniform(0.0, 3.0))),
        lambda t: TF.adjust_saturation(TF.adjust_hue(t, float(rng.uniform(-0.1, 0.1))), float(rng.uniform(0.5, 1.5))),
        lambda t: TF.solarize(t, float(rng.uniform(0.125, 0.5))),
        lambda t: TF.posterize(_to_uint8(t), int(rng.integers(2, 5))).float() / 255,
        lambda t: TF.invert(t),
        lambda t: TF.autocontrast(t),
        lambda t: TF.equalize(_to_uint8(t)).float() / 255,
        lambda t: TF.rotate(t, float(rng.uniform(-45, 45)), interpolation=TF.InterpolationMode.BILINEAR),
    ]
    # the paper counts hue/saturation as one op and both brightness ops as one: 10 families, 11 lambdas
    for k in rng.choice(len(ops), size=n_ops, replace=False):
        texture = ops[int(k)](texture)
    return texture.clamp(0, 1)


def procedural_textures(n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Fallback anomaly sources when no texture folder is given: smooth coloured noise at several
    scales plus stripes (the paper's uniform-colour ablation still reached 96.2 image AUROC)."""
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        scale = int(2 ** rng.integers(1, max(2, int(math.log2(size)) - 1)))
        base = rng.random((3, scale, scale)).astype(np.float32)
        up = F.interpolate(torch.from_numpy(base)[None], size=(size, size), mode="bicubic", align_corners=False)[0]
        if rng.random() < 0.5:
            freq = rng.uniform(2, 12)
            stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * np.linspace(0, 1, size))[None, :]
            up = up * 0.6 + 0.4 * torch.from_numpy(stripes.astype(np.float32))[None].expand(3, size, size)
        out[i] = up.clamp(0, 1).numpy()
    return torch.from_numpy(out)


#: scikit-image's bundled public-domain / CC0 photographs (no download) used by ``anomaly_source="skimage"``;
#: the embedded categories' own photos (brick, grass, gravel) are left out
BUNDLED_PHOTOS = ("camera", "coins", "moon", "page", "text", "chelsea", "coffee", "astronaut", "rocket",
                  "hubble_deep_field", "immunohistochemistry", "horse", "clock", "cell", "logo", "colorwheel")


def bundled_photo_textures(n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` anomaly sources (n, 3, size, size) cut from scikit-image's bundled photographs: a random square
    crop (40-100 % of the shorter side) of a random photo, resized. A no-download stand-in for DTD, which
    gives DRAEM natural-image structure to paste instead of smooth colour noise."""
    import skimage.data
    from PIL import Image

    photos = []
    for name in BUNDLED_PHOTOS:
        a = np.asarray(getattr(skimage.data, name)())
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        a = np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]
        photos.append(a.astype(np.uint8))
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        a = photos[int(rng.integers(len(photos)))]
        h, w = a.shape[:2]
        side = int(rng.uniform(0.4, 1.0) * min(h, w))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(a[y0:y0 + side, x0:x0 + side]).resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return torch.from_numpy(out)


def anomaly_sources(source, n: int, size: int, rng: np.random.Generator, random_state: int = 0) -> torch.Tensor:
    """The (n, 3, size, size) anomaly-source textures DRAEM pastes: ``"skimage"`` (bundled photographs),
    a folder (DTD layout or flat), or ``None``/``""`` (procedural colour noise)."""
    if source == "skimage":
        return bundled_photo_textures(n, size, rng)
    if source:
        from .data.images import load_texture_folder

        return torch.as_tensor(load_texture_folder(source, size, limit=n, random_state=random_state), dtype=torch.float32)
    return procedural_textures(n, size, rng)


class AnomalySynthesizer:
    """Turns a batch of normal images into (augmented images, masks, has-anomaly flags).

    ``textures``: (T, 3, H, W) anomaly sources in [0, 1] (DTD images, CC0 photos, or procedural).
    ``p_clean``: share of samples left untouched (0.5). ``beta_range``: β of the blend formula
    (original code U(0, 0.8); the paper's text says 0.1-1.0 for the texture opacity)."""

    def __init__(self, textures: torch.Tensor, image_size: int, p_clean: float = 0.5,
                 beta_range: tuple = (0.0, 0.8), n_augment: int = 3, threshold: float = 0.5):
        if textures.ndim != 4 or textures.shape[1] != 3:
            raise ValueError(f"textures must be (T, 3, H, W), got shape {tuple(textures.shape)}")
        if textures.shape[-1] != image_size or textures.shape[-2] != image_size:
            textures = F.interpolate(textures, size=(image_size, image_size), mode="bilinear", align_corners=False)
        self.textures = textures.float().clamp(0, 1)
        self.image_size = image_size
        self.p_clean, self.beta_range, self.n_augment, self.threshold = p_clean, beta_range, n_augment, threshold

    def __call__(self, images: torch.Tensor, rng: np.random.Generator):
        n, c, h, w = images.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"images are {h}×{w} but the synthesizer was built for {self.image_size} px")
        out = images.clone()
        masks = torch.zeros(n, 1, h, w)
        flags = torch.zeros(n)
        for i in range(n):
            if rng.random() < self.p_clean:
                continue
            m = torch.from_numpy(perlin_mask(h, rng, self.threshold))
            if m.sum() == 0:
                continue
            tex = augment_texture(self.textures[int(rng.integers(len(self.textures)))], rng, self.n_augment)
            if c == 1:
                tex = (0.299 * tex[0] + 0.587 * tex[1] + 0.114 * tex[2])[None]
            beta = float(rng.uniform(*self.beta_range))
            out[i] = images[i] * (1 - m) + (1 - beta) * tex * m + beta * images[i] * m
            masks[i, 0] = m
            flags[i] = 1.0
        return out, masks, flags


# --------------------------------------------------------------------------------- networks
def _block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _up(cin, cout):
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                         nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ReconstructiveSubNetwork(nn.Module):
    """Encoder-decoder without skip connections: ``depth`` poolings (paper: 4 at 256 px, a 16 × 16
    bottleneck), widths w, 2w, 4w, 8w, 8w; bilinear upsampling back; final 3×3 conv with no
    activation (paper: w = 128)."""

    def __init__(self, channels: int = 3, width: int = 128, depth: int = 4):
        super().__init__()
        ws = [width * min(2 ** i, 8) for i in range(depth)] + [width * min(2 ** depth, 8)]
        ws[-1] = ws[-2]
        enc, cin = [], channels
        for i, wd in enumerate(ws):
            enc += ([nn.MaxPool2d(2)] if i else []) + [_block(cin, wd)]
            cin = wd
        self.encoder = nn.Sequential(*enc)
        dec = []
        for wd in reversed(ws[:-1]):
            dec += [_up(cin, cin), _block(cin, wd)]
            cin = wd
        self.decoder = nn.Sequential(*dec, nn.Conv2d(cin, channels, 3, padding=1))

    def forward(self, x):
        return self.decoder(self.encoder(x))


class DiscriminativeSubNetwork(nn.Module):
    """U-Net with skips on concat(I_r, I_a): ``depth`` poolings (paper: 5, width 64), 2 output logits."""

    def __init__(self, in_channels: int = 6, width: int = 64, depth: int = 5):
        super().__init__()
        ws = [width * min(2 ** i, 8) for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for wd in ws:
            self.down.append(_block(cin, wd))
            cin = wd
        self.ups, self.merge = nn.ModuleList(), nn.ModuleList()
        for wd in reversed(ws[:-1]):
            self.ups.append(_up(cin, wd))
            self.merge.append(_block(2 * wd, wd))
            cin = wd
        self.head = nn.Conv2d(cin, 2, 3, padding=1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        for up, merge, skip in zip(self.ups, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([up(x), skip], 1))
        return self.head(x)


class _DraemNet(nn.Module):
    def __init__(self, channels, recon_width, disc_width, recon_depth, disc_depth):
        super().__init__()
        self.reconstructive = ReconstructiveSubNetwork(channels, recon_width, recon_depth)
        self.discriminative = DiscriminativeSubNetwork(2 * channels, disc_width, disc_depth)
        for m in self.modules():  # original init: conv N(0, 0.02), BN weight N(1, 0.02)
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        rec = self.reconstructive(x)
        return rec, self.discriminative(torch.cat([rec, x], 1))


# --------------------------------------------------------------------------------- losses, scores
def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity with a Gaussian window (11 × 11, σ = 1.5), per channel."""
    c = a.shape[1]
    g = torch.exp(-((torch.arange(window, dtype=a.dtype, device=a.device) - window // 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()
    pad = window // 2

    def filt(x):
        return F.conv2d(F.pad(x, [pad] * 4, mode="reflect"), kernel, groups=c)

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a ** 2
    var_b = filt(b * b) - mu_b ** 2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean()


def focal_loss(logits: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0, alpha: float = 1.0,
               smooth: float = 1e-5) -> torch.Tensor:
    """Focal loss on the softmax of 2-class logits (B, 2, H, W) against a binary mask (B, 1, H, W)."""
    p = torch.softmax(logits, 1)
    target = torch.cat([1 - mask, mask], 1).clamp(smooth, 1 - smooth)
    pt = (p * target).sum(1) + smooth
    return (-alpha * (1 - pt) ** gamma * torch.log(pt)).mean()


def mean_filter_size(image_size: int) -> int:
    """The original's 21 × 21 mean filter at 256 px, scaled to ``image_size`` (odd, ≥ 1)."""
    k = max(1, int(round(21 * image_size / 256)))
    return k if k % 2 else k + 1


def filtered_max(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Image score of the original DRAEM: max over pixels of the map after a size × size mean
    filter (``avg_pool2d`` with stride 1). ``maps``: (N, H, W) or (N, 1, H, W)."""
    if maps.ndim == 3:
        maps = maps[:, None]
    if size > 1:
        maps = F.avg_pool2d(maps, size, stride=1, padding=size // 2, count_include_pad=False)
    return maps.flatten(1).max(1).values


# --------------------------------------------------------------------------------- detector
class DRAEM(BaseDeepDetector):
    """DRAEM with the PyOD-style API: ``fit(images)`` on (N, C, H, W) arrays in [0, 1] (normal
    images for DRAEM_normal, an unlabelled pool for DRAEM_mixed), ``decision_function(images)``
    → image scores, ``anomaly_maps(images)`` → (N, H, W) pixel maps, ``reconstruct(images)``.

    ``anomaly_source``: a folder of anomaly-source textures (DTD layout or a flat folder of images;
    at most ``n_textures`` are used), ``"skimage"`` for crops of scikit-image's bundled photographs (no
    files needed; :func:`bundled_photo_textures`), or ``None`` for procedural colour noise. The LR is
    multiplied by 0.2 at 80 % and 90 % of training (original code; the paper: ×0.1 at 400 and 600
    of 700 epochs). ``score``: ``"filtered_max"`` (original) or ``"max"`` (anomalib)."""

    input_ndim = 4

    def __init__(self, recon_width: int = 16, disc_width: int = 8, disc_depth: int | None = None,
                 filter_size: int | None = None, score: str = "filtered_max", p_clean: float = 0.5,
                 beta_range: tuple = (0.0, 0.8), lr_milestones: tuple = (0.8, 0.9), lr_gamma: float = 0.2,
                 anomaly_source: str | None = None, n_textures: int = 32,
                 epochs: int = 12, batch_size: int = 8, lr: float = 1e-3, weight_decay: float = 0.0,
                 contamination: float = 0.1, validation_fraction: float = 0.0, device: str = "auto",
                 random_state: int = 0, verbose: int = 0, checkpoint_dir: str | None = None):
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         contamination=contamination, validation_fraction=validation_fraction, device=device,
                         random_state=random_state, verbose=verbose, checkpoint_dir=checkpoint_dir)
        self.recon_width, self.disc_width, self.disc_depth = recon_width, disc_width, disc_depth
        self.filter_size, self.score = filter_size, score
        self.p_clean, self.beta_range = p_clean, beta_range
        self.lr_milestones, self.lr_gamma = lr_milestones, lr_gamma
        self.anomaly_source, self.n_textures = anomaly_source, n_textures

    def _check_params(self):
        super()._check_params()
        check_param("recon_width", self.recon_width, low=1, integer=True)
        check_param("disc_width", self.disc_width, low=1, integer=True)
        check_param("score", self.score, choices=("filtered_max", "max"))
        check_param("p_clean", self.p_clean, low=0, high=1)

    def depths(self, size: int) -> tuple[int, int]:
        """Poolings of the two sub-networks, scaled so the bottlenecks keep the original's
        resolution (16 × 16 and 8 × 8 at 256 px): 4 and 5 at 256 px, 2 and 3 at 64 px."""
        recon = max(1, min(4, int(math.log2(size / 16)))) if size >= 32 else 1
        disc = self.disc_depth or max(1, min(5, int(math.log2(size / 8)))) if size >= 16 else 1
        return recon, disc

    def _build(self, n_channels: int) -> nn.Module:
        size = self.image_size_
        recon_depth, disc_depth = self.depths(size)
        need = 2 ** max(recon_depth, disc_depth)
        if size % need:
            raise ValueError(f"image size {size} must be divisible by {need} "
                             f"({recon_depth} poolings in the reconstructive network, {disc_depth} in the discriminative one)")
        torch.manual_seed(self.random_state)
        return _DraemNet(n_channels, self.recon_width, self.disc_width, recon_depth, disc_depth)

    def _make_optimizer(self):
        return torch.optim.Adam(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def _make_scheduler(self):
        milestones = sorted({max(1, int(round(f * self.epochs))) for f in self.lr_milestones})
        return torch.optim.lr_scheduler.MultiStepLR(self.optimizer_, milestones=milestones, gamma=self.lr_gamma)

    def fit(self, X, y=None):
        X = check_features(X, "X", ndim=4, min_samples=2)
        if X.shape[-1] != X.shape[-2]:
            raise ValueError(f"DRAEM expects square images, got {X.shape[-2]}×{X.shape[-1]}")
        if X.min() < 0 or X.max() > 1:
            raise ValueError("images must be in [0, 1] (no ImageNet normalisation: DRAEM blends raw textures)")
        self.image_size_ = int(X.shape[-1])
        rng = np.random.default_rng(self.random_state)
        tex = anomaly_sources(self.anomaly_source, self.n_textures, self.image_size_, rng, self.random_state)
        self.synthesizer_ = AnomalySynthesizer(tex, self.image_size_, self.p_clean, tuple(self.beta_range))
        self._step = 0
        return super().fit(X, y)

    def _on_epoch_start(self, epoch: int) -> None:
        # synthesis randomness derives from (seed, epoch): a resumed run draws the same anomalies
        self._synth_rng = np.random.default_rng([self.random_state, epoch])

    def _loss(self, xb: torch.Tensor):
        if self.model_.training:
            aug, mask, _ = self.synthesizer_(xb.cpu(), self._synth_rng)
            aug, mask = aug.to(xb.device), mask.to(xb.device)
        else:  # validation loss on clean images: reconstruction only, empty target mask
            aug, mask = xb, torch.zeros_like(xb[:, :1])
        rec, logits = self.model_(aug)
        l2 = F.mse_loss(rec, xb)
        l_ssim = 1 - ssim(rec, xb)
        l_focal = focal_loss(logits, mask)
        return l2 + l_ssim + l_focal, {"l2": float(l2.detach()), "ssim": float(l_ssim.detach()),
                                       "focal": float(l_focal.detach())}

    def _filter(self) -> int:
        return self.filter_size or mean_filter_size(self.image_size_)

    def _score(self, xb: torch.Tensor) -> torch.Tensor:
        maps = torch.softmax(self.model_(xb)[1], 1)[:, 1]
        return filtered_max(maps, self._filter()) if self.score == "filtered_max" else maps.flatten(1).max(1).values

    @torch.no_grad()
    def _batched(self, X, fn, batch_size: int = 32) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RuntimeError("DRAEM is not fitted: call fit(images) first")
        X = check_features(X, "X", ndim=4)
        self.model_.eval()
        return torch.cat([fn(torch.from_numpy(X[i:i + batch_size]).to(self.device_)).cpu()
                          for i in range(0, len(X), batch_size)]).numpy()

    def anomaly_maps(self, X, batch_size: int = 32) -> np.ndarray:
        """(N, H, W) pixel anomaly maps: the softmax probability of the anomaly channel."""
        return self._batched(X, lambda xb: torch.softmax(self.model_(xb)[1], 1)[:, 1], batch_size)

    def reconstruct(self, X, batch_size: int = 32) -> np.ndarray:
        """The reconstructive sub-network's output, clipped to [0, 1]."""
        return np.clip(self._batched(X, lambda xb: self.model_.reconstructive(xb), batch_size), 0, 1)

    def decision_function(self, X, batch_size: int = 32) -> np.ndarray:
        return self._batched(X, self._score, batch_size).astype(np.float64)

    def _extra_state(self) -> dict:
        return {"image_size": torch.tensor(getattr(self, "image_size_", 0))}

    def _load_extra_state(self, state: dict) -> None:
        if "image_size" in state:
            self.image_size_ = int(state["image_size"])


# --------------------------------------------------------------------------------- evaluation
def evaluate_draem(detector: DRAEM, test) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics with the field's names on an ImageSet: ``image_AUROC``, ``image_AP`` and, when masks
    are known, ``pixel_AUROC`` and ``pixel_AP`` (pixels pooled over the whole test set).
    Returns (metrics, image scores, pixel maps)."""
    from .metrics import aupr, auroc

    scores = detector.decision_function(test.images)
    maps = detector.anomaly_maps(test.images)
    out = {"image_AUROC": auroc(test.labels, scores), "image_AP": aupr(test.labels, scores)}
    if test.masks is not None and test.masks.sum() > 0:
        gt = (test.masks[:, 0] > 0.5).ravel()
        out["pixel_AUROC"] = auroc(gt, maps.ravel())
        out["pixel_AP"] = aupr(gt, maps.ravel())
    return out, scores, maps


def pixel_baselines(task, seed: int = 0) -> dict:
    """The simple image-level baselines every comparison needs, on flattened pixels of the same split:
    PCA reconstruction error and Isolation Forest, fitted on the normal training images.
    Returns ``{name: dict(scores, image_AUROC, image_AP, fit_s)}``."""
    import time

    from .baselines import IsolationForestDetector, PCADetector
    from .metrics import aupr, auroc

    flat_train = task.train.images.reshape(len(task.train), -1)
    flat_test = task.test.images.reshape(len(task.test), -1)
    out = {}
    for name, det in (("PCA (pixels)", PCADetector(random_state=seed)),
                      ("IsolationForest (pixels)", IsolationForestDetector(random_state=seed))):
        t0 = time.perf_counter()
        s = det.fit(flat_train).decision_function(flat_test)
        out[name] = {"scores": s, "image_AUROC": auroc(task.test.labels, s), "image_AP": aupr(task.test.labels, s),
                     "fit_s": time.perf_counter() - t0}
    return out


# --------------------------------------------------------------------------------- notebook runs
def _fit(make_detector, images, path, seed):
    import time

    from .base import load_or_fit

    t0 = time.perf_counter()
    det = load_or_fit(make_detector(seed), images, path)
    return det, time.perf_counter() - t0


def run_categories(tasks: dict, make_detector, seed: int = 0, checkpoint_dir=None, verbose: int = 0) -> dict:
    """The MVTec protocol per category: fit ``make_detector(seed)`` on the normal training images
    (DRAEM_normal), score the test set. Returns ``{category: dict(detector, metrics, scores, maps, fit_s)}``."""
    from pathlib import Path

    from .utils import log

    out = {}
    for name, task in tasks.items():
        path = Path(checkpoint_dir) / f"draem_{name}_seed{seed}.pt" if checkpoint_dir else None
        det, fit_s = _fit(make_detector, task.train.images, path, seed)
        metrics, scores, maps = evaluate_draem(det, task.test)
        out[name] = dict(detector=det, metrics=metrics, scores=scores, maps=maps, fit_s=fit_s)
        log(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()) + f" ({fit_s:.0f} s)", verbose, 1)
    return out


def score_pool_for_asal(task, make_detector, scores_root, seed: int = 0, test_fraction: float = 0.2,
                        checkpoint_dir=None, loss_type: str = "anomaly_scores_draem") -> list[dict]:
    """The hand-off to ASAL (notebook 04) for one category, in the seed's protocol: merge train and
    test, re-split 80/20 (seeded); fit DRAEM_mixed on the whole unlabelled pool (anomalies
    included, no labels used) and DRAEM_normal on the pool's normal images (uses labels: a reference
    line only); score the pool with each and write ``loss_batch/<loss_type>/<class>/`` (mixed) and
    ``loss_batch/<loss_type>_normal/<class>/`` (normal). Returns one record per regime with its
    image_AUROC/AP on the held-out 20 % and the score folder."""
    from pathlib import Path

    from .data.images import merge_and_split
    from .metrics import aupr, auroc
    from .score_files import write_score_files

    pool, test = merge_and_split(task, test_fraction=test_fraction, random_state=seed)
    regimes = {"DRAEM_mixed": (pool.images, loss_type),
               "DRAEM_normal": (pool.images[pool.labels == 0], f"{loss_type}_normal")}
    records = []
    for regime, (images, lt) in regimes.items():
        path = Path(checkpoint_dir) / f"draem_{task.name}_{regime}_seed{seed}.pt" if checkpoint_dir else None
        det, fit_s = _fit(make_detector, images, path, seed)
        folder = write_score_files(pool.paths, det.decision_function(pool.images), scores_root, task.name, lt)
        s = det.decision_function(test.images)
        records.append({"dataset": task.name, "method": regime, "seed": seed, "n_pool": len(pool),
                        "pool_anomalies": int(pool.labels.sum()), "n_test": len(test),
                        "image_AUROC": auroc(test.labels, s), "image_AP": aupr(test.labels, s),
                        "fit_s": fit_s, "score_folder": str(folder)})
    return records
