"""The sandwich rule's sampler: the largest path, the smallest, then random ones, in turn; the
turn and the random stream resume exactly; spaces without sizes are refused."""

from __future__ import annotations

import pytest
import torch

from nas.strategies.samplers import SandwichSampler
from supernet.spaces import build_space


def chosen(mix) -> list[int]:
    return [row[0] for row in mix.active["decisions"]]


def test_largest_smallest_then_random_in_turn():
    space = build_space("vit", (1, 8, 8), 10, C=8, layers=3)
    sampler = SandwichSampler(random_paths=2)
    sampler.setup(seed=0, space=space)
    alphas = {"decisions": torch.zeros(space.alpha_shape)}
    largest, smallest = space.extreme_paths()
    paths = [chosen(sampler(alphas)) for _ in range(8)]
    assert paths[0] == paths[4] == largest["decisions"]
    assert paths[1] == paths[5] == smallest["decisions"]
    embed = next(d for d in space.decisions if d.label == "embed_dim")
    row = space.decisions.index(embed)
    assert embed.choices[paths[0][row]] == max(embed.choices)
    assert embed.choices[paths[1][row]] == min(embed.choices)
    counts = space.choice_counts()
    for path in paths[2:4] + paths[6:8]:  # random paths stay among each row's real columns
        assert all(k < n for k, n in zip(path, counts, strict=True))


def test_the_turn_and_the_random_stream_resume():
    space = build_space("vit", (1, 8, 8), 10, C=8, layers=3)
    alphas = {"decisions": torch.zeros(space.alpha_shape)}
    a = SandwichSampler(random_paths=2)
    a.setup(seed=3, space=space)
    for _ in range(3):
        a(alphas)
    state = a.state_dict()
    b = SandwichSampler(random_paths=2)
    b.setup(seed=3, space=space)
    b.load_state_dict(state)
    assert [chosen(a(alphas)) for _ in range(5)] == [chosen(b(alphas)) for _ in range(5)]


def test_spaces_without_sizes_and_bad_options_are_refused():
    with pytest.raises(ValueError, match="search_space=nb201 has no largest and smallest"):
        SandwichSampler().setup(seed=0, space=build_space("nb201", (3, 8, 8), 10, C=4, layers=1))
    with pytest.raises(ValueError, match="random_paths=-1"):
        SandwichSampler(random_paths=-1)
