import torch

from recast.sids.kmeans import kmeans, nearest
from recast.sids.residual import ResidualQuantizer


def _blobs(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    return (centres.repeat_interleave(25, dim=0) + 0.1 * torch.randn(100, 2, generator=g))


def test_kmeans_finds_separated_clusters_and_is_repeatable():
    points = _blobs()
    centres = kmeans(points, 4, torch.Generator().manual_seed(3))
    labels = nearest(points, centres)
    assert sorted(torch.bincount(labels, minlength=4).tolist()) == [25, 25, 25, 25]
    assert all(len(set(labels[i : i + 25].tolist())) == 1 for i in range(0, 100, 25))
    assert torch.equal(centres, kmeans(points, 4, torch.Generator().manual_seed(3)))


def test_every_codeword_is_used_when_points_allow_it():
    points = _blobs()
    centres = kmeans(points, 20, torch.Generator().manual_seed(0))
    assert torch.bincount(nearest(points, centres), minlength=20).min() >= 1


def test_fewer_distinct_points_than_codewords_is_not_an_error():
    points = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    centres = kmeans(points, 6, torch.Generator().manual_seed(0))
    assert centres.shape == (6, 2) and torch.isfinite(centres).all()
    assert set(nearest(points, centres).tolist()) <= set(range(6))


def test_spherical_centres_are_unit_vectors():
    points = torch.nn.functional.normalize(_blobs() + 1.0, dim=1)
    centres = kmeans(points, 5, torch.Generator().manual_seed(0), spherical=True)
    assert torch.allclose(centres.norm(dim=1), torch.ones(5), atol=1e-5)


def test_a_vectors_code_does_not_depend_on_what_it_is_encoded_with():
    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(600, 16, generator=g)  # more rows than one distance block
    quantizer = ResidualQuantizer.fit(vectors, (8, 16, 16), torch.Generator().manual_seed(1), iterations=20)
    together = quantizer.encode(vectors)
    one_by_one = torch.cat([quantizer.encode(vectors[i : i + 1]) for i in range(0, 600, 37)])
    assert torch.equal(together[::37], one_by_one)
    assert torch.equal(quantizer.encode(vectors.flip(0)).flip(0), together)
