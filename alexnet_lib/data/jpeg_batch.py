"""The fast ImageNet input path: workers read bytes, the device decodes.

The per-image path (``build._imagenet_loaders``, decode="pil") decodes,
resizes, colours and crops each image in a DataLoader worker: about
300-500 images/s per CPU core, far below what one GPU trains at. Here
workers only read the JPEG file (~110 KB for ImageNet) and draw the
sample's augmentation; decoding (nvJPEG through
``torchvision.io.decode_jpeg`` on a CUDA device, libjpeg-turbo on the
CPU), the §2 resize and the §4.1 crop, mirror and PCA colour noise run
on whole batches on the device.

Same images as the per-image path: the parameters come from the same
per-sample generator in the same order (PCALighting's alpha, then
RandomCropFlip's top, left, mirror), and every pixel goes through the
same operations, so on the CPU the batches are bitwise equal
(tests/test_jpeg_batch.py). nvJPEG's inverse DCT is not libjpeg-turbo's,
so CUDA-decoded pixels may differ by a few levels.
"""
from __future__ import annotations

import warnings

import torch
from torch.utils.data import DataLoader, Dataset

from .errors import CorruptImageError
from .files import MAX_PIXELS, declared_size, decode_file
from .imagenet import ImageNetFolder
from .transforms import PCALighting, RandomCropFlip, ResizeCenterCrop

try:  # deprecated in torchvision 0.29 (TorchCodec replaces it)
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover - a future torchvision
    decode_jpeg = None


class JpegBytesFolder(Dataset):
    """An ImageNetFolder (or ShardFolder) whose samples are undecoded.

    ``dataset[(index, seed)]`` -> (bytes uint8 (N,), label, index,
    params float32 (6,)): params = (r, g, b) PCA colour offset on the
    0..255 scale, then top, left, mirror of the crop (§4.1), drawn from
    ``seed`` exactly as the per-image transforms draw them. ``crop``
    None: the evaluation view (centre crop, no noise, no mirror).
    """

    def __init__(self, folder: ImageNetFolder, resize: int = 256,
                 crop: RandomCropFlip | None = None,
                 lighting: PCALighting | None = None):
        self.folder, self.resize = folder, resize
        self.crop, self.lighting = crop, lighting

    def __len__(self) -> int:
        return len(self.folder)

    def params(self, generator: torch.Generator | None) -> torch.Tensor:
        """(r, g, b, top, left, mirror) in SeededCompose's draw order."""
        rgb = torch.zeros(3)
        if self.lighting is not None and self.lighting.alpha_std > 0:
            alpha = torch.randn(3, generator=generator)
            rgb = self.lighting.noise(alpha * self.lighting.alpha_std)
        if self.crop is None:
            return torch.cat([rgb, torch.zeros(3)])
        top, left, mirror = self.crop.get_params(self.resize, self.resize,
                                                 generator)
        return torch.cat([rgb, torch.tensor([top, left, mirror],
                                            dtype=torch.float32)])

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        data = self.folder.read(index)
        g = None if seed is None else torch.Generator().manual_seed(seed)
        raw = (torch.frombuffer(bytearray(data), dtype=torch.uint8)
               if data else torch.empty(0, dtype=torch.uint8))  # (N,)
        return raw, self.folder.labels[index], index, self.params(g)


def collate_bytes(samples):
    """(list of byte tensors, labels (B,), indices (B,), params (B, 6))."""
    datas, labels, indices, params = zip(*samples)
    return (list(datas), torch.tensor(labels), torch.tensor(indices),
            torch.stack(params))


def _plain_jpeg(data: torch.Tensor) -> bool:
    """A JPEG whose header declares a sane size: for the batch call.
    Anything else goes through decode_file, which names what is wrong."""
    if data.numel() <= 2 or data[0] != 0xFF or data[1] != 0xD8:
        return False
    size = declared_size(data.numpy())
    return size is not None and size[0] * size[1] <= MAX_PIXELS


class BatchedJpegAugment:
    """Decode, resize, crop, mirror, colour and centre one batch.

    Output: (x float32 (B, 3, S, S) on ``device``, labels (B,)). ``mean``
    is the (3, R, R) mean image or (3, 1, 1) channel means on the
    0..255 scale (§2). Images that do not decode are replaced as
    ImageNetFolder does (the next decodable file, and its label), or
    raise CorruptImageError with ``folder.on_corrupt == "stop"``.
    """

    def __init__(self, folder: ImageNetFolder, mean: torch.Tensor,
                 size: int = 224, resize: int = 256,
                 device: torch.device | str = "cpu", train: bool = True):
        self.folder, self.size, self.train = folder, size, train
        self.device = torch.device(device)
        self.resize = ResizeCenterCrop(resize)
        self.mean = mean.to(self.device, torch.float32)
        # §4.1 test view: torchvision's CenterCrop rounds, not floors
        self.centre = int(round((resize - size) / 2.0))

    def decode(self, datas: list[torch.Tensor], indices: torch.Tensor,
               labels: torch.Tensor) -> list[torch.Tensor]:
        """uint8 (3, H, W) images on the device; bad files replaced."""
        images: list[torch.Tensor | None] = [None] * len(datas)
        jpeg = [i for i, d in enumerate(datas) if _plain_jpeg(d)]
        if self.device.type == "cuda" and jpeg and decode_jpeg is not None:
            # DEVIATION (engineering): (decode="batched" on CUDA only)
            # nvJPEG rounds its inverse DCT unlike libjpeg-turbo: a few
            # levels apart.
            try:  # one nvJPEG call for the batch
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    out = decode_jpeg([datas[i] for i in jpeg],
                                      mode=ImageReadMode.RGB,
                                      device=self.device)
                for i, img in zip(jpeg, out):
                    images[i] = img
            except RuntimeError:
                pass  # a bad file in the batch: one at a time below
        for i, img in enumerate(images):
            if img is not None:
                continue
            index = int(indices[i])
            try:  # the per-image path's decoder, fallbacks included
                img = decode_file(self.folder.name(index),
                                  bytes(datas[i].numpy()))
            except CorruptImageError:
                if self.folder.on_corrupt == "stop":
                    raise
                # tries this file again, marks it, warns, takes the next
                img, label = self.folder.load(index)
                labels[i] = label
            images[i] = img.to(self.device, non_blocking=True)
        return images

    def __call__(self, datas, labels, indices, params):
        labels = labels.clone()
        images = self.decode(datas, indices, labels)
        x = torch.stack([self.resize(img) for img in images])  # (B,3,R,R)
        params = params.to(self.device)
        n, s = len(images), self.size
        if self.train:
            top, left = params[:, 3].long(), params[:, 4].long()
            mirror = params[:, 5] > 0
        else:
            top = left = torch.full((n,), self.centre, device=self.device)
            mirror = torch.zeros(n, dtype=torch.bool, device=self.device)
        ar = torch.arange(s, device=self.device)
        rows = (top[:, None] + ar)[:, :, None]  # (B, S, 1)
        cols = (left[:, None] + torch.where(mirror[:, None], s - 1 - ar,
                                            ar))[:, None, :]  # (B, 1, S)
        batch = torch.arange(n, device=self.device)[:, None, None]
        # One gather crops and mirrors every image: (B, S, S, 3)
        patch = x.permute(0, 2, 3, 1)[batch, rows, cols].float()
        mean = self.mean
        if mean.shape[-1] > 1:  # a mean image moves with the pixels
            mean = mean.permute(1, 2, 0)[rows, cols]  # (B, S, S, 3)
        else:
            mean = mean.view(1, 1, 1, 3)
        out = patch - mean  # the same float ops as SubtractMean ...
        if self.train:  # ... then PCALighting's offset
            out = out + params[:, None, None, :3]
        return out.permute(0, 3, 1, 2).contiguous(), labels


class BatchedJpegLoader:
    """Batches (x, y) from a DataLoader over a JpegBytesFolder.

    Has ``set_epoch``/``len``/``dataset``/``batch_size`` as the
    per-image loaders do (ResumableLoader), so ``fit`` uses either.
    """

    def __init__(self, loader, augment: BatchedJpegAugment, sampler=None):
        self.loader, self.augment, self.sampler = loader, augment, sampler
        self.dataset = augment.folder
        self.batch_size = (sampler.batch_size // sampler.world_size
                           if sampler is not None else loader.batch_size)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.sampler.set_epoch(epoch, start_step)

    def __len__(self) -> int:
        return len(self.sampler if self.sampler is not None
                   else self.loader)

    def __iter__(self):
        # iter() now: the DataLoader draws its seed here, where
        # train_one_epoch has forked the RNG (see train.py)
        return (self.augment(*batch) for batch in iter(self.loader))


def batched_loaders(d, batch_size: int, train: ImageNetFolder,
                    val: ImageNetFolder, mean: torch.Tensor, pca, sampler,
                    device):
    """(train_loader, val_loader) for data.decode="batched" (``d``: the
    DataConfig).

    The training loader follows ``sampler`` (a ResumableBatchSampler),
    so it resumes and splits across ranks like the per-image one.
    """
    workers = d.num_workers
    dataset = JpegBytesFolder(
        train, d.resize, RandomCropFlip(d.image_size, d.random_crop, d.flip),
        PCALighting(d.pca_lighting, *pca))
    train_loader = BatchedJpegLoader(DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers,
        collate_fn=collate_bytes, persistent_workers=workers > 0),
        BatchedJpegAugment(train, mean, d.image_size, d.resize, device),
        sampler)
    val_loader = BatchedJpegLoader(DataLoader(
        JpegBytesFolder(val, d.resize), batch_size=batch_size,
        num_workers=workers, collate_fn=collate_bytes),
        BatchedJpegAugment(val, mean, d.image_size, d.resize, device,
                           train=False))
    return train_loader, val_loader
