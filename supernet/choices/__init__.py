"""Search your own model: choice primitives in plain PyTorch.

Write the model as usual, with choices where the search should decide::

    from supernet.choices import Conv2d, LayerChoice, ValueChoice

    width = ValueChoice([16, 24, 32], label="width")
    self.conv = Conv2d(1, width, ValueChoice([3, 5], label="kernel"))
    self.act = LayerChoice({"relu": nn.ReLU(), "gelu": nn.GELU()}, label="act")

(``MultiheadAttention``, ``InputChoice``, ``Repeat`` likewise) and run ``python train.py search_space=module search_space.model=my_module.MyModel``: the
choices are discovered, one α row is made per decision (label), every strategy searches them,
and the fixed model (each choice replaced by the chosen module or value) is retrained and
exported. ``supernet/spaces/module.py`` is that space.
"""

from supernet.choices.attention import Attention, MultiheadAttention
from supernet.choices.base import ChoiceModule
from supernet.choices.decision import ChoiceError, Decision
from supernet.choices.layers import BatchNorm2d, Conv2d, LayerNorm, Linear
from supernet.choices.model import assignment_of, discover, fix_model, has_choices
from supernet.choices.modules import ChosenInputs, InputChoice, LayerChoice, Repeat
from supernet.choices.tokens import ClassTokenPositions, TokenPositions
from supernet.choices.values import ValueChoice, ValueExpr

__all__ = [
    "Attention",
    "MultiheadAttention",
    "BatchNorm2d",
    "ChoiceError",
    "ClassTokenPositions",
    "ChoiceModule",
    "ChosenInputs",
    "Conv2d",
    "Decision",
    "InputChoice",
    "LayerChoice",
    "LayerNorm",
    "Linear",
    "Repeat",
    "TokenPositions",
    "ValueChoice",
    "ValueExpr",
    "assignment_of",
    "discover",
    "fix_model",
    "has_choices",
]
