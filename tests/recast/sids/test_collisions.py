import torch

from recast.sids.collisions import spread

# Three unit codewords on a circle at 0, 90 and 180 degrees.
CODEBOOK = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])


def _unit(degrees: float) -> list[float]:
    r = torch.deg2rad(torch.tensor(degrees))
    return [float(torch.cos(r)), float(torch.sin(r))]


def test_the_nearest_keeps_the_codeword_and_the_other_moves_to_the_nearest_free_one():
    codes = torch.tensor([[0, 0], [0, 0], [1, 2]])
    directions = torch.tensor([_unit(30), _unit(10), _unit(170)])
    out = spread(codes, directions, CODEBOOK)
    assert out[1].tolist() == [0, 0]  # 10 degrees: nearer codeword 0 than the item at 30
    assert out[0].tolist() == [0, 1]  # 30 degrees moves to the nearest free codeword (90)
    assert out[2].tolist() == [1, 2]  # another prefix: untouched


def test_items_that_do_not_collide_never_move():
    # Item 2 holds codeword 1 alone; colliding items 0 and 1 are both nearer codeword 1 than to 2 but may not take it.
    codes = torch.tensor([[5, 0], [5, 0], [5, 1]])
    directions = torch.tensor([_unit(40), _unit(44), _unit(89)])
    out = spread(codes, directions, CODEBOOK)
    assert out[2].tolist() == [5, 1]
    assert out[0].tolist() == [5, 0] and out[1].tolist() == [5, 2]


def test_a_prefix_with_more_items_than_codewords_keeps_its_surplus_colliding():
    codes = torch.zeros(4, 2, dtype=torch.long)
    directions = torch.tensor([_unit(0), _unit(1), _unit(2), _unit(3)])
    out = spread(codes, directions, CODEBOOK)
    assert sorted(out[:, 1].tolist()) == [0, 0, 1, 2]
    assert out[0].tolist() == [0, 0]  # exactly on codeword 0
