"""Cost tables of a ``module`` space: per decision and choice, the params, MACs and latency of
the modules that choice builds (``nas.hardware.costs`` sums them with the fixed part).

The places the tables count are the model's top-level choice modules (a ``LayerChoice``, an
``InputChoice``, a ``Repeat``, a weight-entangled layer); everything else is the fixed part. A
place's cost depends on its own decision and those nested inside it (a width inside a
candidate): it is priced at every joint choice of them (``supernet.spaces.shapes.JointCost``),
built as the fixed module of that choice with the other decisions at the reference (their
defaults: the largest values), at the input shape it has there (its input width following its
first layer's own value). So a genotype's params and MACs are exact wherever two places do not
interact through an unsearched layer, and the expected cost under α is the exact expectation
over independent rows: ``Σ_j Π_r p(r, j_r) · cost(j)`` per place. ``stage=profile`` counts a
genotype's child exactly.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from supernet.choices import (
    ChoiceModule,
    InputChoice,
    Repeat,
    TokenPositions,
    ValueChoice,
    fix_model,
)
from supernet.choices.language import LearnedPositions
from supernet.choices.values import leaves_of
from supernet.spaces.shapes import JointCost, empty_rows, run_hooked

MAX_JOINT = 4096  # joint choices one place may be priced at

if TYPE_CHECKING:
    from supernet.spaces.module import ModuleSpace

# The input dimension (of one sample's shape) each fixed plain layer reads its width on.
_IN_WIDTH = {
    nn.Linear: ("in_features", -1),
    nn.Conv2d: ("in_channels", 0),
    nn.BatchNorm2d: ("num_features", 0),
}


@dataclass(frozen=True)
class ModuleShape:
    """One choice's module at one input shape: a cost-table entry (``OpShape``'s interface:
    ``key``, ``free``, ``build``, ``sample_shape``)."""

    key: str
    module: nn.Module = field(compare=False, hash=False, repr=False)
    sample_shape: tuple[int, ...] = ()
    free: bool = False
    input_dtype: torch.dtype = torch.float32  # torch.long: token ids (a language model's embedding)

    def build(self) -> nn.Module:
        return copy.deepcopy(self.module)


class ShapeStub(nn.Module):
    """Returns zeros of a fixed per-sample shape (float): a searched place in the stub child.
    It keeps the replaced module's own parameters, which the rest of the model may read (a
    language model's head tied to its token table: that product is fixed-part work)."""

    def __init__(self, shape: Sequence[int], replaced: nn.Module | None = None, dtype=None):
        super().__init__()
        self.shape, self.dtype = tuple(shape), dtype
        for name, param in {} if replaced is None else replaced.named_parameters(recurse=False):
            self.register_parameter(name, param)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        first = args[0]
        like = first[0] if isinstance(first, (list, tuple)) else first
        dtype = self.dtype or (like.dtype if like.dtype.is_floating_point else torch.float32)
        return torch.zeros(like.shape[0], *self.shape, dtype=dtype, device=like.device)


def _depends_on_all(module: nn.Module) -> list[str]:
    """The decisions of every choice module inside ``module`` (itself included)."""
    labels: list[str] = []
    for m in module.modules():
        if isinstance(m, ChoiceModule):
            labels += _depends_on(m)
    return list(dict.fromkeys(labels))


def _depends_on(place: ChoiceModule) -> list[str]:
    """The decisions a place's cost depends on: its own, then those nested inside it."""
    labels: list[str] = []
    for module in place.modules():
        if isinstance(module, ChoiceModule):
            own = module.own_decision()
            labels += [own.label] if own is not None else []
            labels += [leaf.label for leaf in leaves_of(list(module.value_args().values()))]
    return list(dict.fromkeys(labels))


def top_places(model: nn.Module) -> dict[str, ChoiceModule]:
    """path → choice module, for the choice modules not nested inside another."""
    out: dict[str, ChoiceModule] = {}
    for path, m in model.named_modules():
        if isinstance(m, ChoiceModule) and not any(path.startswith(p + ".") for p in out):
            out[path] = m
    return out


class ModuleCosts:
    """Builds a module space's cost rows and stub child (module docstring)."""

    def __init__(self, space: ModuleSpace):
        self.space = space
        with torch.random.fork_rng(devices=[]):  # leaves the run's seeded RNG as it is
            probe = space.make_model()
        space._discover(probe)
        self.probe = probe
        self.places_by_path = top_places(probe)
        alternatives = "|".join(re.escape(p) for p in self.places_by_path)
        self.pattern = re.compile(rf"^model\.({alternatives})(\.|$)")
        self.out_shapes: dict[str, tuple[int, ...]] = {}
        self.in_dtypes: dict[str, torch.dtype] = {}

    def rows(self, child: nn.Module, input_shape: Sequence[int]):
        """No per-row entries: every place is priced per joint choice (``places``)."""
        space = self.space
        return empty_rows(space.cell_types, len(space.edges), len(space.ops))

    def places(self, child: nn.Module, input_shape: Sequence[int]) -> list[JointCost]:
        """Per top-level choice place, its cost at every joint choice of the decisions it
        depends on, at the input shape it has in the reference child ``child``."""
        space = self.space
        seen_in: dict[str, tuple[int, ...]] = {}
        hooks = []
        modules = dict(child.named_modules())
        for path in self.places_by_path:

            def hook(m, args, out, path=path) -> None:
                first = args[0]
                like = first[0] if isinstance(first, (list, tuple)) else first
                seen_in[path] = tuple(like.shape[1:])
                self.in_dtypes[path] = like.dtype
                self.out_shapes[path] = tuple(out.shape[1:])

            hooks.append((modules[f"model.{path}"], hook))
            place = self.places_by_path[path]
            if isinstance(place, Repeat):  # each block's own input (priced block by block)
                for i in range(len(place.blocks)):
                    block = modules.get(f"model.{path}.{i}")
                    if block is not None:
                        hooks.append(
                            (
                                block,
                                lambda m, a, o, key=f"{path}.{i}": seen_in.__setitem__(
                                    key, tuple(a[0].shape[1:])
                                ),
                            )
                        )
        run_hooked(child, input_shape, hooks)
        reference = {d.label: d.default for d in space.decisions}
        row_of = {d.label: r for r, d in enumerate(space.decisions)}
        out = []
        for path, place in self.places_by_path.items():
            if isinstance(place, Repeat) and isinstance(place.depth, ValueChoice):
                out += self._repeat_places(path, place, seen_in, reference, row_of)
                continue
            labels = _depends_on(place)
            rows = tuple(row_of[label] for label in labels)
            counts = [len(space.decisions[r].choices) for r in rows]
            if math.prod(counts) > MAX_JOINT:
                raise ValueError(
                    f"search_space.model={space.model_path}: {path} depends on the decisions "
                    f"{labels} ({math.prod(counts)} joint choices, more than {MAX_JOINT}); its "
                    "cost cannot be tabled per joint choice. Give its choices fewer values."
                )
            entries = {}
            for cols in itertools.product(*(range(n) for n in counts)):
                assignment = {**reference, **dict(zip(labels, cols, strict=True))}
                entries[cols] = (self._entry(path, place, assignment, seen_in[path]),)
            ref = tuple(reference[label] for label in labels)
            out.append(JointCost(space.cell_types[0], rows, entries, ref))
        return out

    def _repeat_places(self, path, place, seen_in, reference, row_of) -> list[JointCost]:
        """A repeated block with a depth choice, priced block by block: block i depends on the
        depth (it runs only when the depth exceeds i) and on the decisions inside it, a joint
        choice per block instead of one over every block's decisions."""
        space, depth = self.space, place.depth
        out = []
        for i, block in enumerate(place.blocks):
            labels = [depth.label] + [x for x in _depends_on_all(block) if x != depth.label]
            rows = tuple(row_of[label] for label in labels)
            counts = [len(space.decisions[r].choices) for r in rows]
            if math.prod(counts) > MAX_JOINT:
                raise ValueError(
                    f"search_space.model={space.model_path}: block {i} of {path} depends on the "
                    f"decisions {labels} ({math.prod(counts)} joint choices, more than "
                    f"{MAX_JOINT}); its cost cannot be tabled per joint choice."
                )
            entries = {}
            for cols in itertools.product(*(range(n) for n in counts)):
                if depth.values[cols[0]] <= i:
                    entries[cols] = ()  # the block does not run at this depth
                    continue
                assignment = {**reference, **dict(zip(labels, cols, strict=True))}
                seen = seen_in.get(f"{path}.{i}", seen_in[path])
                entries[cols] = (self._entry(f"{path}.{i}", block, assignment, seen),)
            ref = tuple(reference[label] for label in labels)
            out.append(JointCost(space.cell_types[0], rows, entries, ref))
        return out

    def _entry(self, path: str, place: ChoiceModule, assignment: dict, seen: tuple) -> ModuleShape:
        """The place's fixed module at ``assignment`` and its input shape."""
        with torch.random.fork_rng(devices=[]):  # fresh plain layers: no draw from the run's RNG
            fixed = fix_model(copy.deepcopy(place), assignment, inherit=False)
        shape = _input_shape(fixed, seen)
        free = isinstance(place, InputChoice) or _empty(fixed)
        # The module's own text tells configurations of one path apart (widths, heads, ...).
        text = repr(fixed) + repr([tuple(p.shape) for p in fixed.parameters()])
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        key = f"{self.space.model_path}|{path}|{'x'.join(map(str, shape))}|{digest}"
        dtype = self.in_dtypes.get(path.rsplit(".", 1)[0] if path not in self.in_dtypes else path)
        return ModuleShape(key, fixed, shape, free, dtype or torch.float32)

    def stub(self, child: nn.Module) -> nn.Module:
        stub = copy.deepcopy(child)
        for path in self.places_by_path:
            parent_path, _, name = f"model.{path}".rpartition(".")
            parent = stub.get_submodule(parent_path)
            setattr(parent, name, ShapeStub(self.out_shapes[path], getattr(parent, name)))
        return stub.eval()


def _input_shape(fixed: nn.Module, seen: tuple[int, ...]) -> tuple[int, ...]:
    """The input shape of ``fixed`` (a place's fixed module): the reference's, its width dim
    replaced by the input width of the first layer that reads one (a candidate's first conv)."""
    for module in fixed.modules():
        for cls, (attr, dim) in _IN_WIDTH.items():
            if isinstance(module, cls):
                shape = list(seen)
                shape[dim] = getattr(module, attr)
                return tuple(shape)
        if isinstance(module, nn.LayerNorm):
            return (*seen[:-1], module.normalized_shape[0])
        if isinstance(module, TokenPositions):  # tokens in, width on the last dim
            return (*seen[:-1], module.pos.shape[-1])
        if isinstance(module, LearnedPositions):
            return (*seen[:-1], module.weight.shape[-1])
    return seen


def _empty(module: nn.Module) -> bool:
    """An identity or an empty block sequence (depth 0): costs nothing."""
    return isinstance(module, nn.Identity) or (
        isinstance(module, nn.Sequential) and len(module) == 0
    )
