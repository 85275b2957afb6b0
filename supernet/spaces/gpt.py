"""``search_space=gpt``: a decoder-only language-model supernet (GPT-2: Radford et al., 2019;
the knobs of whittle and HW-GPT-Bench: Sukthanker et al., NeurIPS 2024 D&B; TangleNAS'
nanoGPT space).

Decisions: the embedding width ``n_embd`` (global), the depth ``n_layer``, per layer the query
heads ``n_head_i``, the key/value groups ``n_query_groups_i`` (GQA; equal to the heads is
multi-head attention) and the MLP width ``intermediate_size_i``, and, where more than one is
given, the position encoding (``learned`` absolute, ``rope``, ``none``). Weight entanglement as
everywhere (``supernet.choices``): every choice is a slice of the largest layer. The network is
GPT-2's: token embedding (+ learned positions), pre-norm blocks (LayerNorm, causal
self-attention, LayerNorm, MLP with GELU), a final LayerNorm and the LM head, tied to the token
embedding by default. Space options: ``vocab_size`` (the data's), ``context`` (the data's input
length), ``head_size`` (each head's width), ``bias``, ``tied``. With GPT-2 small's / medium's
knobs (768 / 1024 wide, 12 / 24 layers, 12 / 16 heads, MLP 3072 / 4096, 50257 tokens, 1024
positions, tied, learned positions, biases) the child has 124,439,808 / 354,823,168 parameters
(tested).

Inputs are token ids ``[batch, tokens]``; the output is the next-token logits flattened to
``[batch · tokens, vocab]`` (the data's targets come flattened the same way), so the search and
retraining losses are the per-token cross-entropy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from supernet.choices import ChoiceError, LayerNorm, Linear, Repeat, ValueChoice
from supernet.choices.language import POSITIONS, Embedding, GroupedQueryAttention, PositionChoice
from supernet.genotypes import GENOTYPE_TYPES, GenotypeError
from supernet.spaces.module import ModuleSpace
from supernet.spaces.module_genotype import ModuleGenotype

PREFIX = "gpt:"
LAYER_KINDS = ("n_head", "n_query_groups", "intermediate_size")


def layer_label(kind: str, i: int) -> str:
    return f"{kind}_{i}"


class GPTBlock(nn.Module):
    def __init__(self, embed, heads, groups, hidden, head_size, bias, positions):
        super().__init__()
        self.norm1 = LayerNorm(embed)
        self.attn = GroupedQueryAttention(embed, heads, groups, head_size, bias, positions)
        self.norm2 = LayerNorm(embed)
        self.fc = Linear(embed, hidden, bias=bias)
        self.proj = Linear(hidden, embed, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.proj(F.gelu(self.fc(self.norm2(x))))


class GPTSupernetModel(nn.Module):
    """The GPT with its choices (module docstring)."""

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        n_embd: Sequence[int],
        n_layer: Sequence[int],
        n_head: Sequence[int],
        n_query_groups: Sequence[int] | None,
        intermediate_size: Sequence[int],
        pos_encoding: Sequence[str],
        head_size: int,
        bias: bool = True,
        tied: bool = True,
    ):
        super().__init__()
        context = input_shape[0]
        embed = ValueChoice(list(n_embd), label="n_embd")
        self.tokens = Embedding(num_classes, embed)
        self.positions = PositionChoice(context, embed, tuple(pos_encoding), "pos_encoding")

        def block(i: int) -> GPTBlock:
            heads = ValueChoice(list(n_head), label=layer_label("n_head", i))
            groups = (  # None: a key/value head per query head (multi-head attention)
                heads
                if n_query_groups is None
                else ValueChoice(list(n_query_groups), label=layer_label("n_query_groups", i))
            )
            hidden = ValueChoice(list(intermediate_size), label=layer_label("intermediate_size", i))
            return GPTBlock(embed, heads, groups, hidden, head_size, bias, self.positions)

        self.blocks = Repeat(block, ValueChoice(list(n_layer), label="n_layer"))
        self.norm = LayerNorm(embed)
        self.head = None if tied else Linear(embed, num_classes, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.blocks(self.positions(self.tokens(ids))))
        # Tied: the token table (features beyond the chosen width are zero on both sides).
        logits = F.linear(h, self.tokens.weight) if self.head is None else self.head(h)
        return logits.flatten(0, 1)


@dataclass(frozen=True)
class GPTGenotype(ModuleGenotype):
    """A GPT architecture; ``genotype.json`` has ``n_embd``, ``n_layer``, per layer ``n_head``,
    ``n_query_groups`` and ``intermediate_size``, and ``pos_encoding``; text
    ``gpt:e768-l12-h12,...-g12,...-m3072,...-p<learned|rope|none>``."""

    space: str = "gpt"
    known_ops: ClassVar[frozenset[str]] = frozenset()

    def _get(self, key: str) -> Any:
        return self.choice_map()[key]

    @property
    def n_embd(self) -> int:
        return int(self._get("n_embd"))

    @property
    def n_layer(self) -> int:
        return int(self._get("n_layer"))

    @property
    def pos_encoding(self) -> str:
        return str(self._get("pos_encoding"))

    def per_layer(self, kind: str) -> list[int]:
        c = self.choice_map()
        if kind == "n_query_groups" and layer_label(kind, 0) not in c:
            kind = "n_head"  # multi-head attention: the groups are the heads
        return [int(c[layer_label(kind, i)]) for i in range(self.n_layer)]

    def __str__(self) -> str:
        parts = [f"e{self.n_embd}", f"l{self.n_layer}"]
        for short, kind in zip("hgm", LAYER_KINDS, strict=True):
            parts.append(short + ",".join(map(str, self.per_layer(kind))))
        return PREFIX + "-".join([*parts, f"p{self.pos_encoding}"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            **{kind: self.per_layer(kind) for kind in LAYER_KINDS},
            "pos_encoding": self.pos_encoding,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any], space: str = "gpt") -> GPTGenotype:
        n_layer = int(fields["n_layer"])
        choices: list[tuple[str, Any]] = [("n_embd", int(fields["n_embd"])), ("n_layer", n_layer)]
        for kind in LAYER_KINDS:
            values = list(fields[kind])
            if len(values) != n_layer:
                raise GenotypeError(
                    f"gpt genotype: n_layer={n_layer} needs {n_layer} {kind} values, got {values}."
                )
        for i in range(n_layer):
            choices += [(layer_label(kind, i), int(fields[kind][i])) for kind in LAYER_KINDS]
        choices.append(("pos_encoding", str(fields.get("pos_encoding", "learned"))))
        return cls(choices=tuple(choices), space=space)

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> GPTGenotype:
        try:
            return cls.from_fields(data, data.get("space", "gpt"))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise GenotypeError(
                f"{source}: a gpt genotype has the fields n_embd, n_layer, n_head, "
                f"n_query_groups, intermediate_size (per layer) and pos_encoding ({err!r})."
            ) from None

    @classmethod
    def matches_text(cls, text: str) -> bool:
        return text.strip().startswith(PREFIX)

    @classmethod
    def from_text(cls, text: str, space: str = "gpt") -> GPTGenotype:
        try:
            e, layers, h, g, m, p = text.strip()[len(PREFIX) :].split("-")
            fields = {
                "n_embd": int(e[1:]),
                "n_layer": int(layers[1:]),
                "n_head": [int(v) for v in h[1:].split(",") if v],
                "n_query_groups": [int(v) for v in g[1:].split(",") if v],
                "intermediate_size": [int(v) for v in m[1:].split(",") if v],
                "pos_encoding": p[1:],
            }
            return cls.from_fields(fields, space)
        except (ValueError, IndexError):
            raise GenotypeError(
                f"gpt genotype text {text!r}: expected 'gpt:e<n_embd>-l<n_layer>-h<heads,...>-"
                "g<groups,...>-m<mlp widths,...>-p<learned|rope|none>'."
            ) from None


GENOTYPE_TYPES["gpt"] = GPTGenotype


class GPTSpace(ModuleSpace):
    """The decoder-only LM space (module docstring). ``C`` scales every width by
    ``C / head_size`` (C becomes the head width) and ``layers`` shifts the depths so the largest
    is ``layers`` (small test sizes)."""

    name = "gpt"
    genotype_type = GPTGenotype
    layers_unit = "blocks (largest depth)"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        n_embd: Sequence[int] = (192, 384, 768),
        n_layer: Sequence[int] = (10, 11, 12),
        n_head: Sequence[int] = (4, 8, 12),
        n_query_groups: Sequence[int] | None = None,
        intermediate_size: Sequence[int] = (1536, 2304, 3072),
        pos_encoding: Sequence[str] = ("learned",),
        head_size: int = 64,
        bias: bool = True,
        tied: bool = True,
        C: int | None = None,
        layers: int | None = None,
        ops: Sequence[str] = (),
    ):
        if list(ops):
            raise ValueError(
                f"search_space.ops={list(ops)} does not apply to search_space=gpt: its choices "
                "are n_embd, n_layer, n_head, n_query_groups, intermediate_size, pos_encoding."
            )
        if len(input_shape) != 1:
            raise ValueError(
                f"data.input_shape={list(input_shape)}: search_space=gpt reads token ids "
                "[context] (data=text)."
            )
        bad = [p for p in pos_encoding if p not in POSITIONS]
        if bad or not pos_encoding:
            raise ValueError(
                f"search_space.pos_encoding={list(pos_encoding)}: valid choices are "
                f"{', '.join(POSITIONS)}."
            )
        if C is not None:
            scale = C / head_size
            n_embd = sorted({max(1, round(e * scale)) for e in n_embd})
            intermediate_size = sorted({max(1, round(m * scale)) for m in intermediate_size})
            head_size = C
        if layers is not None:
            shift = max(n_layer) - layers
            n_layer = sorted({d - shift for d in n_layer if d - shift >= 1}) or [layers]
        self.options = {
            "n_embd": list(n_embd), "n_layer": list(n_layer), "n_head": list(n_head),
            "n_query_groups": None if n_query_groups is None else list(n_query_groups),
            "intermediate_size": list(intermediate_size),
            "pos_encoding": list(pos_encoding), "head_size": head_size, "bias": bias, "tied": tied,
        }  # fmt: skip
        model = {"_target_": f"{__name__}.GPTSupernetModel", **self.options}
        super().__init__(input_shape, num_classes, model=model, C=C, layers=layers)

    def size_arguments(self, C: int | None, layers: int | None) -> dict[str, int | None]:
        if (C is not None and C != self.C) or (layers is not None and layers != self.layers):
            raise ValueError(
                f"retrain.C={C} / retrain.layers={layers}: a gpt child is the genotype's own "
                "network (its widths and depth are decisions); use retrain=gpt (C and layers "
                "null)."
            )
        return {}

    @classmethod
    def banner(cls, options: Mapping[str, Any]) -> str:
        keys = ("n_embd", "n_layer", "n_head", "n_query_groups", "intermediate_size",
                "pos_encoding", "head_size")  # fmt: skip
        return "gpt (" + ", ".join(f"{k}={options.get(k)}" for k in keys) + ")"

    @classmethod
    def child_banner(cls, network: str, C: int | None, layers: int | None) -> str:
        return "the genotype's GPT"

    def genotype_of(self, columns: Sequence[int]) -> GPTGenotype:
        cols = dict(zip((d.label for d in self.decisions), columns, strict=True))
        depth_decision = next(d for d in self.decisions if d.label == "n_layer")
        depth = depth_decision.choices[cols["n_layer"]]
        choices, options = [], []
        for d in self.decisions:
            options.append((d.label, d.choices))
            k = cols[d.label]
            if d.label.startswith(LAYER_KINDS) and int(d.label.rsplit("_", 1)[1]) >= depth:
                k = 0  # an unused layer's choice: canonical (it changes nothing)
            choices.append((d.label, d.choices[k]))
        if "pos_encoding" not in cols:  # one encoding given: a fixed option, not a decision
            choices.append(("pos_encoding", self.options["pos_encoding"][0]))
            options.append(("pos_encoding", (self.options["pos_encoding"][0],)))
        return GPTGenotype(choices=tuple(choices), options=tuple(options), space=self.name)

    def resolve(self, genotype: ModuleGenotype) -> GPTGenotype:
        if not isinstance(genotype, GPTGenotype):
            raise GenotypeError(f"not a gpt genotype: {genotype!r}.")
        given = genotype.choice_map()
        cols = []
        for d in self.decisions:
            if d.label in given:
                try:
                    cols.append(d.index_of(given[d.label]))
                except ChoiceError as err:
                    raise GenotypeError(f"gpt genotype {genotype}: {err}") from None
            elif d.label.startswith(LAYER_KINDS):
                cols.append(0)  # a layer the genotype does not use
            else:
                raise GenotypeError(f"gpt genotype without {d.label!r}: {genotype}.")
        resolved = self.genotype_of(cols)
        if resolved.to_dict() != genotype.to_dict():
            raise GenotypeError(
                f"gpt genotype {genotype} does not fit this space: as the space reads it, "
                f"{resolved} (its choices are {self.describe()})."
            )
        return resolved

    def reference_genotype(self) -> GPTGenotype:
        return self.genotype_of([d.default for d in self.decisions])
