"""``search_space=module``: any ``nn.Module`` with choice primitives (``supernet.choices``) as a
search space.

``search_space.model`` names the model class (``package.module.Class`` or ``package.module:Class``,
importable from the working directory), or is a node ``{_target_: <class>, <kwarg>: ...}`` with
its constructor's arguments. The constructor also gets ``num_classes`` and ``input_shape`` where
it takes them, and ``search_space.C`` / ``search_space.layers`` (``retrain.C`` / ``retrain.layers``
for the retrained model) where they are set and it takes ``C`` / ``layers``. ``forward(x)``
returns the logits.

The model's decisions (``supernet.choices.discover``: one per label) are the rows of one α
tensor (cell type ``"decisions"``) whose columns are choice positions ``"0"``, ``"1"``, ...: a
decision with fewer choices than the longest has padding columns that the strategy never mixes,
samples or selects (``SearchSpace.choice_counts``). The supernet is the model itself, each
forward pass mixing or sampling every decision as the strategy's weights say; the child network
is a fresh instance with every choice replaced by the chosen module or value
(``supernet.choices.fix_model``), or the searched supernet's with its weights
(``child_from_supernet``).
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from supernet.choices import ChoiceError, Decision, assignment_of, discover, fix_model
from supernet.choices.base import ChoiceModule
from supernet.genotypes import GenotypeError, KeptEdge
from supernet.spaces.base import SearchSpace
from supernet.spaces.module_costs import ModuleCosts
from supernet.spaces.module_genotype import CELL, ModuleGenotype
from supernet.spaces.shapes import example_input

ENUMERATE_LIMIT = 1_000_000  # estimate.sample=all enumerates spaces up to this size


def locate(path: str) -> Any:
    """The object ``package.module.Name`` (or ``package.module:Name``) names."""
    module_path, sep, name = path.partition(":")
    if not sep:
        module_path, _, name = path.rpartition(".")
    if not module_path or not name:
        raise ValueError(
            f"search_space.model={path!r} is not an import path like 'package.module.Class'."
        )
    try:
        module = importlib.import_module(module_path)
    except ImportError as err:
        raise ValueError(
            f"search_space.model={path!r}: module {module_path!r} cannot be imported ({err}). The "
            "path is imported from the working directory (run train.py from your project, or "
            "install it)."
        ) from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise ValueError(f"search_space.model={path!r}: {module_path!r} has no {name!r}.") from None


def model_spec(model: Any) -> tuple[str, dict[str, Any]]:
    """(import path, constructor kwargs) of ``search_space.model``."""
    if isinstance(model, str) and model:
        return model, {}
    if isinstance(model, Mapping) and isinstance(model.get("_target_"), str):
        return model["_target_"], {k: v for k, v in model.items() if k != "_target_"}
    raise ValueError(
        f"search_space.model={model!r}: search_space=module needs the model to search, as an "
        "import path ('my_project.models.MyNet') or a node {_target_: my_project.models.MyNet, "
        "<constructor argument>: <value>, ...}."
    )


class FixedModel(nn.Module):
    """The child network: the fixed model, its output as ``(logits, None)`` (no auxiliary head;
    ``drop_path_prob`` is accepted and unused) like every space's child."""

    drop_path_prob = 0.0
    auxiliary = None

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.model(x), None


class ModuleSupernet(nn.Module):
    """The model with its choices live: ``forward(x, weights, active, edge_weights)`` as every
    supernet's, row r of ``weights["decisions"]`` mixing decision r."""

    def __init__(self, model: nn.Module, decisions: Sequence[Decision]):
        super().__init__()
        self.model = model
        self.decisions = list(decisions)

    def forward(
        self,
        x: torch.Tensor,
        weights: dict[str, torch.Tensor],
        active: dict[str, Sequence[Sequence[int] | None]] | None = None,
        edge_weights: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        w = weights[CELL]
        if edge_weights is not None:
            w = w * edge_weights[CELL][:, None]
        act = None if active is None else active[CELL]
        for r, d in enumerate(self.decisions):
            d.weights = w[r, : len(d.choices)]
            d.active = None if act is None else act[r]
        try:
            return self.model(x)
        finally:
            for d in self.decisions:
                d.weights, d.active = None, None


class ModuleSpace(SearchSpace):
    """A user's model with choice primitives (module docstring)."""

    name = "module"
    cell_types = (CELL,)
    default_selection = "argmax_per_layer"
    genotype_type = ModuleGenotype
    child_networks = ("module",)
    layers_unit = "decisions"
    extracts_children = True

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        model: Any = None,
        ops: Sequence[str] = (),
        C: int | None = None,
        layers: int | None = None,
    ):
        if list(ops):
            raise ValueError(
                f"search_space.ops={list(ops)} does not apply to search_space=module: the choices "
                "are the model's own (its LayerChoice candidates and ValueChoice values)."
            )
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.model_path, self.model_kwargs = model_spec(model)
        self.model_class = locate(self.model_path)
        if not (isinstance(self.model_class, type) and issubclass(self.model_class, nn.Module)):
            raise ValueError(
                f"search_space.model={self.model_path!r} is {self.model_class!r}, not an "
                "nn.Module class."
            )
        self.C, self.layers = C, layers
        # The probe's initialisation must not draw from the run's seeded RNG: building the
        # space (here, or again later by a report) leaves the supernet's weights as seeded.
        with torch.random.fork_rng(devices=[]):
            probe = self.make_model()
        self.decisions = self._discover(probe)
        # Every supernet, child and cost table is another instance: a value choice shared by
        # instances (a default argument, a module constant) is refused now, not mid-run. A
        # second instance on the meta device costs no memory or initialisation.
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            self._discover(self.make_model())
        counts = [len(d.choices) for d in self.decisions]
        self.ops = tuple(str(k) for k in range(max(counts)))
        self.edges = tuple((r, r + 1) for r in range(len(self.decisions)))
        self._counts = tuple(counts)
        self._check_output(probe)
        self._costs: ModuleCosts | None = None
        self._params_table: tuple | None = None

    @property
    def costs(self) -> ModuleCosts:
        """The cost-table builder, made when first asked (it builds a model of its own)."""
        if self._costs is None:
            self._costs = ModuleCosts(self)
        return self._costs

    # ---- the model ------------------------------------------------------------------------
    def make_model(self, C: int | None = None, layers: int | None = None) -> nn.Module:
        """A fresh instance of the model (``C`` / ``layers``: the child's, if they differ)."""
        params = inspect.signature(self.model_class).parameters
        kwargs = dict(self.model_kwargs)
        for key, value in self.size_arguments(C, layers).items():
            if value is None:
                continue
            if key not in params:
                raise ValueError(
                    f"search_space.{key}={value} (or retrain.{key}) sets the model's {key!r} "
                    f"argument, but {self.model_path} takes no {key!r}; its arguments are: "
                    f"{', '.join(params)}. Set search_space.{key}=null and retrain.{key}=null."
                )
            kwargs[key] = value
        for key, value in (
            ("num_classes", self.num_classes),
            ("input_shape", list(self.input_shape)),
        ):
            if key in params and key not in kwargs:
                kwargs[key] = value
        unknown = [k for k in kwargs if k not in params and not _takes_kwargs(params)]
        if unknown:
            raise ValueError(
                f"search_space.model: {self.model_path} takes no argument(s) {unknown}; its "
                f"arguments are: {', '.join(params)}."
            )
        try:
            return self.model_class(**kwargs)
        except ChoiceError as err:
            raise ChoiceError(f"search_space.model={self.model_path}: {err}") from None

    def size_arguments(self, C: int | None, layers: int | None) -> dict[str, int | None]:
        """The model's ``C`` / ``layers`` arguments: the child's where given, else the space's."""
        return {
            "C": self.C if C is None else C,
            "layers": self.layers if layers is None else layers,
        }

    def _discover(self, model: nn.Module) -> list[Decision]:
        try:
            decisions = discover(model)
        except ChoiceError as err:
            raise ChoiceError(f"search_space.model={self.model_path}: {err}") from None
        if not decisions:
            raise ValueError(
                f"search_space.model={self.model_path} has no search choices: use "
                "supernet.choices' LayerChoice, InputChoice, Repeat, or its layers (Linear, "
                "Conv2d, BatchNorm2d, LayerNorm) with ValueChoice sizes."
            )
        return decisions

    def _check_output(self, model: nn.Module) -> None:
        was = model.training
        model.eval()
        x = example_input(self.input_shape, 2)
        try:
            with torch.no_grad():
                out = model(x)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            kind = "token ids (data=text)" if len(self.input_shape) == 1 else "images"
            raise ValueError(
                f"search_space.model={self.model_path}: forward(x) failed on a batch of 2 "
                f"{kind} of shape {list(self.input_shape)} ({type(err).__name__}: {err}). The "
                "model must take the data's inputs: check data= and the model's input_shape."
            ) from None
        finally:
            model.train(was)
        tokens = len(self.input_shape) == 1  # text: next-token logits, flattened
        rows = 2 * self.input_shape[0] if tokens else 2
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (rows, self.num_classes):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            expected = (
                f"[batch x tokens, vocab] = [{rows}, {self.num_classes}] (token ids in)"
                if tokens
                else f"[batch, num_classes] = [2, {self.num_classes}]"
            )
            raise ValueError(
                f"search_space.model={self.model_path}: forward(x) on a batch of 2 inputs of "
                f"shape {list(self.input_shape)} returned {got}; the model must return logits "
                f"of shape {expected}."
            )

    # ---- α rows ---------------------------------------------------------------------------
    def choice_counts(self) -> tuple[int, ...]:
        return self._counts

    def alpha_labels(self, cell: str) -> tuple[list[str], list[list[str]]]:
        return [d.label for d in self.decisions], [list(d.names) for d in self.decisions]

    def allowed_ops(self, row: int) -> tuple[int, ...]:
        return tuple(range(self._counts[row]))

    def sample_node(self, n_inputs: int, generator: torch.Generator) -> list[int]:
        return torch.randint(len(self.ops), (n_inputs,), generator=generator).tolist()

    def reference_genotype(self) -> ModuleGenotype:
        """Every decision at its default: the largest value, the first candidate and input set
        (the model a plain forward runs; the cost tables read shapes from it)."""
        return self.genotype_of([d.default for d in self.decisions])

    def genotype_count(self) -> int:
        return math.prod(self._counts)

    def all_genotypes(self) -> Iterator[ModuleGenotype]:
        if self.genotype_count() > ENUMERATE_LIMIT:
            super().all_genotypes()
        for cols in itertools.product(*(range(n) for n in self._counts)):
            yield self.genotype_of(list(cols))

    # ---- genotypes ------------------------------------------------------------------------
    def genotype_of(self, columns: Sequence[int]) -> ModuleGenotype:
        return ModuleGenotype(
            choices=tuple(
                (d.label, d.choices[k]) for d, k in zip(self.decisions, columns, strict=True)
            ),
            options=tuple((d.label, d.choices) for d in self.decisions),
            space=self.name,
        )

    def genotype_from_edges(self, kept: Mapping[str, Sequence[KeptEdge]]) -> ModuleGenotype:
        cols = [0] * len(self.decisions)
        for op, i, _ in kept[CELL]:
            cols[i] = int(op)
        return self.genotype_of(cols)

    def resolve(self, genotype: ModuleGenotype) -> ModuleGenotype:
        """The genotype checked against the model's decisions, with their options."""
        if not isinstance(genotype, ModuleGenotype):
            raise GenotypeError(
                f"not a module genotype: {genotype!r} (space {getattr(genotype, 'space', None)!r})."
            )
        try:
            columns = assignment_of(self.decisions, genotype.choice_map())
        except ChoiceError as err:
            raise GenotypeError(f"search_space.model={self.model_path}: {err}") from None
        cols = [columns[d.label] for d in self.decisions]
        return self.genotype_of(cols)

    def validate_genotype(self, genotype, check_ops: bool = True) -> None:
        self.resolve(genotype)

    def assignment(self, genotype: ModuleGenotype) -> dict[str, int]:
        """label → α column of the genotype's choices."""
        return dict(
            zip((d.label for d in self.decisions), self.resolve(genotype).columns(), strict=True)
        )

    # ---- networks -------------------------------------------------------------------------
    def build_supernet(self, partial_channels: int = 1) -> ModuleSupernet:
        if partial_channels != 1:
            raise ValueError(
                f"Partial channel connections (PC-DARTS, K={partial_channels}) are not supported "
                f"in search_space={self.name}: they sample channels of a cell edge's input, and a "
                "model's choices are not cell edges. They apply to the darts and nb201 spaces."
            )
        model = self.make_model()
        return ModuleSupernet(model, self._discover(model))

    def build_child(
        self, genotype: ModuleGenotype, C: int | None = None, layers: int | None = None, **_
    ) -> FixedModel:
        """A fresh instance with each choice fixed (freshly initialised plain layers)."""
        assignment = self.assignment(genotype)
        model = self.make_model(C, layers)
        self._discover(model)
        return FixedModel(fix_model(model, assignment, inherit=False))

    def child_from_supernet(self, supernet: nn.Module, genotype: ModuleGenotype) -> FixedModel:
        """The searched supernet's model fixed at ``genotype``, its weights inherited (a copy;
        the supernet is unchanged)."""
        import copy

        if not isinstance(supernet, ModuleSupernet):
            raise TypeError(f"not a module supernet: {type(supernet).__name__}.")
        model = copy.deepcopy(supernet.model)
        return FixedModel(fix_model(model, self.assignment(genotype), inherit=True))

    def child_input_error(self, network: str, side: int, data: str, recipe: str) -> str | None:
        return None  # the model was checked on the data's shape when the space was built

    @classmethod
    def banner(cls, options: Mapping[str, Any]) -> str:
        path, kwargs = model_spec(options.get("model"))
        sizes = [f"{k}={options[k]}" for k in ("C", "layers") if options.get(k) is not None]
        args = ", ".join([*sizes, *(f"{k}={v}" for k, v in kwargs.items())])
        return f"module: {path}({args})"

    @classmethod
    def child_banner(cls, network: str, C: int | None, layers: int | None) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in (("C", C), ("layers", layers)) if v is not None)
        return f"the fixed model{f' ({sizes})' if sizes else ''}"

    def describe(self) -> str:
        """The decisions, one line: label (number of choices)."""
        rows = ", ".join(f"{d.label} ({len(d.choices)})" for d in self.decisions)
        return f"{len(self.decisions)} decisions: {rows}"

    # ---- cost tables (``supernet.spaces.module_costs``) ------------------------------------
    @property
    def child_op_pattern(self):  # type: ignore[override]
        return self.costs.pattern

    def cost_rows(self, child: nn.Module, input_shape: Sequence[int]):
        return self.costs.rows(child, input_shape)

    def extreme_paths(self) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """Every value decision at its largest / smallest value; a layer or input choice at its
        default in both (its candidates have no size order)."""
        largest, smallest = [], []
        for d in self.decisions:
            if d.kind == "value":
                largest.append(max(range(len(d.choices)), key=lambda k: d.choices[k]))
                smallest.append(min(range(len(d.choices)), key=lambda k: d.choices[k]))
            else:
                largest.append(d.default)
                smallest.append(d.default)
        return {CELL: largest}, {CELL: smallest}

    def genotype_params(self, genotype: ModuleGenotype) -> int:
        """Exact: the sum of its places' tabled parameters and the fixed part's."""
        if self._params_table is None:
            reference = self.build_child(self.reference_genotype())
            places = self.cost_places(reference, self.input_shape)
            pattern = self.child_op_pattern
            fixed = sum(p.numel() for n, p in reference.named_parameters() if not pattern.match(n))
            tables = []
            for place in places:
                costs = {
                    cols: sum(sum(p.numel() for p in s.build().parameters()) for s in shapes)
                    for cols, shapes in place.entries.items()
                }
                tables.append((place.rows, costs))
            self._params_table = (fixed, tables)
        fixed, tables = self._params_table
        cols = self.resolve(genotype).columns()
        return fixed + sum(costs[tuple(cols[r] for r in rows)] for rows, costs in tables)

    def cost_places(self, child: nn.Module, input_shape: Sequence[int]):
        return self.costs.places(child, input_shape)

    def stub_child(self, child: nn.Module, rows):
        return self.costs.stub(child)


def _takes_kwargs(params: Mapping[str, inspect.Parameter]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


__all__ = ["ChoiceModule", "FixedModel", "ModuleSpace", "ModuleSupernet", "locate"]
