"""The paper's transforms (§2, §4.1): exact crops, flips, colour noise."""
import pytest
import torch
from PIL import Image

from alexnet_lib.data import (IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC,
                              PCALighting, RandomCropFlip, ResizeCenterCrop,
                              SeededCompose, SubtractMean, TenCrop,
                              compute_mean_image, compute_rgb_pca,
                              preset_ten_crop, preset_train, preset_val)
from alexnet_lib.config import DataConfig
from alexnet_lib.data.files import decode_file


def numbered_image(size=256):
    """(3, size, size) float image whose every value is unique."""
    return torch.arange(3 * size * size, dtype=torch.float32).view(
        3, size, size)


def test_ten_crop_is_corners_centre_and_their_mirrors():
    img = numbered_image()
    out = TenCrop(224)(img)
    assert out.shape == (10, 3, 224, 224)
    corners = [img[:, :224, :224], img[:, :224, 32:], img[:, 32:, :224],
               img[:, 32:, 32:], img[:, 16:240, 16:240]]
    for k, crop in enumerate(corners):
        assert torch.equal(out[k], crop)
    # torchvision mirrors the image, then crops: its top-left patch is
    # the mirror of the original top-right one, and so on.
    mirror_of = [1, 0, 3, 2, 4]
    for k, j in enumerate(mirror_of):
        assert torch.equal(out[5 + k], corners[j].flip(-1))


def test_ten_crop_on_a_batch_keeps_the_batch_first():
    out = TenCrop(24)(torch.rand(4, 3, 32, 32))
    assert out.shape == (4, 10, 3, 24, 24)


def test_random_crop_flip_covers_33x33_positions_and_both_mirrors():
    t = RandomCropFlip(224)
    g = torch.Generator().manual_seed(0)
    params = {t.get_params(256, 256, g) for _ in range(30000)}
    tops = {p[0] for p in params}
    lefts = {p[1] for p in params}
    assert tops == set(range(33)) and lefts == set(range(33))
    assert {p[2] for p in params} == {False, True}
    # (256 - 224 + 1)^2 * 2 = 2178 distinct outputs (the paper: 2048).
    assert len(params) == 2178


def test_random_crop_flip_output_is_that_crop():
    img = numbered_image()
    t = RandomCropFlip(224)
    for seed in range(6):
        top, left, mirror = t.get_params(
            256, 256, torch.Generator().manual_seed(seed))
        out = t(img, generator=torch.Generator().manual_seed(seed))
        want = img[:, top:top + 224, left:left + 224]
        assert torch.equal(out, want.flip(-1) if mirror else want)


def test_random_crop_flip_centre_and_no_flip():
    img = numbered_image()
    t = RandomCropFlip(224, random_crop=False, flip=False)
    assert torch.equal(t(img), img[:, 16:240, 16:240])


def test_pca_lighting_adds_exactly_the_papers_sum():
    eigval = torch.tensor([0.3, 0.02, 0.004])
    eigvec, _ = torch.linalg.qr(torch.randn(3, 3,
                                generator=torch.Generator().manual_seed(1)))
    img = torch.rand(3, 8, 8)
    lighting = PCALighting(0.1, eigval, eigvec, value_range=1.0)
    out = lighting(img, generator=torch.Generator().manual_seed(5))
    alpha = torch.randn(3, generator=torch.Generator().manual_seed(5)) * 0.1
    # sum_i alpha_i lambda_i p_i, the same for every pixel
    want = sum(alpha[i] * eigval[i] * eigvec[:, i] for i in range(3))
    torch.testing.assert_close(out - img, want.view(3, 1, 1).expand_as(img))
    # On 0..255 pixels the same alphas give 255x the offset.
    out255 = PCALighting(0.1, eigval, eigvec, value_range=255.0)(
        img * 255, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(out255 - img * 255,
                               255 * want.view(3, 1, 1).expand_as(img))


def test_pca_lighting_draws_one_alpha_per_image_in_a_batch():
    out = PCALighting(0.1)(torch.zeros(4, 3, 5, 5))
    per_image = out[:, :, 0, 0]
    assert torch.equal(out, per_image[:, :, None, None].expand_as(out))
    assert len(set(per_image[:, 0].tolist())) == 4


def test_compute_rgb_pca_recovers_a_known_covariance():
    g = torch.Generator().manual_seed(0)
    eigvec, _ = torch.linalg.qr(torch.randn(3, 3, generator=g))
    eigval = torch.tensor([0.04, 0.01, 0.002])
    cov = eigvec @ torch.diag(eigval) @ eigvec.T
    pixels = torch.randn(200000, 3, generator=g) @ torch.linalg.cholesky(
        cov).T + torch.tensor([0.5, 0.4, 0.3])
    images = pixels.T.reshape(3, 200, 1000).unsqueeze(0)  # (1, 3, H, W)
    val, vec = compute_rgb_pca(images, value_range=1.0)
    torch.testing.assert_close(val, eigval, rtol=0.03, atol=1e-4)
    # Same principal axes up to sign; the columns are orthonormal.
    cos = (vec.T @ eigvec).abs().diagonal()
    assert (cos > 0.99).all()
    torch.testing.assert_close(vec.T @ vec, torch.eye(3), atol=1e-5,
                               rtol=0)
    # 0..255 uint8 data gives [0, 1]-scale eigenvalues.
    u8 = (images * 255).round().clamp(0, 255).to(torch.uint8)
    val8, _ = compute_rgb_pca(u8)
    torch.testing.assert_close(val8, eigval, rtol=0.05, atol=2e-4)


def test_imagenet_pca_constants_are_fb_resnet_values():
    assert IMAGENET_PCA_EIGVAL.tolist() == pytest.approx(
        [0.2175, 0.0188, 0.0045])
    assert IMAGENET_PCA_EIGVEC[0].tolist() == pytest.approx(
        [-0.5675, 0.7192, 0.4009])
    v = IMAGENET_PCA_EIGVEC
    torch.testing.assert_close(v.T @ v, torch.eye(3), atol=2e-3, rtol=0)


def test_mean_image_of_tensors_and_per_channel():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 32, 32), generator=g,
                           dtype=torch.uint8)
    mean = compute_mean_image(images)
    assert mean.shape == (3, 32, 32) and mean.dtype == torch.float32
    torch.testing.assert_close(mean, images.double().mean(0).float())
    torch.testing.assert_close(mean.mean((1, 2)),
                               images.double().mean((0, 2, 3)).float())


class CountingDataset(torch.utils.data.Dataset):
    """Images of different sizes; counts how often it is read."""
    fingerprint = "test-counting-dataset"

    def __init__(self):
        self.reads = 0
        self.images = [torch.full((3, 300, 400), 10, dtype=torch.uint8),
                       torch.full((3, 256, 256), 30, dtype=torch.uint8)]

    def __len__(self):
        return 2

    def __getitem__(self, i):
        self.reads += 1
        return self.images[i], 0


def test_mean_image_of_a_dataset_resizes_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path))
    ds = CountingDataset()
    mean = compute_mean_image(ds, 256)
    assert mean.shape == (3, 256, 256)
    torch.testing.assert_close(mean, torch.full((3, 256, 256), 20.0))
    assert list(tmp_path.glob("mean_images/*.pt"))
    reads = ds.reads
    again = compute_mean_image(ds, 256)
    assert ds.reads == reads  # read from the cache
    torch.testing.assert_close(again, mean)


def test_resize_center_crop_on_real_photos(data_dir):
    photos = sorted((data_dir / "imagenet-samples").glob("*.JPEG"))
    assert len(photos) == 24
    t = ResizeCenterCrop(256)
    for path in photos:
        assert t(decode_file(path)).shape == (3, 256, 256)
    with Image.open(photos[0]) as pil:
        assert t(pil.convert("RGB")).size == (256, 256)


def test_resize_center_crop_scales_the_shorter_side():
    img = numbered_image(64)[:, :, :48]  # (3, 64, 48): portrait
    out = ResizeCenterCrop(24)(img)
    assert out.shape == (3, 24, 24)


def test_subtract_mean_needs_matching_size():
    with pytest.raises(ValueError, match="subtract the mean before "
                       "cropping, or use a per-channel mean"):
        SubtractMean(torch.zeros(3, 256, 256))(torch.zeros(3, 224, 224))
    out = SubtractMean(torch.tensor([1.0, 2.0, 3.0]))(
        torch.zeros(3, 2, 2, dtype=torch.uint8))
    assert out[:, 0, 0].tolist() == [-1.0, -2.0, -3.0]


def test_seeded_compose_is_reproducible():
    img = numbered_image()
    t = SeededCompose([PCALighting(0.1), RandomCropFlip(224)])
    a = t(img, generator=torch.Generator().manual_seed(3))
    b = t(img, generator=torch.Generator().manual_seed(3))
    c = t(img, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_presets_are_the_papers_pipelines():
    """train: mean, colour shift, crop and mirror; val: the centre patch;
    ten-crop: corners, centre and mirrors; all after the §2 resize."""
    d = DataConfig(resize=256, image_size=224, pca_lighting=0.1)
    img = torch.randint(0, 256, (3, 300, 256), dtype=torch.uint8,
                        generator=torch.Generator().manual_seed(0))
    mean = torch.full((3, 256, 256), 100.0)
    pca = (IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC)
    resized = ResizeCenterCrop(256)(img).float() - mean
    val = preset_val(d, mean)(img)
    assert val.shape == (3, 224, 224)
    assert torch.equal(val, resized[:, 16:240, 16:240])
    tens = preset_ten_crop(d, mean)(img)
    assert tens.shape == (10, 3, 224, 224)
    assert torch.equal(tens[4], val)  # the centre patch
    train = preset_train(d, mean, pca)
    by_hand = SeededCompose([PCALighting(0.1, *pca), RandomCropFlip(224)])
    a = train(img, generator=torch.Generator().manual_seed(5))
    b = by_hand(resized, generator=torch.Generator().manual_seed(5))
    assert a.shape == (3, 224, 224) and torch.equal(a, b)
