"""The deconvnet of Zeiler and Fergus (ZFNet §2.1), attached to AlexNet.

A deconvnet maps one activation of a trained convnet back to pixels with
the network's own pieces in reverse, without learning anything:

* **unpool**: max-pooling keeps one value per window; the forward pass
  records where it was (the *switches*) and the reverse pass puts the
  signal back there. With AlexNet's overlapping windows one position can
  be the maximum of several windows; the signals then add up, which is
  what the gradient of max-pooling does too.
* **rectify**: a ReLU on the reconstructed signal, so that it stays
  positive like the feature maps it reconstructs.
* **filter**: the layer's own filters, transposed (flipped vertically and
  horizontally, input and output channels swapped): the transposed
  convolution. The bias is not used.

Response normalisation (§3.3) has no inverse; ``lrn="skip"`` (the
default) passes the signal through unchanged, ``lrn="scale"`` divides
it by the same factor ``(k + alpha * sum a^2)^beta`` the forward pass
divided by at that position, a fixed per-position rescaling that ignores
the coupling between channels.

The reverse path of AlexNet's layer L, from the ReLU output of conv L
(before LRN and pooling) down to the image::

    filter(conv L) -> [unpool(pool L-1) -> un-LRN] -> rectify
    -> filter(conv L-1) -> ... -> filter(conv1) -> pixels

``Deconvnet(model).project(x, "conv3", channel=7)`` keeps, for every
image of the batch, the strongest activation of map 7 of conv3 (all
others set to zero, as in the paper) and returns its projection to
pixel space, (B, 3, S, S).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Deconvnet", "Recording", "LAYERS", "unpool", "transposed_conv",
           "with_conv_weights", "occlusion", "receptive_field",
           "top_activations", "receptive_box", "for_display",
           "top_projections", "grid_of", "feature_evolution"]

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
# What lies between the ReLU of conv i and conv i+1 in AlexNet (§3.5):
# LRN and pooling after conv1 and conv2, nothing after conv3 and conv4.
_BETWEEN = {"conv1": ("lrn1", "pool1"), "conv2": ("lrn2", "pool2"),
            "conv3": (None, None), "conv4": (None, None)}


@dataclass
class Recording:
    """What the forward pass keeps for the reverse pass.

    ``maps[name]``: the ReLU output of conv ``name`` (B, C, H, W);
    ``switches[name]``: the argmax positions of the pooling after it
    (flat indices into its input, as ``max_pool2d`` returns them);
    ``pooled_from[name]``: the shape of that pooling's input;
    ``lrn_scale[name]``: the factor the LRN after it divided by.
    """
    maps: dict
    switches: dict
    pooled_from: dict
    lrn_scale: dict
    input_shape: torch.Size


def unpool(signal: torch.Tensor, switches: torch.Tensor,
           shape: torch.Size) -> torch.Tensor:
    """Put each pooled value back where its window's maximum was.

    ``signal`` and ``switches`` are (B, C, h, w); the result has the
    pooling input's ``shape`` (B, C, H, W) and is zero elsewhere. Values
    whose windows overlap on one maximum add up.
    """
    b, c = signal.shape[:2]
    out = signal.new_zeros(b, c, shape[-2] * shape[-1])
    out.scatter_add_(2, switches.flatten(2), signal.flatten(2))
    return out.view(b, c, shape[-2], shape[-1])


def transposed_conv(signal: torch.Tensor, conv: nn.Conv2d,
                    input_shape: torch.Size) -> torch.Tensor:
    """Filter with ``conv``'s filters transposed (flipped, channels
    swapped): the map from conv's output space back to its input's,
    of ``input_shape``; no bias."""
    return torch.nn.grad.conv2d_input(
        input_shape, conv.weight.to(signal.dtype), signal,
        stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
        groups=conv.groups)


class Deconvnet:
    """ZFNet's deconvnet on a trained ``AlexNet`` (any ``groups``) or
    ``ZFNet`` (normalisation after pooling: ``norm_after_pool``).

    The model is used as it is (eval mode, no gradients); its layers
    are read by name: pad1, conv1..conv5, relu1..relu5, lrn1, lrn2,
    pool1, pool2. ``lrn``: "skip" or "scale" (module docstring).
    """

    def __init__(self, model: nn.Module, lrn: str = "skip"):
        if lrn not in ("skip", "scale"):
            raise ValueError(f"lrn must be 'skip' or 'scale', got {lrn!r}")
        missing = [n for n in LAYERS if not isinstance(
            getattr(model, n, None), nn.Conv2d)]
        if missing:
            raise ValueError(
                f"the deconvnet needs the five conv layers of AlexNet; "
                f"this model lacks {', '.join(missing)} (a network with "
                f"a removed layer cannot be projected)")
        self.model, self.lrn = model.eval(), lrn

    @torch.no_grad()
    def record(self, x: torch.Tensor) -> Recording:
        """Run the convnet on (B, 3, S, S) images, keeping the ReLU
        output of every conv layer, the pooling switches and the LRN
        factors."""
        m = self.model
        maps, switches, shapes, scales = {}, {}, {}, {}
        h = m.pad1(x)
        for i, name in enumerate(LAYERS, start=1):
            h = getattr(m, f"relu{i}")(getattr(m, name)(h))
            maps[name] = h
            lrn_name, pool_name = _BETWEEN.get(name, (None, None))
            if lrn_name is None:
                continue
            pool, lrn = getattr(m, pool_name), getattr(m, lrn_name)
            after_pool = getattr(m, "norm_after_pool", False)  # ZFNet
            pooled_in = h if after_pool else lrn(h)
            shapes[name] = pooled_in.shape
            pooled, switches[name] = F.max_pool2d(
                pooled_in, pool.kernel_size, pool.stride, pool.padding,
                pool.dilation, pool.ceil_mode, return_indices=True)
            before = pooled if after_pool else h
            normed = lrn(pooled) if after_pool else pooled_in
            # the factor LRN divided by, where the map is not zero
            scales[name] = torch.where(before != 0, before / normed.where(
                normed != 0, torch.ones_like(normed)),
                torch.ones_like(before))
            h = normed if after_pool else pooled
        return Recording(maps, switches, shapes, scales, x.shape)

    def strongest(self, recording: Recording, layer: str,
                  channel: int) -> torch.Tensor:
        """The layer's maps with everything zeroed except, per image,
        the strongest activation of ``channel`` (the paper's "set all
        other activations in the layer to zero")."""
        maps = recording.maps[_check_layer(layer)]
        if not 0 <= channel < maps.shape[1]:
            raise ValueError(f"{layer} has {maps.shape[1]} feature maps; "
                             f"channel {channel} does not exist")
        one = maps[:, channel].flatten(1)  # (B, H*W)
        keep = torch.zeros_like(one)
        top = one.argmax(1, keepdim=True)
        keep.scatter_(1, top, one.gather(1, top))
        out = torch.zeros_like(maps)
        out[:, channel] = keep.view_as(maps[:, channel])
        return out

    @torch.no_grad()
    def reconstruct(self, recording: Recording, layer: str,
                    signal: torch.Tensor) -> torch.Tensor:
        """Project ``signal`` (shaped like conv ``layer``'s maps) down to
        pixel space: (B, 3, S, S) for the unpadded input."""
        m = self.model
        top = LAYERS.index(_check_layer(layer))
        h = signal
        for i in range(top, -1, -1):
            name = LAYERS[i]
            below = (recording.maps[LAYERS[i - 1]].shape if i else
                     m.pad1(torch.empty(recording.input_shape,
                                        device="meta")).shape)
            conv = getattr(m, name)
            if i == 0:
                h = transposed_conv(h, conv, below)
                break
            below_name = LAYERS[i - 1]
            lrn_name, _ = _BETWEEN[below_name]
            if lrn_name is not None:  # conv i reads pooled, normed maps
                h = transposed_conv(h, conv,
                                    recording.switches[below_name].shape)
                after_pool = getattr(m, "norm_after_pool", False)
                if self.lrn == "scale" and after_pool:  # ZFNet's order
                    h = h / recording.lrn_scale[below_name]
                h = unpool(h, recording.switches[below_name],
                           recording.pooled_from[below_name])
                if self.lrn == "scale" and not after_pool:
                    h = h / recording.lrn_scale[below_name]
            else:
                h = transposed_conv(h, conv, below)
            h = F.relu(h)  # rectify
        s = recording.input_shape
        return h[..., :s[-2], :s[-1]]  # drop conv1's padding

    def project(self, x: torch.Tensor, layer: str, channel: int
                ) -> torch.Tensor:
        """The strongest activation of ``channel`` in ``layer`` for each
        image of ``x``, projected to pixels: (B, 3, S, S)."""
        recording = self.record(x)
        return self.reconstruct(recording, layer,
                                self.strongest(recording, layer, channel))


def _check_layer(layer: str) -> str:
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {', '.join(LAYERS)}, got "
                         f"{layer!r}")
    return layer


def with_conv_weights(model: nn.Module, weights: dict) -> nn.Module:
    """A copy of ``model`` with its conv weights and biases replaced by
    a training snapshot (``runs.load_snapshots(run)[epoch]``): the
    network as it was after that epoch, up to pool5 (ZFNet's feature
    evolution, Fig. 4, looks no higher)."""
    import copy
    snap = copy.deepcopy(model).eval()
    state = snap.state_dict()
    unknown = sorted(set(weights) - set(state))
    if unknown:
        raise ValueError(f"the snapshot has weights this model lacks: "
                         f"{', '.join(unknown)}")
    for key, value in weights.items():
        if state[key].shape != value.shape:
            raise ValueError(f"{key}: the snapshot's shape "
                             f"{tuple(value.shape)} is not the model's "
                             f"{tuple(state[key].shape)}")
        state[key] = value.to(state[key].dtype)
    snap.load_state_dict(state)
    return snap


@torch.no_grad()
def occlusion(model: nn.Module, image: torch.Tensor, label: int,
              size: int, stride: int, fill: float = 0.0,
              batch: int = 64) -> dict[str, torch.Tensor]:
    """ZFNet §4.2: slide a ``size``-pixel square of value ``fill`` (0 is
    the mean grey of a mean-subtracted image) over ``image`` (3, S, S)
    and record, for every position of its top-left corner on a grid of
    ``stride``, the probability of ``label``, the most probable class,
    and the total activation of the conv5 map that is strongest on the
    unoccluded image. Returns "probability", "predicted" and "activity"
    ((P, P) each, P positions per axis) and "channel" (that map)."""
    s = image.shape[-1]
    if not 0 < size <= s or stride < 1:
        raise ValueError(f"the occluder must fit the {s}-pixel image and "
                         f"move by >= 1 pixel: size={size}, "
                         f"stride={stride}")
    model = model.eval()
    record = Deconvnet(model).record(image[None])
    channel = int(record.maps["conv5"][0].sum((1, 2)).argmax())
    starts = list(range(0, s - size + 1, stride))
    corners = [(y, x) for y in starts for x in starts]
    probs, preds, acts = [], [], []
    for i in range(0, len(corners), batch):
        chunk = corners[i:i + batch]
        x = image.expand(len(chunk), *image.shape).clone()
        for j, (y0, x0) in enumerate(chunk):
            x[j, :, y0:y0 + size, x0:x0 + size] = fill
        p = model(x).float().softmax(1)
        probs.append(p[:, label])
        preds.append(p.argmax(1))
        conv5 = Deconvnet(model).record(x).maps["conv5"]
        acts.append(conv5[:, channel].sum((1, 2)))
    n = len(starts)
    return {"probability": torch.cat(probs).view(n, n),
            "predicted": torch.cat(preds).view(n, n),
            "activity": torch.cat(acts).view(n, n), "channel": channel}


def receptive_field(model: nn.Module, layer: str) -> tuple[int, int, int]:
    """(size, stride, padding) in input pixels of one unit of ``layer``'s
    maps: unit (i, j) sees the square of side ``size`` whose top-left
    corner is at (i * stride - padding, j * stride - padding), part of
    it possibly outside the image."""
    size, jump, pad = 1, 1, 0
    chain = []
    for i, name in enumerate(LAYERS[:LAYERS.index(_check_layer(layer)) + 1]):
        if i in (1, 2):  # the pooling before conv2 and conv3
            pool = getattr(model, f"pool{i}")
            chain.append((pool.kernel_size, pool.stride, pool.padding))
        conv = getattr(model, name)
        chain.append((conv.kernel_size[0], conv.stride[0],
                      conv.padding[0]))
    for k, s, p in chain:
        size += (k - 1) * jump
        pad += p * jump
        jump *= s
    return size, jump, pad


@torch.no_grad()
def top_activations(model: nn.Module, batches, chosen: dict[str, list[int]],
                    k: int = 9) -> dict[str, dict[int, list[tuple]]]:
    """ZFNet Fig. 2's selection: for each layer of ``chosen`` and each of
    its channels, the ``k`` strongest activations over all images of
    ``batches`` (an iterable of (B, 3, S, S) tensors), at most one per
    image, as (value, image index, row, column), strongest first. One
    forward pass serves every layer."""
    deconv = Deconvnet(model)
    found = {layer: {c: [] for c in channels}
             for layer, channels in chosen.items()}
    offset = 0
    for x in batches:
        maps_of = deconv.record(x).maps
        for layer, channels in chosen.items():
            maps = maps_of[_check_layer(layer)]
            w = maps.shape[-1]
            for c in channels:
                values, where = maps[:, c].flatten(1).max(1)
                found[layer][c] = sorted(
                    found[layer][c] + [
                        (float(v), offset + b, int(p) // w, int(p) % w)
                        for b, (v, p) in enumerate(zip(values, where))],
                    key=lambda t: (-t[0], t[1]))[:k]
        offset += len(x)
    return found


def receptive_box(model: nn.Module, layer: str, row: int, col: int,
                  image_size: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the pixels unit (row, col) of
    ``layer`` sees, cut to the image (bottom and right exclusive): the
    image patch ZFNet's Fig. 2 shows beside each projection."""
    size, stride, pad = receptive_field(model, layer)
    top, left = row * stride - pad, col * stride - pad
    return (max(top, 0), max(left, 0), min(top + size, image_size),
            min(left + size, image_size))


def for_display(images: torch.Tensor) -> torch.Tensor:
    """Each (3, H, W) image of a batch scaled on its own to [0, 1],
    all three colours together (projections are signed and tiny)."""
    flat = images.flatten(1)
    low = flat.min(1).values[:, None, None, None]
    high = flat.max(1).values[:, None, None, None]
    return (images - low) / (high - low).clamp_min(1e-12)


def top_projections(deconv: "Deconvnet", inputs: torch.Tensor,
                    images: torch.Tensor, top: list[tuple], layer: str,
                    channel: int) -> tuple[list, list]:
    """Fig. 2's pair for one map: (projections, patches), two lists of
    (3, h, w) images in [0, 1], each cut to the unit's receptive field.
    ``top`` is the map's list from :func:`top_activations`; ``inputs``
    the network inputs it was found on, ``images`` the same photos as
    uint8 (what the patches show)."""
    idx = [t[1] for t in top]
    proj = for_display(deconv.project(inputs[idx], layer, channel))
    shown, patches = [], []
    for p, (_, i, r, c) in zip(proj, top):
        t, left, b, right = receptive_box(deconv.model, layer, r, c,
                                          inputs.shape[-1])
        shown.append(p[:, t:b, left:right])
        patches.append(images[i][:, t:b, left:right].float() / 255)
    return shown, patches


def grid_of(images: list[torch.Tensor], nrow: int = 3,
            padding: int = 2) -> torch.Tensor:
    """(3, H, W) grid of (3, h, w) images of different sizes, each
    padded with white to the largest (the top-9 panels of Fig. 2)."""
    from torchvision.utils import make_grid
    h = max(i.shape[1] for i in images)
    w = max(i.shape[2] for i in images)
    padded = [F.pad(i, (0, w - i.shape[2], 0, h - i.shape[1]), value=1.0)
              for i in images]
    return make_grid(padded, nrow=nrow, padding=padding, pad_value=1.0)


@torch.no_grad()
def feature_evolution(model: nn.Module, snapshots: dict[int, dict],
                      images: torch.Tensor, chosen: dict[str, list[int]],
                      k: int = 9, batch: int = 100) -> dict[str, dict]:
    """ZFNet's Fig. 4, measured: the maps of ``chosen`` ({layer:
    channels}) at every training snapshot (``runs.load_snapshots``), on
    ``images`` (N, 3, S, S), network inputs. Per layer and epoch:
    "top", each channel's k strongest images (as :func:`top_activations`);
    "overlap", the share of those k images that are also among the last
    snapshot's, averaged over the channels (1: the map has settled);
    "weight_change", the distance of the layer's weights to the last
    snapshot's, relative to the latter.
    """
    epochs = sorted(snapshots)
    if not epochs:
        raise ValueError("no snapshots: train with --snapshot-epochs "
                         "(the full-size plan keeps 1, 2, 3, 5, 10, 20, 30)")
    tops = {e: top_activations(with_conv_weights(model, snapshots[e]),
                               images.split(batch), chosen, k)
            for e in epochs}
    result = {}
    for layer, channels in chosen.items():
        key = f"{layer}.weight"
        last_w = snapshots[epochs[-1]][key]
        final = {c: {t[1] for t in tops[epochs[-1]][layer][c]}
                 for c in channels}
        result[layer] = {
            "epochs": epochs,
            "top": {e: tops[e][layer] for e in epochs},
            "overlap": {e: sum(len({t[1] for t in tops[e][layer][c]}
                                   & final[c]) for c in channels)
                        / (k * len(channels)) for e in epochs},
            "weight_change": {e: float((snapshots[e][key] - last_w).norm()
                                       / last_w.norm()) for e in epochs}}
    return result
