"""The two-GPU network of §3.2 and Figure 2, one tower per device.

Each tower holds half the kernels of every conv layer and half the
neurons of fc6 and fc7. The towers exchange activations only where the
paper says the GPUs communicate: conv3 reads both towers' pool2 maps,
and fc6, fc7 and fc8 read both towers' outputs. fc8 lives on tower 0.

``AlexNet(groups=2)`` computes the same function on one device:
``TwoTowerAlexNet.from_grouped(m)`` and ``.to_grouped()`` convert the
weights exactly (every tower layer is the grouped layer's output rows
split in two). Both normalise each tower's maps on their own (see the
``AlexNet`` docstring for why).
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from alexnet_lib.layers import LocalResponseNorm, lrn_max_pool
from alexnet_lib.models.alexnet import (
    ACTIVATIONS, POOLINGS, AlexNet, check_input, check_options, conv1_pad,
    conv1_padding, dropout_layer, init_weights_, max_pool, pool5_side,
    response_norm)

__all__ = ["TwoTowerAlexNet", "default_devices"]

TOWER_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
_ALEXNET_OPTIONS = tuple(inspect.signature(AlexNet).parameters)


def default_devices() -> tuple[torch.device, torch.device]:
    """Two CUDA devices when there are two, else the CPU for both."""
    if torch.cuda.is_available() and torch.cuda.device_count() >= 2:
        return torch.device("cuda", 0), torch.device("cuda", 1)
    return torch.device("cpu"), torch.device("cpu")


class Tower(nn.Module):
    """Half of every layer: one GPU's part of Fig. 2. Per-image shapes
    for the paper's widths are in ``TwoTowerAlexNet``'s comments."""

    def __init__(self, o: dict, lrn_opts: dict):
        super().__init__()
        w1, w2, w3, w4, w5 = (w // 2 for w in o["widths"])
        fc = o["fc_width"] // 2
        act = ACTIVATIONS[o["activation"]]
        z, s = POOLINGS[o["pooling"]]
        norm = {**lrn_opts, "groups": 1}  # one tower's maps, on their own
        k1, s1 = o["conv1_kernel"], o["conv1_stride"]
        pad = conv1_padding(o["input_size"], k1, s1)
        self.pad1 = conv1_pad(pad)
        self.conv1 = nn.Conv2d(3, w1, k1, s1)
        self.relu1 = act()
        self.lrn1 = response_norm(o["lrn"], norm)
        self.pool1 = max_pool(o["pooling"])
        self.conv2 = nn.Conv2d(w1, w2, 5, padding=2)
        self.relu2 = act()
        self.lrn2 = response_norm(o["lrn"], norm)
        self.pool2 = max_pool(o["pooling"])
        self.conv3 = nn.Conv2d(2 * w2, w3, 3, padding=1)  # both towers
        self.relu3 = act()
        self.conv4 = nn.Conv2d(w3, w4, 3, padding=1)
        self.relu4 = act()
        self.conv5 = nn.Conv2d(w4, w5, 3, padding=1)
        self.relu5, self.pool5 = act(), max_pool(o["pooling"])
        side = pool5_side(o["input_size"] + pad, k1, s1, z, s)
        self.fc6 = nn.Linear(2 * w5 * side * side, fc)  # both towers
        self.relu6, self.drop6 = act(), dropout_layer(o["dropout"])
        self.fc7 = nn.Linear(2 * fc, fc)  # both towers
        self.relu7, self.drop7 = act(), dropout_layer(o["dropout"])

    @property
    def device(self) -> torch.device:
        return self.conv1.weight.device

    def lower(self, x):   # image -> this tower's pool2 maps
        x = self.relu1(self.conv1(self.pad1(x)))
        x = lrn_max_pool(self.lrn1, self.pool1, x)
        return lrn_max_pool(self.lrn2, self.pool2, self.relu2(self.conv2(x)))

    def upper(self, x):   # both towers' pool2 maps -> this tower's pool5
        x = self.relu4(self.conv4(self.relu3(self.conv3(x))))
        return self.pool5(self.relu5(self.conv5(x)))


class TwoTowerAlexNet(nn.Module):
    """Model-parallel AlexNet: ``towers[0]`` and ``towers[1]`` on
    ``devices[0]`` and ``devices[1]`` (default: two GPUs if present,
    else both on the CPU). Accepts AlexNet's options except ``groups``
    (always 2). Input and output live on tower 0's device.
    """

    def __init__(self, devices=None, **options):
        super().__init__()
        unknown = set(options) - set(_ALEXNET_OPTIONS) - {"groups"}
        if unknown:
            raise TypeError(f"TwoTowerAlexNet got unknown option(s) "
                            f"{sorted(unknown)}; it accepts devices and "
                            f"AlexNet's {', '.join(_ALEXNET_OPTIONS)}")
        if options.get("groups", 2) != 2:
            raise ValueError("TwoTowerAlexNet always has groups=2 (one "
                             "half per tower); use AlexNet(groups=1)")
        devices = devices or default_devices()
        if len(devices) != 2:
            raise ValueError(f"devices must name two devices, got {devices}")
        self.devices = tuple(torch.device(d) for d in devices)
        defaults = {n: p.default for n, p in inspect.signature(
            AlexNet).parameters.items()}
        o = {**defaults, **options, "groups": 2}
        lrn_opts = check_options(o["activation"], o["pooling"], 2,
                                 o["dropout"], o["widths"], o["init"],
                                 o["lrn_options"])
        if o["lrn"] and lrn_opts["groups"] != 2:
            raise ValueError("each tower normalises its own maps: "
                             "lrn_options groups must be 2 (the default)")
        self.options = {k: v for k, v in o.items() if k != "groups"}
        self.input_size, self.num_classes = o["input_size"], o["num_classes"]
        self.towers = nn.ModuleList([Tower(o, lrn_opts), Tower(o, lrn_opts)])
        self.fc8 = nn.Linear(o["fc_width"], o["num_classes"])
        init_weights_(self, o["init"], o["bias"])
        if self.fc8.weight.device.type != "meta":  # meta: counting only
            for tower, device in zip(self.towers, self.devices):
                tower.to(device)
            self.fc8.to(self.devices[0])

    def _both(self, parts, device):
        """Concatenate both towers' tensors on ``device``: a crossing."""
        return torch.cat([p.to(device) for p in parts], dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Both towers' pool5 maps on tower 0, (B, 256, 6, 6)."""
        return self._both(self._pool5(x), self.towers[0].device)

    def _pool5(self, x):
        check_input(x, self.input_size, type(self).__name__)
        low = [t.lower(x.to(t.device)) for t in self.towers]  # 128x13x13
        # crossing 1: conv3 reads both towers' pool2 maps (256x13x13)
        return [t.upper(self._both(low, t.device)) for t in self.towers]

    def _fc7(self, x):  # image -> each tower's fc7 output after ReLU
        h = [torch.flatten(p, 1) for p in self._pool5(x)]    # 2 x 4608
        # crossings 2 and 3: fc6 and fc7 read both towers
        h = [t.drop6(t.relu6(t.fc6(self._both(h, t.device))))
             for t in self.towers]                           # 2 x 2048
        return [t.relu7(t.fc7(self._both(h, t.device))) for t in self.towers]

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """Both towers' fc7 outputs after ReLU on tower 0, (B, 4096)."""
        return self._both(self._fc7(x), self.towers[0].device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = [t.drop7(h) for t, h in zip(self.towers, self._fc7(x))]
        return self.fc8(self._both(h, self.towers[0].device))  # crossing 4

    def cross_tower_bytes(self, input_size: int | None = None,
                          bytes_per_value: int = 4) -> dict[str, int]:
        """Bytes one image sends between the towers in a forward pass
        (float32 by default); the backward pass sends the same amount
        of gradients back. Keys: conv3, fc6, fc7, fc8, total."""
        o = self.options
        size = input_size or self.input_size
        k1, s1 = o["conv1_kernel"], o["conv1_stride"]
        z, s = POOLINGS[o["pooling"]]
        side2 = ((size + conv1_padding(size, k1, s1) - k1) // s1 + 1
                 - z) // s + 1
        side2 = (side2 - z) // s + 1                         # pool2 side
        side5 = (side2 - z) // s + 1                         # pool5 side
        half = [w // 2 for w in o["widths"]]
        values = {"conv3": 2 * half[1] * side2 ** 2,   # each way, pool2
                  "fc6": 2 * half[4] * side5 ** 2,     # each way, pool5
                  "fc7": 2 * (o["fc_width"] // 2),     # each way, fc6 out
                  "fc8": o["fc_width"] // 2}           # tower 1's fc7 out
        out = {k: v * bytes_per_value for k, v in values.items()}
        out["total"] = sum(out.values())
        return out

    @torch.no_grad()
    def grouped_state_dict(self, grad: bool = False) -> dict:
        """The weights (or with grad=True their gradients) laid out as
        ``AlexNet(groups=2)``'s parameters, on tower 0's device."""
        dev = self.towers[0].device
        pick = (lambda p: p.grad) if grad else (lambda p: p)
        out = {}
        for layer in TOWER_LAYERS:
            for kind in ("weight", "bias"):
                halves = [pick(getattr(getattr(t, layer), kind))
                          for t in self.towers]
                out[f"{layer}.{kind}"] = torch.cat(
                    [h.detach().to(dev) for h in halves], dim=0)
        for kind in ("weight", "bias"):
            out[f"fc8.{kind}"] = pick(getattr(self.fc8, kind)).detach()
        return out

    @classmethod
    @torch.no_grad()
    def from_grouped(cls, model: AlexNet, devices=None) -> TwoTowerAlexNet:
        """Split an ``AlexNet(groups=2)``'s weights into two towers."""
        if not isinstance(model, AlexNet) or model.groups != 2:
            raise ValueError("from_grouped needs an AlexNet with groups=2")
        lrn1 = model.lrn1
        if isinstance(lrn1, LocalResponseNorm) and lrn1.groups != 2:
            raise ValueError("this AlexNet normalises across both halves "
                             "(lrn groups=1): no two-tower equivalent")
        options = dict(model.options, init="torch")
        tt = cls(devices=devices, **options)
        tt.options["init"] = model.options["init"]
        for layer in TOWER_LAYERS:
            for kind in ("weight", "bias"):
                halves = getattr(getattr(model, layer), kind).chunk(2, dim=0)
                for t, h in zip(tt.towers, halves):
                    getattr(getattr(t, layer), kind).copy_(h)
        tt.fc8.load_state_dict(model.fc8.state_dict())
        return tt

    def to_grouped(self) -> AlexNet:
        """The same function as one ``AlexNet(groups=2)`` on tower 0's
        device."""
        model = AlexNet(**dict(self.options, init="torch"))
        model.options["init"] = self.options["init"]
        model.load_state_dict(self.grouped_state_dict())
        return model.to(self.towers[0].device)
