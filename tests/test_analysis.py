"""§6.1 analysis: kernel grids, the colour statistic, top-5, neighbours."""
import pytest
import torch
from torch.testing import assert_close

from alexnet_lib.analysis import (colour_fraction, colour_fraction_by_tower,
                                  kernel_grid, nearest_neighbours,
                                  neighbour_agreement, normalise_kernels,
                                  penultimate_features, top_k)
from alexnet_lib.models import AlexNet


def test_colour_fraction_of_grey_colour_and_random_kernels():
    torch.manual_seed(0)
    pattern = torch.randn(4, 1, 11, 11)
    grey = pattern.expand(4, 3, 11, 11)  # R = G = B
    assert_close(colour_fraction(grey), torch.zeros(4))
    # colour planes summing to zero everywhere: pure colour contrast
    opponent = pattern * torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1)
    assert_close(colour_fraction(opponent), torch.ones(4))
    # i.i.d. weights: 2 of the 3 colour directions are not grey
    rand = colour_fraction(torch.randn(20_000, 3, 11, 11))
    assert abs(rand.mean().item() - 2 / 3) < 0.002
    # the scale of a kernel does not matter
    assert_close(colour_fraction(7 * opponent + 3 * grey),
                 colour_fraction(opponent + 3 / 7 * grey))


def test_colour_fraction_by_tower_splits_the_paper_net_48_48():
    net = AlexNet()
    towers = colour_fraction_by_tower(net.conv1.weight)
    assert [t.shape for t in towers] == [torch.Size([48])] * 2
    assert_close(torch.cat(towers), colour_fraction(net.conv1.weight))


def test_kernel_grid_shapes_and_range():
    w = torch.randn(96, 3, 11, 11)
    grids = kernel_grid(w, groups=2, nrow=8, padding=1)
    # 48 kernels in 6 rows of 8, 11 pixels + 1 of padding each side
    assert [g.shape for g in grids] == [torch.Size([3, 73, 97])] * 2
    norm = normalise_kernels(w)
    assert norm.amin(dim=(1, 2, 3)).abs().max() < 1e-6
    assert (norm.amax(dim=(1, 2, 3)) - 1).abs().max() < 1e-6
    assert len(kernel_grid(w, groups=1)) == 1


def test_kernel_functions_reject_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(N, 3, k, k\).*conv1.weight"):
        colour_fraction(torch.randn(8, 4, 3, 3))
    with pytest.raises(ValueError, match="do not split into 2 towers"):
        kernel_grid(torch.randn(5, 3, 3, 3), groups=2)


def test_top_k_is_sorted_softmax():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0, 0.5]])
    probs, classes = top_k(logits, k=5)
    assert classes.tolist() == [[1, 3, 2, 5, 0]]
    assert_close(probs, logits.softmax(1)[:, [1, 3, 2, 5, 0]])
    probs, classes = top_k(logits[:, :3], k=5)  # fewer classes than k
    assert classes.shape == (1, 3)
    with pytest.raises(ValueError, match="expected \\(B, classes\\)"):
        top_k(torch.zeros(3))


def test_nearest_neighbours_by_hand():
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    queries = torch.tensor([[0.0, 0.0], [3.0, 3.0]])
    dist, idx = nearest_neighbours(queries, bank, k=3)
    assert idx.tolist() == [[0, 2, 3], [1, 3, 2]]
    assert_close(dist[0], torch.tensor([0.0, 1.0, 2.0]))
    assert_close(dist[1, 0], torch.tensor(1.0))
    labels = torch.tensor([0, 1, 0, 1])
    # query 0 (label 0): 0, 0, 1; query 1 (label 1): 1, 1, 0
    assert neighbour_agreement(torch.tensor([0, 1]), labels, idx) == 4 / 6
    images = torch.randn(5, 3, 4, 4)  # images compare pixel by pixel
    assert nearest_neighbours(images[:2], images, k=1)[1].tolist() == [
        [0], [1]]
    with pytest.raises(ValueError, match="compare like with like"):
        nearest_neighbours(torch.zeros(1, 3), bank)
    with pytest.raises(ValueError, match="k=6 neighbours asked from a "
                                         "bank of 4 rows"):
        nearest_neighbours(queries, bank, k=6)


def test_penultimate_features_are_fc7_in_eval_mode():
    torch.manual_seed(0)
    net = AlexNet(num_classes=10, input_size=112).train()
    x = torch.randn(6, 3, 112, 112)
    feats = penultimate_features(net, [(x[:4], None), (x[4:], None)])
    assert feats.shape == (6, 4096)
    assert net.training  # mode restored
    with torch.no_grad():
        assert_close(feats, net.eval().penultimate(x))


def test_confident_mistakes_and_the_ensemble_average():
    from alexnet_lib.analysis import average_probabilities, confident_mistakes
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7],
                          [0.95, 0.05]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    # wrong: image 1 (says 1 at 0.8), 2 (says 0 at 0.6), 4 (0 at 0.95)
    got = confident_mistakes(probs, labels, k=2)
    assert [(i, c) for i, c, _ in got] == [(4, 0), (1, 1)]
    assert got[0][2] == pytest.approx(0.95)
    assert len(confident_mistakes(probs, labels)) == 3
    other = torch.tensor([[0.5, 0.5]] * 5)
    mean = average_probabilities([probs, other])
    torch.testing.assert_close(mean[0], torch.tensor([0.7, 0.3]))
    with pytest.raises(ValueError, match="same shape"):
        average_probabilities([probs, other[:4]])
    with pytest.raises(ValueError, match="N labels"):
        confident_mistakes(probs, labels[:4])


def test_tower_gap_p_value_of_separated_and_of_mixed_towers():
    from alexnet_lib.analysis import tower_gap_p_value
    apart = tower_gap_p_value(torch.full((48,), 0.3), torch.full((48,), 0.6),
                              permutations=999)
    assert apart == 1 / 1000  # no split but the towers' own is as far
    g = torch.Generator().manual_seed(0)
    same = torch.rand(96, generator=g)
    p = tower_gap_p_value(same[:48], same[48:], permutations=999)
    assert 0.05 < p <= 1  # one random split: far from significant
    # by hand on 4 values: |mean(1,2) - mean(3,4)| = 2 is the largest
    # gap of the 6 splits; 2 of them ({1,2} and {3,4}) reach it
    p4 = tower_gap_p_value(torch.tensor([1., 2.]), torch.tensor([3., 4.]),
                           permutations=20_000)
    assert p4 == pytest.approx(1 / 3, abs=0.01)
