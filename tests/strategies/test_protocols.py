"""The components' contracts (``nas/strategies/protocols.py``): every registered component
fulfils its own, every strategy config builds one that does, a component that overrides only
what it must works, and the strategies package does not import the search."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch

from nas.strategies import Strategy, modifiers, regularizers
from nas.strategies.arch_grad import FirstOrder, SecondOrder
from nas.strategies.protocols import (
    ArchGradMode,
    Mixing,
    Modifier,
    ObjectiveRegularizer,
    Regularizer,
    Sampler,
    SearchState,
    SelectionRule,
    Selector,
)
from nas.strategies.samplers import SAMPLERS, SoftmaxSampler, build_sampler, register_sampler
from nas.strategies.selection import (
    SELECTION_RULES,
    EvolutionSelector,
    RandomSearchSelector,
    register_selection_rule,
)
from tests.helpers.config import compose_cfg, options
from tests.helpers.modules import nb201, random_batch, search_module
from tests.helpers.paths import ROOT


def exported_classes(package) -> list[type]:
    return [c for c in (getattr(package, n) for n in package.__all__) if inspect.isclass(c)]


# ---- every component fulfils its contract ---------------------------------------------------
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_registered_sampler_is_a_sampler(name):
    assert issubclass(SAMPLERS[name], Sampler)
    assert isinstance(build_sampler(name), Sampler)


@pytest.mark.parametrize("cls", exported_classes(modifiers), ids=lambda c: c.__name__)
def test_every_modifier_is_a_modifier(cls):
    assert issubclass(cls, Modifier)


@pytest.mark.parametrize("cls", exported_classes(regularizers), ids=lambda c: c.__name__)
def test_every_regularizer_is_a_regularizer(cls):
    assert issubclass(cls, Regularizer)


def test_the_multiplicative_hardware_penalty_is_an_objective_regularizer():
    assert issubclass(regularizers.HardwareCost, ObjectiveRegularizer)
    assert not issubclass(regularizers.BetaDecay, ObjectiveRegularizer)


@pytest.mark.parametrize("name", sorted(SELECTION_RULES))
def test_every_selection_rule_takes_probabilities_and_a_space(name):
    rule = SELECTION_RULES[name]
    assert isinstance(rule, SelectionRule)
    inspect.signature(rule).bind({}, None)  # rule(probs, space)


@pytest.mark.parametrize("cls", [FirstOrder, SecondOrder, RandomSearchSelector, EvolutionSelector])
def test_arch_grad_modes_and_selectors_fulfil_theirs(cls):
    assert issubclass(cls, ArchGradMode if "Order" in cls.__name__ else Selector)


@pytest.mark.parametrize("strategy", options("strategy"))
def test_every_strategy_config_builds_a_strategy_of_contracted_components(strategy):
    from nas.run.builders import strategy_from_config

    built = strategy_from_config(compose_cfg([f"strategy={strategy}"]))  # __post_init__ checks
    assert isinstance(built.sampler, Sampler)
    assert built.arch_grad is None or isinstance(built.arch_grad, ArchGradMode)


def test_the_search_module_is_a_search_state():
    m = search_module(nb201(), SoftmaxSampler())
    assert isinstance(m, SearchState)


def test_the_strategies_package_does_not_import_the_search():
    code = (
        "import sys, nas.strategies, nas.strategies.arch_grad, nas.strategies.modifiers;"
        "print(sorted(m for m in sys.modules if m.startswith(('nas.search', 'nas.run'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# ---- a component with only what it must ------------------------------------------------------
class HalfSoftmax(Sampler):
    """Only ``__call__``: every other hook is the base's."""

    def __call__(self, alphas):
        return Mixing({k: torch.softmax(a, -1) / 2 for k, a in alphas.items()})


class Bare(Modifier):
    """No hook at all."""


class Square(Regularizer):
    """Only ``__call__``."""

    def __call__(self, arch):
        return sum((a**2).sum() for a in arch.values())


def test_a_strategy_of_components_without_optional_hooks_searches():
    m = search_module(nb201(), HalfSoftmax(), modifiers=[Bare()], regularizers=[Square()])
    s = m.strategy
    s.on_epoch_start(0, 2, m)
    assert s.updates_arch(0) and s.supernet_options() == {} and s.arch_options() == {}
    arch = m.arch.as_dict()
    torch.testing.assert_close(s.mixing(arch).weights["cell"], torch.softmax(arch["cell"], -1) / 2)
    loss = torch.tensor(1.0)
    torch.testing.assert_close(s.arch_objective(loss, arch), loss + Square()(arch))
    before = m.arch.as_dict()["cell"].detach().clone()
    a_opt = torch.optim.Adam(m.arch.parameters(), lr=0.1)
    assert m.arch_step(random_batch(), random_batch(seed=1), a_opt).stepped
    assert m.weight_step(random_batch(), m.weight_optimizer).stepped
    assert not torch.equal(before, m.arch.as_dict()["cell"])
    s.load_state_dict(s.state_dict())
    s.restore(m)


def test_a_component_outside_its_contract_is_refused_by_name():
    class Duck:
        def mixing(self, mix, arch):
            return mix

    with pytest.raises(TypeError, match=r"modifiers\[0\].*Duck.*Modifier"):
        Strategy("t", SoftmaxSampler(), modifiers=[Duck()])


# ---- registries -----------------------------------------------------------------------------
def test_register_sampler_refuses_a_non_sampler_and_a_taken_name():
    with pytest.raises(TypeError, match="Sampler"):
        register_sampler("duck", object)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'softmax' is taken"):
        register_sampler("softmax", HalfSoftmax)
    assert register_sampler("softmax", SoftmaxSampler) is SoftmaxSampler  # the same: no-op


def test_build_sampler_names_the_valid_names_and_options():
    with pytest.raises(ValueError, match="Valid choices are: .*softmax"):
        build_sampler("sofmax")
    with pytest.raises(ValueError, match=r"tau_mx=1.*it takes: tau_max, tau_min, schedule"):
        build_sampler("gumbel_hard", tau_mx=1)


def test_register_selection_rule_refuses_a_taken_name():
    with pytest.raises(ValueError, match="'darts_top2' is taken"):
        register_selection_rule("darts_top2", lambda probs, space: None)
