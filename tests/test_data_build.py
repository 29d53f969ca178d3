"""data.build: choosing the mean that §2 subtracts."""
import torch

from alexnet_lib.data.build import select_mean


def test_select_mean_picks_the_paper_mean_or_a_named_deviation():
    image = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(3, 4, 4)
    assert select_mean("pixel", image) is image  # §2: the mean image
    channel = select_mean("channel", image)
    assert channel.shape == (3, 1, 1)
    assert torch.equal(channel.flatten(), image.mean((1, 2)))
    assert torch.equal(select_mean("none", image), torch.zeros(3, 1, 1))
