"""What every search space provides (ARCHITECTURE.md, the contracts)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from supernet.genotypes import GenotypeBase, KeptEdge
    from supernet.spaces.shapes import JointCost, Rows

# A CIFAR-style child network (one stride-1 stem) on larger images than this is a config
# mistake (e.g. data=imagenet with a CIFAR recipe), not a smaller ImageNet model.
CIFAR_NETWORK_MAX_SIDE = 64


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
    """A search space: its edges, candidate ops, supernet, child network and selection rule,
    and everything code outside ``supernet/spaces/`` would otherwise branch on its name for.

    A new space subclasses this, implements the abstract methods (and the optional ones its
    users need: cost tables, a benchmark), and registers itself
    (``supernet.spaces.register_space``); its constructor's keyword arguments are its
    ``search_space.*`` config keys.

    Attributes:
        name: registry key, also written into alphas and genotype files.
        ops: candidate op names, in the order of α's columns.
        cell_types: the α tensors the supernet needs, e.g. ("normal", "reduce").
        edges: (input node, output node) per α row, in a fixed documented order.
        default_selection: name of the selection rule that turns α into a genotype.
        genotype_type: the class of its genotypes.
        child_networks: the ``retrain.network`` values ``build_child`` builds.
        layers_unit: what ``search_space.layers`` counts (the run's banner says it).
        child_op_pattern: names of the searched ops' modules in the child network (the cost
            tables count everything else as the fixed part); None: no cost tables.
    """

    name: str
    ops: tuple[str, ...]
    cell_types: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    default_selection: str
    genotype_type: ClassVar[type[GenotypeBase]]
    child_networks: ClassVar[tuple[str, ...]] = ("cifar",)
    layers_unit: ClassVar[str] = "cells"
    child_op_pattern: ClassVar[re.Pattern[str] | None] = None
    benchmark_file: str | None = None  # its tabular benchmark's file, where it has one
    # Whether ``child_from_supernet`` builds a child with the supernet's weights.
    extracts_children: ClassVar[bool] = False

    @classmethod
    def banner(cls, options: Mapping[str, object]) -> str:
        """The run banner's line for the space, from its ``search_space`` options."""
        return (
            f"{cls.name} (C={options.get('C')}, {options.get('layers')} {cls.layers_unit}, "
            f"{len(options.get('ops') or ())} ops)"
        )

    @classmethod
    def child_banner(cls, network: str, C: int | None, layers: int | None) -> str:
        """The run banner's description of the child network at the retrain sizes."""
        return f"{network} network C={C}, {layers} cells"

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

    def alpha_labels(self, cell: str) -> tuple[list[str], list[list[str]]] | None:
        """How figures name α's rows and each row's columns (the ``module`` space: decision
        labels and their choices), or None for the default: rows ``input->node``, columns
        the op names."""
        return None

    # ---- rows with fewer choices than α has columns --------------------------------------
    def choice_counts(self) -> tuple[int, ...] | None:
        """Per α row, how many of its columns are real choices (the first ones): a space whose
        decisions have different numbers of choices (``module``) pads α's rows to the longest;
        the strategy never mixes, samples or selects a padding column. None: every row has
        every op."""
        return None

    def column_masks(self) -> dict[str, torch.Tensor] | None:
        """Per cell type, the ``[rows, ops]`` bool mask of the real columns (``choice_counts``),
        or None where every column is real."""
        counts = self.choice_counts()
        if counts is None:
            return None
        mask = torch.arange(len(self.ops))[None, :] < torch.tensor(counts)[:, None]
        return {cell: mask.clone() for cell in self.cell_types}

    def sample_rows(self, first: int, n_inputs: int, generator: torch.Generator) -> list[int]:
        """``sample_node``'s draw for the node whose edges are α rows ``first`` onwards; a draw
        of a padding column (``choice_counts``) is redrawn among the row's real ones."""
        choice = self.sample_node(n_inputs, generator)
        counts = self.choice_counts()
        if counts is not None:
            for i, k in enumerate(choice):
                if k >= counts[first + i]:
                    choice[i] = int(torch.randint(counts[first + i], (1,), generator=generator))
        return choice

    def sample_cell(self, generator: torch.Generator) -> list[int]:
        """One uniformly random discrete choice per α row of a cell, node by node
        (``sample_rows``): single-path sampling, random architectures."""
        choice: list[int] = []
        for n_inputs in self.edges_per_node:
            choice.extend(self.sample_rows(len(choice), n_inputs, generator))
        return choice

    def random_genotype(self, generator: torch.Generator) -> GenotypeBase:
        """A uniformly random genotype: node by node as ``sample_cell`` draws them, each op
        among the row's ``selectable_ops`` (another draw is redrawn among them, which keeps the
        draw uniform over them). What random search and the estimators'
        ``estimate.sample`` evaluate."""
        kept: dict[str, list[KeptEdge]] = {}
        for cell in self.cell_types:
            choice = self.sample_cell(generator)
            edges = []
            for row, ((i, j), k) in enumerate(zip(self.edges, choice, strict=True)):
                if k < 0:
                    continue
                allowed = self.selectable_ops(row)
                if k not in allowed:
                    k = allowed[int(torch.randint(len(allowed), (1,), generator=generator))]
                edges.append((self.ops[k], i, j))
            kept[cell] = edges
        return self.genotype_from_edges(kept)

    def genotype_count(self) -> int | None:
        """How many genotypes the space holds, where ``all_genotypes`` enumerates them; None
        where the space is too large to enumerate (DARTS cells: ~10^18)."""
        return None

    def all_genotypes(self) -> Iterator[GenotypeBase]:
        """Every genotype of the space, in a fixed order (``estimate.sample=all``)."""
        raise ValueError(
            f"estimate.sample=all: search_space={self.name} is too large to enumerate; give a "
            "number of random architectures (estimate.sample=<N>) or a file "
            "(estimate.archs=<path>). Spaces that enumerate: nb201."
        )

    @abstractmethod
    def build_child(self, genotype: GenotypeBase, **sizes) -> nn.Module:
        """The standalone network of a genotype, trained from scratch in retraining.
        ``sizes``: ``C``, ``layers``, ``auxiliary`` and ``network`` (one of
        ``child_networks``); a space ignores those it has no use for."""

    def resolve(self, genotype: GenotypeBase) -> GenotypeBase:
        """The genotype as this space reads it, checked (a typed transformer genotype read from
        its file gets its α columns back); default: checked and returned as it is."""
        self.validate_genotype(genotype)
        return genotype

    def child_from_supernet(self, supernet: nn.Module, genotype: GenotypeBase) -> nn.Module:
        """The child network of ``genotype`` with the searched supernet's weights
        (``retrain.inherit=true``); the supernet is left unchanged."""
        raise ValueError(
            f"retrain.inherit=true: search_space={self.name} does not extract a child network "
            "with the supernet's weights (its child is built from scratch: retrain.inherit=false). "
            "Spaces that do: module."
        )

    @abstractmethod
    def validate_genotype(self, genotype: GenotypeBase, check_ops: bool = True) -> None:
        """Raises a GenotypeError when the genotype does not fit this space.

        ``check_ops=False`` accepts ops outside the space's list (retraining a genotype found
        with another op set).
        """

    @abstractmethod
    def genotype_from_edges(self, kept: Mapping[str, Sequence[KeptEdge]]) -> GenotypeBase:
        """The genotype keeping, per cell type, the (op, input, node) edges ``kept`` in that
        order: the inverse of ``genotype.kept_edges()``, how selection rules build one."""

    # ---- what the selection rules and the constraint may choose --------------------------
    def allowed_ops(self, row: int) -> tuple[int, ...]:
        """Op indices a network may have on α row ``row`` (a sampler samples among them).
        Default: every op."""
        return tuple(range(len(self.ops)))

    def selectable_ops(self, row: int) -> tuple[int, ...]:
        """Op indices the space's selection rule may choose on ``row`` (the constraint's
        downgrades stay among them). Default: ``allowed_ops``."""
        return self.allowed_ops(row)

    def reference_genotype(self) -> GenotypeBase:
        """The genotype the default selection rule gives for uniform α (the cost tables read
        shapes from its child). Default: the first allowed op on every edge."""
        kept = [(self.ops[self.allowed_ops(e)[0]], i, j) for e, (i, j) in enumerate(self.edges)]
        return self.genotype_from_edges({cell: kept for cell in self.cell_types})

    # ---- the child network and its data --------------------------------------------------
    def child_input_error(self, network: str, side: int, data: str, recipe: str) -> str | None:
        """Why the child network ``retrain.network=network`` (of ``retrain=recipe``) does not
        fit the ``side``-pixel images of ``data=data``, with the fix, or None. Default: a
        CIFAR-style child (one stride-1 stem) takes images up to ``CIFAR_NETWORK_MAX_SIDE``."""
        if network == "cifar" and side > CIFAR_NETWORK_MAX_SIDE:
            return (
                f"retrain={recipe} builds a CIFAR-style network (retrain.network=cifar, one "
                f"stride-1 stem for 32x32 images), but data={data} has {side}x{side} images. "
                f"search_space={self.name} builds the child networks: "
                f"{', '.join(self.child_networks)}."
            )
        return None

    def benchmark_key(self, genotype: GenotypeBase) -> str | None:
        """The genotype's key in the space's tabular benchmark (``nas.estimate``), or None
        where the space has none."""
        return None

    # ---- cost tables (``nas.hardware.costs``) ---------------------------------------------
    def cost_rows(self, child: nn.Module, input_shape: Sequence[int]) -> Rows:
        """Per cell type, per α row, per op: the op's shape (``supernet.spaces.shapes``) in
        every cell or layer of that type of ``child``, read with forward hooks."""
        raise self._no_cost_tables()

    def extreme_paths(self) -> tuple[dict[str, list[int]], dict[str, list[int]]] | None:
        """(largest, smallest) path: per cell type one α column per row, for the sandwich rule;
        None where the space's choices are not sizes."""
        return None

    def genotype_params(self, genotype: GenotypeBase) -> int | None:
        """The child network's parameter count, where the space prices it cheaply (the search
        console shows it per epoch); None: not shown."""
        return None

    def cost_places(self, child: nn.Module, input_shape: Sequence[int]) -> list[JointCost]:
        """Places whose cost depends on several α rows together, priced per joint choice
        (``supernet.spaces.shapes.JointCost``); their rows' ``cost_rows`` hold nothing for
        them. Default: none (every op's cost depends on its own row alone)."""
        return []

    def stub_child(self, child: nn.Module, rows: Rows) -> nn.Module:
        """A copy of ``child`` with every searched op replaced by a free ``Zero`` of its
        output shape, in eval mode (timed for the fixed part's latency)."""
        raise self._no_cost_tables()

    def _no_cost_tables(self) -> ValueError:
        return ValueError(
            f"search_space={self.name} has no cost tables (its class defines no "
            "child_op_pattern, cost_rows and stub_child)."
        )


def check_fixed(space: str, **values: int) -> None:
    """Refuses a value other than 1 for keys that the space's structure fixes (its config file
    lists them at 1 so that every space reads the same keys)."""
    for key, value in values.items():
        if value != 1:
            raise ValueError(
                f"search_space.{key}={value} does not apply to search_space={space}; the only "
                "valid value is 1."
            )
