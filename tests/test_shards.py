"""prepare-shards: same images as the folder, resumable, corrupt listed."""
import json
import tarfile
import warnings

import pytest
import torch
from torchvision.io import encode_jpeg

from alexnet_lib import cli
from alexnet_lib.data import ImageNetFolder, ResizeCenterCrop
from alexnet_lib.data.errors import DataError
from alexnet_lib.data.files import decode_file
from alexnet_lib.data.shard_folder import ShardFolder
from alexnet_lib.data.shards import MANIFEST, _key, prepare_shards


def _by_key(root, split, subset=None):
    folder = ImageNetFolder(root, split, None, "skip", subset)
    return {_key(f): (f, label) for f, label in
            zip(folder.files, folder.labels)}


def test_small_images_are_stored_byte_for_byte(imagenette_dir, tmp_path):
    # Imagenette-224's shorter sides are 224 <= 256: nothing to resize
    out = tmp_path / "shards"
    manifest = prepare_shards(imagenette_dir, out, "val", shard_size=8,
                              subset=20, progress=False)
    assert sorted(manifest["shards"]) == [
        "val-000000.tar", "val-000001.tar", "val-000002.tar"]
    assert [e["count"] for _, e in sorted(manifest["shards"].items())] \
        == [8, 8, 4] and manifest["corrupt"] == []
    with tarfile.open(out / "val-000000.tar") as tar:
        names = tar.getnames()
    assert len(names) == 16 and names[0].endswith(".jpg") and \
        names[1] == names[0][:-4] + ".cls"  # WebDataset: a key's files
    source = _by_key(imagenette_dir, "val", 20)
    shards = ShardFolder(out)
    keys = [shards.key(i) for i in range(len(shards))]
    assert len(shards) == 20 and set(keys) == set(source)
    resize = ResizeCenterCrop(256)
    for i, key in enumerate(keys):
        path, label = source[key]
        assert shards.read(i) == open(path, "rb").read()
        img, got = shards[i]
        assert got == label
        assert torch.equal(resize(img), resize(decode_file(path)))


def _large_jpegs(folder, n=5):
    """~500x375 JPEGs (ImageNet's typical size), q90, and a bad file."""
    g = torch.Generator().manual_seed(0)
    for c, synset in enumerate(("n00000001", "n00000002")):
        for split in ("train", "val"):
            (folder / split / synset).mkdir(parents=True)
        for i in range(n):
            # smooth content, like photographs (noise would not compress)
            small = torch.randint(0, 256, (3, 12, 16), generator=g)
            img = torch.nn.functional.interpolate(
                small[None].float(), size=(375, 500), mode="bicubic",
                align_corners=False)[0].clamp(0, 255).to(torch.uint8)
            (folder / "train" / synset / f"img{i}.JPEG").write_bytes(
                encode_jpeg(img, quality=90).numpy().tobytes())
        (folder / "val" / synset / "v.JPEG").write_bytes(
            (folder / "train" / synset / "img0.JPEG").read_bytes())
    bad = folder / "train" / "n00000001" / "img9.JPEG"
    bad.write_bytes(b"\xff\xd8 truncated")
    return bad


def test_large_images_resized_to_256_corrupt_listed(tmp_path):
    bad = _large_jpegs(tmp_path / "data")
    with pytest.warns(UserWarning, match=f"skipping corrupt image {bad}"):
        manifest = prepare_shards(tmp_path / "data", tmp_path / "shards",
                                  shard_size=4, progress=False)
    assert manifest["images"] == 11 and manifest["corrupt"] == [str(bad)]
    assert sum(e["count"] for e in manifest["shards"].values()) == 10
    shards = ShardFolder(tmp_path / "shards")
    source = _by_key(tmp_path / "data", "train")
    resize = ResizeCenterCrop(256)
    diffs = []
    for i in range(len(shards)):
        img, label = shards[i]
        assert tuple(img.shape) == (3, 256, 341)  # 375x500 -> 256x341
        path, want = source[shards.key(i)]
        assert label == want
        a = resize(img).float()
        b = resize(decode_file(path)).float()
        diffs.append((a - b).abs())
    diff = torch.stack(diffs)
    # only the quality-95 re-encoding (with 4:2:0 chroma) differs:
    # about one grey level on average (1.08 measured), 9 at worst
    assert diff.mean() < 1.5 and diff.max() <= 12, (diff.mean(),
                                                    diff.max())


def test_an_interrupted_run_resumes_and_rewrites_only_the_bad_shard(
        tmp_path):
    _large_jpegs(tmp_path / "data")
    out = tmp_path / "shards"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare_shards(tmp_path / "data", out, shard_size=4,
                       progress=False)
        whole = {p.name: p.read_bytes() for p in out.glob("*.tar")}
        # as if killed after shard 1 was renamed but before it was
        # listed, and while shard 2 was being written
        manifest = json.loads((out / MANIFEST).read_text())
        del manifest["shards"]["train-000001.tar"]
        del manifest["finished"]
        (out / MANIFEST).write_text(json.dumps(manifest))
        (out / "train-000001.tar").write_bytes(b"half a shard")
        (out / "train-000002.tar.tmp").write_bytes(b"half a shard")
        with pytest.raises(DataError, match="unfinished: run "
                           "prepare-shards again"):
            ShardFolder(out)
        kept = (out / "train-000000.tar").stat().st_mtime_ns
        again = prepare_shards(tmp_path / "data", out, shard_size=4,
                               progress=False)
    assert (out / "train-000000.tar").stat().st_mtime_ns == kept
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == whole
    assert not list(out.glob("*.tmp"))
    assert len(again["shards"]) == 3 and len(ShardFolder(out)) == 10
    with pytest.raises(DataError, match="other settings .*quality.*use a "
                       "new --out folder"):
        prepare_shards(tmp_path / "data", out, shard_size=4, quality=80,
                       progress=False)


def test_cli_prepare_shards(tmp_path, capsys):
    _large_jpegs(tmp_path / "data", n=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli.main(["prepare-shards", "--data", str(tmp_path / "data"),
                         "--out", str(tmp_path / "s"), "--split", "val",
                         "--no-progress"])
    assert code == 0
    assert capsys.readouterr().out.strip().endswith(
        f"2 images in 1 shards, 0 corrupt skipped: {tmp_path / 's'}")
    code = cli.main(["prepare-shards", "--data", str(tmp_path / "none"),
                     "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and err == (
        f"error: data folder {tmp_path / 'none'} does not exist: pass "
        f"--data with the folder that holds train/ and val/\n")
