"""The paper's image transforms (§2, §4.1), on tensors or PIL images.

Pixel values stay on the raw 0..255 scale (the paper trains on
"(centered) raw RGB values"). Random transforms take an optional
``generator`` so a per-sample seed fixes their choice exactly.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..config import cache_root
from .files import atomic_save, load_cached

# fb.resnet.torch datasets/imagenet.lua: eigenvalues and
# eigenvectors (columns) of the RGB covariance over ImageNet train,
# for pixels scaled to [0, 1].
IMAGENET_PCA_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
IMAGENET_PCA_EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009],
                                    [-0.5808, -0.0045, -0.8140],
                                    [-0.5836, -0.6948, 0.4203]])


def _as_tensor(img) -> torch.Tensor:
    return img if isinstance(img, torch.Tensor) else F.pil_to_tensor(img)


class ResizeCenterCrop:
    """Shorter side to ``size``, then the central size x size patch (§2)."""

    def __init__(self, size: int = 256):
        self.size = size

    def __call__(self, img):
        img = F.resize(img, [self.size], antialias=True)  # bilinear
        return F.center_crop(img, [self.size, self.size])


class RandomCropFlip:
    """A random size x size patch and, with p = 0.5, its mirror (§4.1).

    From 256x256 there are 33 x 33 positions x 2 = 2178 outputs (the
    paper counts (256 - 224)^2 x 2 = 2048). ``random_crop=False`` takes
    the centre; ``flip=False`` never mirrors.
    """
    uses_generator = True

    def __init__(self, size: int = 224, random_crop: bool = True,
                 flip: bool = True):
        self.size, self.random_crop, self.flip = size, random_crop, flip

    def get_params(self, height: int, width: int,
                   generator: torch.Generator | None = None):
        """(top, left, flip) for one presentation of one image."""
        if height < self.size or width < self.size:
            raise ValueError(f"image {height}x{width} is smaller than the "
                             f"crop {self.size}; resize it first")
        if self.random_crop:
            top = int(torch.randint(height - self.size + 1, (1,),
                                    generator=generator))
            left = int(torch.randint(width - self.size + 1, (1,),
                                     generator=generator))
        else:
            top, left = (height - self.size) // 2, (width - self.size) // 2
        mirror = bool(torch.rand(1, generator=generator) < 0.5)
        return top, left, mirror and self.flip

    def __call__(self, img, generator: torch.Generator | None = None):
        height, width = F.get_size(img)
        top, left, mirror = self.get_params(height, width, generator)
        img = F.crop(img, top, left, self.size, self.size)
        return F.horizontal_flip(img) if mirror else img


class TenCrop:
    """4 corners + centre, and their mirrors: (10, C, S, S) (§4.1 test).

    Order is torchvision's ``ten_crop``: tl, tr, bl, br, centre of the
    image, then the same five of the mirrored image. The mirrored
    image's tl is the mirror of the original tr, so the ten patches are
    exactly the five crops and their reflections.
    """

    def __init__(self, size: int = 224):
        self.size = size

    def __call__(self, img) -> torch.Tensor:
        crops = F.ten_crop(_as_tensor(img), [self.size, self.size])
        return torch.stack(crops, dim=-4)  # (..., 10, C, S, S)


class PCALighting:
    """Add sum_i alpha_i lambda_i p_i to every pixel (§4.1).

    alpha ~ N(0, alpha_std^2), drawn once per image per presentation.
    ``eigval``/``eigvec`` (columns p_i) are for RGB scaled to [0, 1],
    as ``compute_rgb_pca`` returns them and as fb.resnet.torch uses
    them; the noise is multiplied by ``value_range`` (255 for 0..255
    pixels). The paper does not name a scale; the formula multiplies by
    the eigenvalue (a variance), so it is not scale-free. (cuda-convnet2
    uses sqrt(eigenvalue) instead.)
    """
    uses_generator = True

    def __init__(self, alpha_std: float = 0.1, eigval=IMAGENET_PCA_EIGVAL,
                 eigvec=IMAGENET_PCA_EIGVEC, value_range: float = 255.0):
        self.alpha_std = alpha_std
        # Copies: the defaults are module constants shared by everyone.
        self.eigval = torch.as_tensor(eigval, dtype=torch.float32).clone()
        self.eigvec = torch.as_tensor(eigvec, dtype=torch.float32).clone()
        self.value_range = value_range

    def noise(self, alpha: torch.Tensor) -> torch.Tensor:
        """(..., 3) alphas -> (..., 3) RGB offsets on the image's scale."""
        eigval = self.eigval.to(alpha.device)
        eigvec = self.eigvec.to(alpha.device)
        return (alpha * eigval) @ eigvec.T * self.value_range

    def __call__(self, img: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        img = _as_tensor(img)
        if not img.is_floating_point():
            img = img.float()
        if self.alpha_std == 0:
            return img
        # One alpha triple per image: (3,) for (3,H,W), (B,3) for a batch.
        alpha = torch.randn(img.shape[:-3] + (3,), generator=generator)
        rgb = self.noise(alpha.to(img.device) * self.alpha_std)
        return img + rgb[..., :, None, None]


class SubtractMean:
    """x - mean: a mean image (3, H, W) or per-channel means (3,) (§2)."""

    def __init__(self, mean: torch.Tensor):
        mean = torch.as_tensor(mean, dtype=torch.float32)
        self.mean = mean.view(3, 1, 1) if mean.dim() == 1 else mean

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        img = _as_tensor(img).float()
        h, w = img.shape[-2:]
        if self.mean.shape[-2:] not in ((1, 1), (h, w)):
            raise ValueError(
                f"mean image is {tuple(self.mean.shape[-2:])}, image is "
                f"{(h, w)}: subtract the mean before cropping, or use a "
                f"per-channel mean")
        return img - self.mean.to(img.device)


class SeededCompose:
    """Compose that hands one generator to every random transform."""
    uses_generator = True

    def __init__(self, transforms: list):
        self.transforms = list(transforms)

    def __call__(self, img, generator: torch.Generator | None = None):
        for t in self.transforms:
            if getattr(t, "uses_generator", False):
                img = t(img, generator=generator)
            else:
                img = t(img)
        return img


def to_float() -> v2.ToDtype:
    """uint8 -> float32 keeping the 0..255 scale (no division by 255)."""
    return v2.ToDtype(torch.float32, scale=False)


# The three pipelines of an ImageNet-style run, named as torchvision's
# classification references name theirs (train, val, ten-crop test).
# ``d`` is the run's DataConfig; pixel-wise steps (the mean, the colour
# shift) commute with crop and mirror, so they come first.

def preset_train(d, mean: torch.Tensor, pca) -> SeededCompose:
    """§2 and §4.1 in training: resize, subtract the mean image, PCA
    colour shift of strength ``d.pca_lighting`` (``pca``: eigenvalues,
    eigenvectors), random crop of ``d.image_size`` and mirror."""
    return SeededCompose([
        ResizeCenterCrop(d.resize), to_float(), SubtractMean(mean),
        PCALighting(d.pca_lighting, *pca),
        RandomCropFlip(d.image_size, d.random_crop, d.flip)])


def preset_val(d, mean: torch.Tensor) -> SeededCompose:
    """Validation: resize, subtract the mean, the centre patch."""
    return SeededCompose([
        ResizeCenterCrop(d.resize), to_float(), SubtractMean(mean),
        v2.CenterCrop(d.image_size)])


def preset_ten_crop(d, mean: torch.Tensor) -> SeededCompose:
    """§4.1's test: the four corner and the centre patches and their
    mirrors, (10, 3, S, S) per image."""
    return SeededCompose([
        ResizeCenterCrop(d.resize), to_float(), SubtractMean(mean),
        TenCrop(d.image_size)])


def _pixel_batches(images_or_loader, chunk: int = 1024):
    """Yield (B, 3, H, W) batches from a tensor or an iterable."""
    if isinstance(images_or_loader, torch.Tensor):
        for i in range(0, len(images_or_loader), chunk):
            yield images_or_loader[i:i + chunk]
        return
    for item in images_or_loader:
        x = item[0] if isinstance(item, (tuple, list)) else item
        yield x if x.dim() == 4 else x.unsqueeze(0)


def compute_rgb_pca(images_or_loader, value_range: float = 255.0):
    """(eigval (3,), eigvec (3, 3), columns p_i) of the RGB covariance.

    Over every pixel of every image, on the [0, 1] scale (pixels divided
    by ``value_range``), so the result compares with
    IMAGENET_PCA_EIGVAL/EIGVEC. Eigenvalues descend; each eigenvector's
    largest-magnitude entry is made positive (the sign is arbitrary).
    """
    total = torch.zeros(3, dtype=torch.float64)
    outer = torch.zeros(3, 3, dtype=torch.float64)
    count = 0
    for x in _pixel_batches(images_or_loader):
        # float64 (float32 sums over a million pixels lose ~0.3 % of the
        # smallest eigenvalue), centred on mid-range so that
        # E[pp^T] - E[p]E[p]^T does not cancel badly.
        p = x.transpose(0, 1).reshape(3, -1).double().sub_(value_range / 2)
        total += p.sum(1)
        outer += p @ p.T
        count += p.shape[1]
    if count == 0:
        raise ValueError("compute_rgb_pca got no images")
    mean = total / count
    cov = (outer / count - torch.outer(mean, mean)) / value_range ** 2
    eigval, eigvec = torch.linalg.eigh(cov)  # ascending
    eigval, eigvec = eigval.flip(0), eigvec.flip(1)
    top = eigvec.abs().argmax(0)
    eigvec = eigvec * eigvec[top, torch.arange(3)].sign()
    return eigval.float(), eigvec.float()


def compute_mean_image(dataset, size: int | None = None,
                       num_workers: int = 0, batch_size: int = 64,
                       cache: bool = True) -> torch.Tensor:
    """Per-pixel mean image (3, size, size), float32 on the 0..255 scale.

    ``dataset``: a uint8 tensor (N, 3, H, W), or a dataset of images or
    (image, label) pairs of any size, each taken through
    ResizeCenterCrop(size) as the paper does before averaging. The
    per-channel mean is ``mean_image.mean((1, 2))``. Cached under
    cache_root()/mean_images when the dataset has a ``fingerprint`` and
    no ``transform``.
    """
    if isinstance(dataset, torch.Tensor):
        if size not in (None, dataset.shape[-1]):
            raise ValueError(f"images are {dataset.shape[-1]} wide; "
                             f"size must be None or that")
        total = torch.zeros(dataset.shape[1:], dtype=torch.float64)
        for x in _pixel_batches(dataset):
            total += x.double().sum(0)
        return (total / len(dataset)).float()
    if size is None:
        raise ValueError("give size= (e.g. 256, §2) for an image dataset")
    key = getattr(dataset, "fingerprint", None)
    if getattr(dataset, "transform", None) is not None:
        key = None  # the key names the files, not what a transform does
    path = cache_root() / "mean_images" / f"{key}-{size}.pt"
    if cache and key and (saved := load_cached(path)) is not None:
        return saved
    loader = torch.utils.data.DataLoader(
        _Resized(dataset, size), batch_size=batch_size,
        num_workers=num_workers)
    total = torch.zeros(3, size, size, dtype=torch.float64)
    for x in loader:
        total += x.double().sum(0)
    mean = (total / len(dataset)).float()
    if cache and key:
        atomic_save(mean, Path(path))
    return mean


class _Resized(torch.utils.data.Dataset):
    """The images of ``dataset`` through ResizeCenterCrop, as tensors."""

    def __init__(self, dataset, size: int):
        self.dataset, self.resize = dataset, ResizeCenterCrop(size)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> torch.Tensor:
        item = self.dataset[i]
        img = item[0] if isinstance(item, (tuple, list)) else item
        return self.resize(_as_tensor(img))
