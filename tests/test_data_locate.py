"""find_dataset: the search order, downloads, messages; the fetch command;
both Imagenette layouts (tiny fake folders, no network needed)."""
import urllib.error
from pathlib import Path

import pytest
import torchvision.datasets
from PIL import Image

from alexnet_lib.cli import main
from alexnet_lib.data import (SAMPLE_ROOT, DataNotFoundError,
                              describe_dataset, find_dataset,
                              imagenette_layout)

SYNSETS = ["n01440764", "n02102040"]
TO_POINT = ("or point the project at a copy you have: set ALEXNET_DATA="
            "/folder/that/holds/it or pass --data /folder/that/holds/it.")


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Empty explicit, $ALEXNET_DATA and default (~/.cache/...) folders."""
    home = tmp_path / "home"
    default = home / ".cache" / "alexnet_lib" / "data"
    for path in (tmp_path / "explicit", tmp_path / "env", default):
        path.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ALEXNET_DATA", raising=False)
    return tmp_path / "explicit", tmp_path / "env", default


def fake_cifar(root: Path, name: str = "cifar-10-jpeg-q75") -> Path:
    for split in ("train", "test"):
        (root / name / split / "cat").mkdir(parents=True)
    return root / name


def fake_imagenette(root: Path, size: tuple[int, int], train=3, val=2,
                    synsets=SYNSETS) -> Path:
    """JPEGs of ``size`` (w, h) in train/<synset>/ and val/<synset>/."""
    for split, n in (("train", train), ("val", val)):
        for synset in synsets:
            folder = root / split / synset
            folder.mkdir(parents=True)
            for k in range(n):
                Image.new("RGB", size, (k * 40, 90, 200)).save(
                    folder / f"{synset}_{k}.JPEG")
    return root


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if torchvision is asked to download anything."""
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", refuse)
    monkeypatch.setattr(torchvision.datasets, "Imagenette", refuse)


# --- the search order -------------------------------------------------------

def test_explicit_then_env_then_default_then_sample(places, monkeypatch,
                                                    no_download):
    explicit, env, default = places
    monkeypatch.setenv("ALEXNET_DATA", str(env))
    find = dict(profile="ci")
    assert find_dataset("cifar10", **find) == SAMPLE_ROOT / "cifar10"
    fake_cifar(default)
    assert find_dataset("cifar10", **find) == default / "cifar-10-jpeg-q75"
    fake_cifar(env)
    assert find_dataset("cifar10", **find) == env / "cifar-10-jpeg-q75"
    fake_cifar(explicit, "cifar10")
    assert find_dataset("cifar10", path=explicit, **find) == \
        explicit / "cifar10"
    # an explicit path is the data set's own folder, or holds it
    assert find_dataset("cifar10", path=explicit / "cifar10", **find) == \
        explicit / "cifar10"


def test_explicit_path_is_the_only_place_looked(places, no_download):
    explicit, env, default = places
    fake_cifar(default)
    with pytest.raises(DataNotFoundError, match="looked for .* in "
                       f"{explicit / 'nowhere'} "):
        find_dataset("cifar10", path=explicit / "nowhere", profile="ci")


def test_exact_batches_come_before_the_jpeg_copy(places, no_download):
    _, _, default = places
    fake_cifar(default)
    (default / "cifar-10-batches-py").mkdir()
    (default / "cifar-10-batches-py" / "batches.meta").write_bytes(b"")
    assert find_dataset("cifar10", profile="ci") == \
        default / "cifar-10-batches-py"


def test_ci_uses_the_sample_and_never_downloads(places, no_download,
                                                tmp_path):
    assert find_dataset("cifar10", profile="ci") == SAMPLE_ROOT / "cifar10"
    assert find_dataset("imagenette", profile="ci") == \
        SAMPLE_ROOT / "imagenette2-224"
    # download=True does not make ci download, not even into a path
    assert find_dataset("cifar10", profile="ci", download=True) == \
        SAMPLE_ROOT / "cifar10"
    with pytest.raises(DataNotFoundError, match=r"\(download is off\)"):
        find_dataset("cifar10", path=tmp_path / "x", profile="ci",
                     download=True)


def test_photos_and_class_index_always_come_from_somewhere(
        places, no_download):
    _, _, default = places
    for profile in ("ci", "cpu", "gpu"):
        assert find_dataset("imagenet-samples", profile=profile) == \
            SAMPLE_ROOT / "imagenet-samples"
        assert find_dataset("class-index", profile=profile) == \
            SAMPLE_ROOT / "imagenet_class_index.json"
    (default / "imagenet_class_index.json").write_text("{}")
    assert find_dataset("class-index", profile="cpu") == \
        default / "imagenet_class_index.json"


def test_cpu_does_not_fall_back_to_the_sample(places, no_download):
    _, _, default = places
    with pytest.raises(DataNotFoundError) as err:
        find_dataset("cifar10", profile="cpu", download=False)
    assert str(err.value) == (
        f"CIFAR-10 not found: looked for cifar-10-batches-py or cifar10 or "
        f"cifar-10-jpeg-q75 in {default} (download=False). Fetch it with "
        f"`python -m alexnet_lib fetch cifar10`, {TO_POINT}")


def test_profile_comes_from_the_environment(places, monkeypatch,
                                            no_download):
    monkeypatch.setenv("ALEXNET_PROFILE", "ci")
    assert find_dataset("cifar10") == SAMPLE_ROOT / "cifar10"
    monkeypatch.setenv("ALEXNET_PROFILE", "imagenet")
    with pytest.raises(DataNotFoundError, match=r"\(the imagenet profile "
                       r"downloads nothing\)"):
        find_dataset("cifar10")


def test_unknown_name(places):
    with pytest.raises(ValueError, match="unknown data set 'svhn'; choose "
                       "one of cifar10, imagenette, imagenet-samples, "
                       "class-index, mnist"):
        find_dataset("svhn")


# --- downloads --------------------------------------------------------------

class Recorder:
    """Stands in for a torchvision data set class; makes its folder."""

    def __init__(self, made):
        self.calls, self.made = [], made

    def __call__(self, root, **kwargs):
        self.calls.append((Path(root), kwargs))
        self.made(Path(root), kwargs)


def test_cpu_and_gpu_download_into_the_data_folder(places, monkeypatch):
    _, env, default = places
    cifar = Recorder(lambda root, kw: (root / "cifar-10-batches-py").mkdir())
    nette = Recorder(lambda root, kw: fake_imagenette(
        root / f"imagenette2-{kw['size'][:-2]}", (240, 160)))
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", cifar)
    monkeypatch.setattr(torchvision.datasets, "Imagenette", nette)
    assert find_dataset("cifar10", profile="cpu") == \
        default / "cifar-10-batches-py"
    assert cifar.calls == [(default, {"train": True, "download": True})]
    monkeypatch.setenv("ALEXNET_DATA", str(env))
    assert find_dataset("imagenette", profile="cpu") == \
        env / "imagenette2-160"
    # gpu runs need more than 160 px: the 320 px release comes too
    assert find_dataset("imagenette", profile="gpu") == \
        env / "imagenette2-320"
    assert nette.calls == [
        (env, {"split": "train", "size": "160px", "download": True}),
        (env, {"split": "train", "size": "320px", "download": True})]
    assert find_dataset("imagenette", profile="cpu") == \
        env / "imagenette2-160"
    assert len(nette.calls) == 2  # found now, not downloaded again


def test_offline_message(places, monkeypatch):
    _, env, default = places

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] no network")
    monkeypatch.setattr(torchvision.datasets, "Imagenette", offline)
    monkeypatch.setenv("ALEXNET_DATA", str(env))
    with pytest.raises(DataNotFoundError) as err:
        find_dataset("imagenette", profile="cpu")
    assert str(err.value) == (
        f"Imagenette not found: looked for imagenette2-160 or "
        f"imagenette2-224 or imagenette2-320 or imagenette2 or imagenet or "
        f"ILSVRC2012 in {env}, {default} (downloading it into {env} failed: "
        f"URLError: <urlopen error [Errno -3] no network>; this machine may "
        f"be offline). Fetch it with `python -m alexnet_lib fetch "
        f"imagenette --size 160px`, {TO_POINT}")


# --- the fetch command ------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["fetch"], "name the data set to fetch: cifar10 or imagenette or "
                "mnist"),
    (["fetch", "svhn"], "cannot fetch 'svhn': choose cifar10 or "
                        "imagenette or mnist"),
    (["fetch", "cifar10", "--size", "160px"], "--size is for imagenette; "
     "cifar10 has one size"),
    (["fetch", "mnist", "--size", "160px"], "--size is for imagenette; "
     "mnist has one size"),
    (["fetch", "imagenette", "--size", "224px"], "--size must be one of "
     "160px, 320px, full, got '224px'"),
])
def test_fetch_bad_input_is_one_line(argv, message, capsys, no_download):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"error: {message}\n")


def test_fetch_into_a_file_is_one_line(tmp_path, capsys, no_download):
    (tmp_path / "f").write_text("")
    assert main(["fetch", "cifar10", "--data", str(tmp_path / "f")]) == 2
    assert capsys.readouterr().err == (
        f"error: --data {tmp_path / 'f'} is a file: pass the folder to "
        f"download into\n")


def test_fetch_offline_is_one_line(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] no network")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    assert main(["fetch", "cifar10", "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"error: could not download CIFAR-10 into {tmp_path} (<urlopen "
        f"error [Errno -3] no network>). This machine may be offline: on "
        f"one with internet run `python -m alexnet_lib fetch cifar10`, copy "
        f"the folder it makes into {tmp_path}, or point ALEXNET_DATA (or "
        f"--data) at the folder that holds it.\n")


def test_fetch_imagenette(tmp_path, capsys, monkeypatch):
    nette = Recorder(lambda root, kw: fake_imagenette(
        root / "imagenette2-320", (480, 320)))
    monkeypatch.setattr(torchvision.datasets, "Imagenette", nette)
    assert main(["fetch", "imagenette", "--size", "320px", "--data",
                 str(tmp_path)]) == 0
    assert nette.calls == [(tmp_path, {"split": "train", "size": "320px",
                                       "download": True})]
    assert capsys.readouterr().out == (
        f"Imagenette, 320 px release (6 train / 4 val): "
        f"{tmp_path / 'imagenette2-320'}\n")


# --- both Imagenette layouts ------------------------------------------------

@pytest.mark.parametrize("folder, size, layout, line", [
    ("imagenette2-224", (224, 224), "224px-squashed",
     "Imagenette, 224 px copy (6 train / 4 val)"),
    ("imagenette2-160", (213, 160), "160px",
     "Imagenette, 160 px release (6 train / 4 val)"),
    ("imagenette2-320", (320, 480), "320px",
     "Imagenette, 320 px release (6 train / 4 val)"),
    ("imagenette2", (500, 375), "full",
     "Imagenette, full-size release (6 train / 4 val)"),
])
def test_imagenette_layouts(places, folder, size, layout, line,
                            no_download):
    _, _, default = places
    path = fake_imagenette(default / folder, size)
    assert find_dataset("imagenette", profile="cpu") == path
    assert imagenette_layout(path) == layout
    assert describe_dataset("imagenette", path) == line


def test_gpu_skips_the_160px_release(places, no_download):
    _, _, default = places
    fake_imagenette(default / "imagenette2-160", (213, 160))
    with pytest.raises(DataNotFoundError, match="looked for imagenette2-320 "
                       "or imagenette2 or imagenette2-224 or imagenet or "
                       "ILSVRC2012 in"):
        find_dataset("imagenette", profile="gpu", download=False)
    fake_imagenette(default / "imagenette2-224", (224, 224))
    assert find_dataset("imagenette", profile="gpu") == \
        default / "imagenette2-224"
    assert find_dataset("imagenette", profile="cpu") == \
        default / "imagenette2-160"


# --- describe_dataset -------------------------------------------------------

def test_describe_the_sample():
    lines = {name: describe_dataset(name, find_dataset(name, profile="ci"))
             for name in ("cifar10", "imagenette", "imagenet-samples",
                          "class-index")}
    assert lines == {
        "cifar10": "CIFAR-10, shipped sample (1,017 exact test / 2,000 "
                   "train images)",
        "imagenette": "Imagenette, shipped sample (500 train / 100 val, "
                      "224 px copy)",
        "imagenet-samples": "ImageNet sample photos (24 photos, shipped "
                            "sample)",
        "class-index": "ImageNet class index (1,000 classes, shipped "
                       "sample)"}


def test_describe_full_copies_without_paths(tmp_path):
    root = fake_cifar(tmp_path)
    (root / "train" / "cat" / "0000.jpg").write_bytes(b"")
    assert describe_dataset("cifar10", root) == \
        "CIFAR-10, JPEG q75 copy (1 train / 0 test)"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "batches.meta").write_bytes(b"")
    assert describe_dataset("cifar10", tmp_path / "b") == \
        "CIFAR-10, torchvision's exact batches (50,000 train / 10,000 test)"


@pytest.mark.full_data
def test_describe_the_full_data(full_data_dir, monkeypatch):
    monkeypatch.setenv("ALEXNET_DATA", str(full_data_dir))
    lines = [describe_dataset(n, find_dataset(n, profile="cpu",
                                              download=False))
             for n in ("cifar10", "imagenette")]
    assert lines == [
        "CIFAR-10, JPEG q75 copy (50,000 train / 10,000 test)",
        "Imagenette, 224 px copy (9,469 train / 2,000 val)"]
