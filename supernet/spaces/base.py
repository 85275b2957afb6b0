"""What every search space provides (see DESIGN.md, "Where things live")."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from supernet.genotypes import Genotype


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Indices of the reduction cells: 1/3 and 2/3 of the depth (deduplicated)."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


def check_sizes(
    input_shape: Sequence[int],
    C: int,
    layers: int,
    extra_reductions: int = 0,
    owner: str = "search_space",
) -> None:
    """Rejects sizes the network cannot be built with, naming the config key (``owner.C``:
    ``search_space`` for a supernet, ``retrain`` for a child network) and the bad value."""
    check_input_shape(input_shape)
    if layers < 1:
        raise ValueError(f"{owner}.layers={layers}: the network needs at least 1 cell.")
    if C < 2 or C % 2:
        raise ValueError(
            f"{owner}.C={C}: the initial channels must be an even number >= 2 "
            "(FactorizedReduce halves them)."
        )
    reductions = len(reduction_layers(layers)) + extra_reductions
    if min(input_shape[1:]) < 2**reductions:
        raise ValueError(
            f"data.input_shape={list(input_shape)} is too small for {reductions} stride-2 "
            f"reductions ({owner}.layers={layers}): it needs at least "
            f"{2**reductions}x{2**reductions} pixels. Use fewer layers or a larger input."
        )


def check_input_shape(input_shape: Sequence[int]) -> None:
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(
            f"data.input_shape={list(input_shape)} must be [channels, height, width], each >= 1."
        )


def check_choice(key: str, value: object, choices: Sequence[object]) -> None:
    """Refuses ``search_space.<key>=value`` outside ``choices``, listing them."""
    if value not in choices:
        raise ValueError(
            f"Unknown search_space.{key}={value!r}. Valid choices are: "
            f"{', '.join(map(str, choices))}."
        )


def check_op_names(ops: Sequence[str], known: Sequence[str]) -> None:
    """Refuses a ``search_space.ops`` entry that is not a candidate op, listing the valid ones."""
    bad = [op for op in ops if op not in known]
    if bad:
        raise ValueError(
            f"search_space.ops={list(ops)} has unknown ops {bad}. Valid ops are: "
            f"{', '.join(sorted(known))}."
        )


class SearchSpace(ABC):
    """A search space: its edges, candidate ops, supernet, child network and selection rule.

    Attributes:
        name: registry key, also written into alphas and genotype files.
        ops: candidate op names, in the order of α's columns.
        cell_types: the α tensors the supernet needs, e.g. ("normal", "reduce").
        edges: (input node, output node) per α row, in a fixed documented order.
        default_selection: name of the selection rule that turns α into a genotype.
    """

    name: str
    ops: tuple[str, ...]
    cell_types: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    default_selection: str

    @property
    def alpha_shape(self) -> tuple[int, int]:
        return (len(self.edges), len(self.ops))

    @property
    def edges_per_node(self) -> list[int]:
        """Incoming edges of each node, in edge order (edges are ordered node by node)."""
        counts: dict[int, int] = {}
        for _, node in self.edges:
            counts[node] = counts.get(node, 0) + 1
        return [counts[n] for n in sorted(counts)]

    @abstractmethod
    def build_supernet(self, partial_channels: int = 1) -> nn.Module:
        """The supernet; its ``forward(x, weights, active=None, edge_weights=None)`` takes
        mixing weights per cell type. ``partial_channels``: PC-DARTS' K (1 = off)."""

    def sample_node(self, n_inputs: int, generator: torch.Generator) -> list[int]:
        """A uniformly random discrete choice for one node: per incoming edge an op index, or
        -1 where the edge is unused. Default: every edge carries one of all the ops."""
        return torch.randint(len(self.ops), (n_inputs,), generator=generator).tolist()

    @abstractmethod
    def build_child(self, genotype: Genotype, **sizes) -> nn.Module:
        """The standalone network of a genotype, trained from scratch in retraining."""

    @abstractmethod
    def validate_genotype(self, genotype: Genotype, check_ops: bool = True) -> None:
        """Raises a GenotypeError when the genotype does not fit this space.

        ``check_ops=False`` accepts ops outside the space's list (retraining a genotype found
        with another op set).
        """


def check_fixed(space: str, **values: int) -> None:
    """Refuses a value other than 1 for keys that the space's structure fixes (its config file
    lists them at 1 so that every space reads the same keys)."""
    for key, value in values.items():
        if value != 1:
            raise ValueError(
                f"search_space.{key}={value} does not apply to search_space={space}; the only "
                "valid value is 1."
            )
