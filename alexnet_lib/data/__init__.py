"""Data: CIFAR-10 in memory, ImageNet-format folders or their tar
shards, the paper's transforms (§2, §4.1) and resume-exact loaders.

Main entry points: ``build_loaders(data, batch_size, seed, profile,
rank, world_size)``, and
``find_dataset(name, ...)``, which decides where every data set comes
from (explicit path, $ALEXNET_DATA, ~/.cache/alexnet_lib/data, the
shipped sample ``SAMPLE_ROOT``).
"""
from .build import CifarTenCrop, build_loaders, build_ten_crop_loader
from .cifar import CifarTensors, find_cifar10, load_cifar10
from .cifar_loader import CifarLoader
from .errors import (CorruptImageError, DataError, DataLayoutError,
                     DataNotFoundError, DownloadError)
from .imagenet import (ImageNetFolder, download_imagenette, find_imagenet,
                       load_class_names)
from .mnist import load_mnist, read_idx, to_grey
from .locate import (SAMPLE_ROOT, describe_dataset, fetch, find_dataset,
                     imagenette_layout)
from .sampler import ResumableBatchSampler, ResumableLoader, mix_seed
from .shard_folder import ShardFolder
from .shards import prepare_shards
from .transforms import (IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC,
                         PCALighting, RandomCropFlip, ResizeCenterCrop,
                         SeededCompose, SubtractMean, TenCrop,
                         compute_mean_image, compute_rgb_pca,
                         preset_ten_crop, preset_train, preset_val)

__all__ = [
    "build_loaders", "build_ten_crop_loader", "CifarTenCrop",
    "CifarTensors", "find_cifar10", "load_cifar10", "CifarLoader",
    "load_mnist", "read_idx", "to_grey",
    "DataError", "DataNotFoundError", "DataLayoutError",
    "CorruptImageError", "DownloadError", "ImageNetFolder",
    "download_imagenette", "find_imagenet", "load_class_names",
    "SAMPLE_ROOT", "find_dataset", "describe_dataset", "fetch",
    "imagenette_layout",
    "ResumableBatchSampler", "ResumableLoader", "mix_seed",
    "ShardFolder", "prepare_shards",
    "IMAGENET_PCA_EIGVAL", "IMAGENET_PCA_EIGVEC", "PCALighting",
    "RandomCropFlip", "ResizeCenterCrop", "SeededCompose", "SubtractMean",
    "TenCrop", "compute_mean_image", "compute_rgb_pca", "preset_train",
    "preset_val", "preset_ten_crop",
]
