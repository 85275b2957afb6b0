"""The "add a search space" recipe: a space defined in this one file through the public base
classes and registry (``SearchSpace``, ``GenotypeBase``, ``register_space``), its config node
registered here, runs search → discretize → retrain with no edit under ``nas/``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pytest
import torch
from hydra.core.config_store import ConfigStore
from torch import nn

from nas.core.genotype import load_genotype
from nas.run.schema import register_configs
from supernet.genotypes import GENOTYPE_TYPES, GenotypeBase, GenotypeError, KeptEdge
from supernet.spaces import SPACES, build_space, register_space
from supernet.spaces.base import SearchSpace
from tests.helpers.runs import read_summary, run_train_unlogged

NAME = "toy"
TOY_OPS = ("conv", "skip", "pool")
PREFIX = f"{NAME}:"


def toy_op(op: str, C: int) -> nn.Module:
    if op == "conv":
        return nn.Sequential(nn.ReLU(), nn.Conv2d(C, C, 3, padding=1, bias=False))
    if op == "skip":
        return nn.Identity()
    return nn.AvgPool2d(3, 1, 1, count_include_pad=False)


@dataclass(frozen=True)
class ToyGenotype(GenotypeBase):
    """One op per layer of a chain; text form ``toy:conv-skip-pool``."""

    layers: tuple[str, ...]
    space: str = NAME

    known_ops: ClassVar[frozenset[str]] = frozenset(TOY_OPS)
    diagram: ClassVar[str] = "chain"

    def __post_init__(self) -> None:
        bad = [op for op in self.layers if op not in TOY_OPS]
        if bad:
            raise GenotypeError(f"unknown toy ops {bad}; valid: {', '.join(TOY_OPS)}.")
        object.__setattr__(self, "layers", tuple(self.layers))

    def __str__(self) -> str:
        return PREFIX + "-".join(self.layers)

    def kept_edges(self) -> dict[str, tuple[KeptEdge, ...]]:
        return {"layers": tuple((op, i, i + 1) for i, op in enumerate(self.layers))}

    def with_op(self, cell: str, slot: int, op: str) -> ToyGenotype:
        layers = list(self.layers)
        layers[slot] = op
        return replace(self, layers=tuple(layers))

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "layers": list(self.layers)}

    @classmethod
    def matches_text(cls, text: str) -> bool:
        return text.strip().startswith(PREFIX)

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> ToyGenotype:
        return cls(layers=data["layers"], space=data["space"])

    @classmethod
    def from_text(cls, text: str, space: str = NAME) -> ToyGenotype:
        return cls(layers=text.strip()[len(PREFIX) :].split("-"), space=space)


class ToyNetwork(nn.Module):
    """Stem, ``len(choices)`` layers each holding the ``choices[i]`` ops, pooling, classifier.
    With one op per layer it is the child network; with all ops, the supernet."""

    def __init__(self, input_shape, num_classes, C: int, choices, stem_kernel: int):
        super().__init__()
        self.stem = nn.Conv2d(input_shape[0], C, stem_kernel, padding=stem_kernel // 2)
        self.layers = nn.ModuleList(nn.ModuleList(toy_op(op, C) for op in ops) for ops in choices)
        self.classifier = nn.Linear(C, num_classes)

    def features(self, x, weights=None, active=None) -> torch.Tensor:
        h = self.stem(x)
        for i, ops in enumerate(self.layers):
            if weights is None:
                h = ops[0](h)
                continue
            used = range(len(ops)) if active is None else active[i]
            h = sum(weights[i, k] * ops[k](h) for k in used)
        return self.classifier(h.mean((2, 3)))


class ToySupernet(ToyNetwork):
    def forward(self, x, weights, active=None, edge_weights=None) -> torch.Tensor:
        w = weights["layers"]
        if edge_weights is not None:
            w = w * edge_weights["layers"][:, None]
        return self.features(x, w, None if active is None else active["layers"])


class ToyChild(ToyNetwork):
    drop_path_prob = 0.0  # set by the retrain module, unused
    auxiliary = None

    def forward(self, x) -> tuple[torch.Tensor, None]:
        return self.features(x), None


class ToySpace(SearchSpace):
    """A chain of ``layers`` layers, each one of ``conv``, ``skip``, ``pool``."""

    name = NAME
    cell_types = ("layers",)
    default_selection = "argmax_per_layer"
    genotype_type = ToyGenotype

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        ops: Sequence[str] = TOY_OPS,
        C: int = 8,
        layers: int = 2,
        stem_kernel: int = 3,  # a key no built-in space has: the schema must take it
    ):
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.ops, self.C, self.layers, self.stem_kernel = tuple(ops), C, layers, stem_kernel
        self.edges = tuple((i, i + 1) for i in range(layers))

    def build_supernet(self, partial_channels: int = 1) -> nn.Module:
        choices = [self.ops] * self.layers
        return ToySupernet(self.input_shape, self.num_classes, self.C, choices, self.stem_kernel)

    def build_child(self, genotype: ToyGenotype, C: int | None = None, **_) -> nn.Module:
        self.validate_genotype(genotype)
        choices = [[op] for op in genotype.layers]
        return ToyChild(self.input_shape, self.num_classes, C or self.C, choices, self.stem_kernel)

    def validate_genotype(self, genotype, check_ops: bool = True) -> None:
        if not isinstance(genotype, ToyGenotype) or len(genotype.layers) != self.layers:
            raise GenotypeError(f"not a {self.layers}-layer toy genotype: {genotype}.")

    def genotype_from_edges(self, kept: Mapping[str, Sequence[KeptEdge]]) -> ToyGenotype:
        return ToyGenotype(layers=[op for op, _, _ in kept["layers"]])


TOY_NODE = {"name": NAME, "ops": list(TOY_OPS), "C": 8, "layers": 2, "stem_kernel": 3}
# The space's own training recipe (``retrain: ${search_space}`` in config.yaml picks it).
TOY_RETRAIN = {
    "name": NAME,
    "auxiliary": False,
    "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05},
}


@pytest.fixture(scope="module")
def toy_space():
    """The space and its config nodes registered; the registries restored afterwards."""
    register_space(NAME, ToySpace)
    cs = ConfigStore.instance()
    cs.store(group="search_space", name=NAME, node=TOY_NODE)
    cs.store(group="retrain", name=NAME, node=TOY_RETRAIN)
    register_configs()  # the schema's search_space node now takes stem_kernel
    try:
        yield ToySpace
    finally:
        SPACES.pop(NAME)
        GENOTYPE_TYPES.pop(NAME)
        register_configs()


def test_the_registry_refuses_what_breaks_the_contract(toy_space):
    class Another(ToySpace):
        pass

    class Misnamed(ToySpace):
        name = "other"

    with pytest.raises(ValueError, match="already registered"):
        register_space(NAME, Another)
    with pytest.raises(ValueError, match="name attribute"):
        register_space("else", Misnamed)
    with pytest.raises(ValueError, match="search_space.stem_kernel=5 is an option of"):
        build_space("darts", (3, 8, 8), 10, stem_kernel=5)
    register_space(NAME, ToySpace)  # the same class again: a no-op


def test_the_child_is_the_supernet_at_a_one_hot_choice(toy_space):
    space = build_space(NAME, (3, 8, 8), 5, C=4, layers=3)
    torch.manual_seed(0)
    supernet = space.build_supernet().eval()
    genotype = ToyGenotype(layers=("conv", "pool", "skip"))
    child = space.build_child(genotype).eval()
    one_hot = torch.zeros(space.alpha_shape)
    for i, op in enumerate(genotype.layers):
        one_hot[i, space.ops.index(op)] = 1.0
    state = {}
    for key, value in supernet.state_dict().items():
        parts = key.split(".")
        if parts[0] == "layers":  # layers.i.k.* of the supernet -> layers.i.0.* of the child
            i, k = int(parts[1]), int(parts[2])
            if space.ops[k] != genotype.layers[i]:
                continue
            key = ".".join(["layers", parts[1], "0", *parts[3:]])
        state[key] = value
    child.load_state_dict(state)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(child(x)[0], supernet(x, {"layers": one_hot}))


def test_the_pipeline_runs_the_toy_space(toy_space, tmp_path, monkeypatch):
    assert run_train_unlogged(monkeypatch, tmp_path, f"search_space={NAME}") == 0
    genotype = load_genotype(tmp_path / "genotype.json")
    assert isinstance(genotype, ToyGenotype) and len(genotype.layers) == 3  # smoke: layers 3
    assert (tmp_path / "checkpoints" / "retrain" / "last.ckpt").is_file()
    summary = read_summary(tmp_path)
    assert summary["space"] == NAME and summary["genotype"] == str(genotype)
    assert summary["params"] > 0 and summary["macs"] > 0 and "test_acc" in summary
