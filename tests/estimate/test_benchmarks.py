"""The benchmark readers on files in the real on-disk formats (``tests/helpers/benchmark_files``):
NAS-Bench-201 / NATS-Bench lookups (``benchmark``), HW-NAS-Bench (``hw_nas_bench``),
NAS-Bench-301 (``nb301``, against a stand-in for its package) and the anytime benchmark curve.
Every number is checked against what the fixture wrote."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
import types
from statistics import fmean

import lightning as L
import pytest
import torch

from nas.core.genotype import resolve_genotype
from nas.estimate import ESTIMATORS, build_estimator
from nas.estimate import benchmark as bm
from nas.estimate.benchmarks import files, hw_nas_bench, nb201_file, nb301
from nas.search.benchmark_curve import CURVE_FILE, PLOT_FILE, BenchmarkCurve, write_curve
from supernet.genotypes import Genotype, NB201Genotype
from supernet.spaces.darts import DARTS_OPS
from tests.helpers import benchmark_files as bf
from tests.helpers.modules import nb201

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
VALID = {
    "cifar10": ("cifar10-valid", "x-valid"),
    "cifar100": ("cifar100", "x-valid"),
    "ImageNet16-120": ("ImageNet16-120", "x-valid"),
}
TEST = {
    "cifar10": ("cifar10", "ori-test"),
    "cifar100": ("cifar100", "x-test"),
    "ImageNet16-120": ("ImageNet16-120", "x-test"),
}


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    for name in ("NASBENCH201_FILE", "HW_NAS_BENCH_FILE", "NB301_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    nb201_file.clear_cache()
    hw_nas_bench.clear_cache()
    nb301.clear_cache()
    files.clear_hash_cache()
    yield
    nb201_file.clear_cache()
    hw_nas_bench.clear_cache()
    nb301.clear_cache()


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("benchmarks")
    bf.write_nb201_pth(d / "NAS-Bench-201-v1_1-096897.pth")
    bf.write_nats_dir(d / "NATS-tss-v1_0-3ffb9-simple")
    bf.write_nats_pickle(d / "NATS-tss-v1_0-3ffb9.pickle.pbz2")
    bf.write_hw_nas_bench(d / "HW-NAS-Bench-v1_0.pickle")
    bf.write_hw_nas_bench(d / "hw_no_config.pickle", with_config=False, with_fbnet=False)
    return d


@pytest.fixture(scope="module")
def pth(bench_dir):
    return str(bench_dir / "NAS-Bench-201-v1_1-096897.pth")


def expected(index: int, hp: str = "200") -> dict[str, float]:
    """What a lookup must report: the mean over the fixture's seeds at the last epoch."""
    out = {}
    for d in DATASETS:
        for split, (trained_on, eval_set) in (("valid", VALID[d]), ("test", TEST[d])):
            seeds = bf.SEEDS[hp][trained_on]
            out[f"{d}_{split}_acc"] = fmean(
                bf.final_acc(index, trained_on, eval_set, s, hp) for s in seeds
            )
            out[f"{d}_{split}_trials"] = len(seeds)
        out[f"{d}_nb201_flops_M"] = bf.FLOPS(index, d)
        out[f"{d}_nb201_params_M"] = bf.PARAMS(index, d)
        out[f"{d}_nb201_latency_ms"] = 1000 * bf.LATENCY_S(index, d)
    return out


def assert_matches(result: dict, want: dict) -> None:
    assert result["available"] is True, result
    for key, value in want.items():
        assert result[key] == pytest.approx(value), key


# NAS-Bench-201 / NATS-Bench.


@pytest.mark.parametrize("index", [0, 3])
def test_nb201_pth_lookup_is_the_mean_over_seeds_at_the_last_epoch(pth, index):
    result = bm.lookup(bf.NB201_ARCHS[index], pth)
    assert result["index"] == index and result["hp"] == "200" and result["source"] == "file"
    assert_matches(result, expected(index))
    if index == 0:  # by hand: CIFAR-10 ori-test of seeds 777 and 888 = 83.7 and 84.5
        assert result["cifar10_test_acc"] == pytest.approx((83.7 + 84.5) / 2)
        # The CIFAR-10 validation is cifar10-valid's x-valid, not a set of the cifar10 trials.
        assert result["cifar10_valid_acc"] == pytest.approx((80.3 + 81.1) / 2)
    assert result["benchmark_file"] == "NAS-Bench-201-v1_1-096897.pth"
    with open(pth, "rb") as f:
        assert result["benchmark_sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert result["benchmark_format"] == "nb201-pth"


def test_nb201_12_epoch_schedule(pth):
    result = bm.lookup(bf.NB201_ARCHS[2], pth, hp="12")
    assert result["hp"] == "12"
    # cifar10-valid was trained twice (seeds 111, 777) under the 12-epoch schedule, the rest once.
    assert result["cifar10_valid_trials"] == 2 and result["cifar10_test_trials"] == 1
    assert_matches(result, expected(2, hp="12"))


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("NATS-tss-v1_0-3ffb9-simple", "nats-tss-dir"),
        ("NATS-tss-v1_0-3ffb9.pickle.pbz2", "nats-tss-pickle"),
    ],
)
def test_nats_tss_files_give_the_same_results(bench_dir, name, fmt):
    result = bm.lookup(bf.NB201_ARCHS[4], str(bench_dir / name))
    assert result["benchmark_format"] == fmt and result["index"] == 4
    assert_matches(result, expected(4))
    meta = bench_dir / name / "meta.pickle.pbz2" if fmt == "nats-tss-dir" else bench_dir / name
    assert result["benchmark_sha256"] == hashlib.sha256(meta.read_bytes()).hexdigest()


def test_unavailable_lookups_say_why_in_one_line(pth, bench_dir, tmp_path, monkeypatch):
    cases = {
        "no benchmark file": bm.lookup(bf.NB201_ARCHS[0], None),
        "does not exist": bm.lookup(bf.NB201_ARCHS[0], str(tmp_path / "missing.pth")),
        "not in the benchmark": bm.lookup(bf.ABSENT, pth),
        "has no results": bm.lookup(bf.NB201_ARCHS[bf.NOT_EVALUATED], pth),
        "has no hp=90 results": bm.lookup(bf.NB201_ARCHS[0], pth, hp="90"),
    }
    monkeypatch.setattr(bm, "api_available", lambda: False)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a benchmark at all")
    cases["unsupported benchmark file: junk.pth"] = bm.lookup(bf.NB201_ARCHS[0], str(junk))
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, other)
    cases["expected keys"] = bm.lookup(bf.NB201_ARCHS[0], str(other))
    sss = tmp_path / "sss.pth"
    torch.save({"meta_archs": ["64:64:64:64:64"], "arch2infos": {}, "evaluated_indexes": []}, sss)
    cases["size-space"] = bm.lookup(bf.NB201_ARCHS[0], str(sss))
    for words, result in cases.items():
        assert result["available"] is False
        assert words in result["reason"] and "\n" not in result["reason"], result


def test_a_pickle_naming_code_is_refused_not_run(tmp_path, monkeypatch):
    marker = tmp_path / "executed"
    bad = bf.write_unsafe_pickle(tmp_path / "evil.pth", marker)
    monkeypatch.setattr(bm, "api_available", lambda: False)
    result = bm.lookup(bf.NB201_ARCHS[0], str(bad))
    assert result["available"] is False and "not plain data" in result["reason"]
    with pytest.raises(files.UnsupportedFile, match="not plain data"):
        files.load_pickle(bad)
    assert not marker.exists()


def test_the_table_and_hash_are_read_once_per_file(pth, monkeypatch):
    reads = []
    read = nb201_file._read
    monkeypatch.setattr(nb201_file, "_read", lambda p: reads.append(p) or read(p))
    for arch in bf.NB201_ARCHS[:3] * 2:
        assert bm.lookup(arch, pth)["available"]
    assert len(reads) == 1 and len(files._HASHES) == 1  # hashed once: cached by path/mtime
    st = os.stat(pth)
    os.utime(pth, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file changed: read again
    assert bm.lookup(bf.NB201_ARCHS[0], pth)["available"]
    assert len(reads) == 2 and len(files._HASHES) == 2
    assert len(nb201_file._TABLES) == 1  # the stale table of the same path is dropped


class FullAPI:
    """The official API's shape (``nas_201_api`` / ``nats_bench``) over the fixture's truth."""

    def __init__(self):
        self.calls = []

    def query_index_by_arch(self, arch):
        return bf.NB201_ARCHS.index(arch) if arch in bf.NB201_ARCHS else -1

    def get_more_info(self, index, dataset, iepoch=None, hp="12", is_random=True):
        assert is_random is False
        self.calls.append((index, dataset, hp))
        seeds = bf.SEEDS[hp][dataset]

        def acc(eval_set):
            return fmean(bf.final_acc(index, dataset, eval_set, s, hp) for s in seeds)

        if dataset == "cifar10-valid":
            return {"valid-accuracy": acc("x-valid"), "test-accuracy": acc("ori-test")}
        if dataset == "cifar10":
            return {"test-accuracy": acc("ori-test")}
        return {"valid-accuracy": acc("x-valid"), "test-accuracy": acc("x-test")}

    def get_cost_info(self, index, dataset, hp="12"):
        return {
            "flops": bf.FLOPS(index, dataset),
            "params": bf.PARAMS(index, dataset),
            "latency": bf.LATENCY_S(index, dataset),
        }


class AccuracyOnlyAPI:
    """An API that answers only the test accuracies (as tests/supernet/test_nb201.py's)."""

    def query_index_by_arch(self, arch):
        return 0

    def get_more_info(self, index, dataset, hp, is_random):
        return {
            "test-accuracy": {"cifar10": 94.37, "cifar100": 73.51, "ImageNet16-120": 47.31}[dataset]
        }


def test_api_objects_give_the_same_fields():
    api = FullAPI()
    result = bm.lookup(bf.NB201_ARCHS[1], api=api)
    assert result["source"] == "api" and result["index"] == 1
    assert_matches(result, {k: v for k, v in expected(1).items() if not k.endswith("_trials")})
    assert (1, "cifar10-valid", "200") in api.calls
    short = bm.lookup(bf.NB201_ARCHS[1], api=AccuracyOnlyAPI())
    assert short["cifar10_test_acc"] == 94.37 and "cifar10_valid_acc" not in short
    assert "\n" not in short["extras_reason"]
    assert bm.lookup(bf.ABSENT, api=api)["available"] is False


def test_a_format_the_reader_does_not_know_goes_to_the_installed_api(tmp_path, monkeypatch):
    created = []
    fake = types.ModuleType("nats_bench")
    fake.__spec__ = importlib.machinery.ModuleSpec("nats_bench", None)
    fake.create = lambda path, space, fast_mode, verbose: (
        created.append((space, fast_mode)) or FullAPI()
    )
    monkeypatch.setitem(sys.modules, "nats_bench", fake)
    monkeypatch.setattr(bm, "_APIS", {})
    odd = tmp_path / "NATS-tss-v2.pickle.pbz2"
    odd.write_bytes(b"BZh9 a future format")
    result = bm.lookup(bf.NB201_ARCHS[2], str(odd))
    assert result["source"] == "api" and created == [("tss", False)]
    assert_matches(result, {k: v for k, v in expected(2).items() if not k.endswith("_trials")})
    assert result["benchmark_file"] == odd.name
    assert result["benchmark_sha256"] == hashlib.sha256(odd.read_bytes()).hexdigest()


def test_the_benchmark_estimator_reads_the_space_file(pth, monkeypatch):
    space = nb201(benchmark_file=pth)
    estimator = build_estimator("benchmark")
    assert estimator.applies_to(space)
    assert not estimator.applies_to(darts_space())
    genotype = NB201Genotype.from_text(bf.NB201_ARCHS[3])
    assert_matches(estimator.estimate(space, genotype), expected(3))
    monkeypatch.setenv("NASBENCH201_FILE", pth)  # the environment's file when the space has none
    assert build_estimator("benchmark", hp="12").estimate(nb201(), genotype)["hp"] == "12"


def darts_space():
    from supernet.spaces import build_space

    return build_space("darts", (3, 8, 8), 10, C=4, layers=3, se=False, benchmark_file=None)


# HW-NAS-Bench.


def test_hw_nas_bench_reports_every_device_for_every_dataset(bench_dir, monkeypatch):
    monkeypatch.setenv("HW_NAS_BENCH_FILE", str(bench_dir / "HW-NAS-Bench-v1_0.pickle"))
    estimator = build_estimator("hw_nas_bench")
    space = nb201()
    assert "hw_nas_bench" in ESTIMATORS and estimator.applies_to(space)
    result = estimator.estimate(space, NB201Genotype.from_text(bf.NB201_ARCHS[2]))
    assert result["available"] is True and result["index"] == 2
    assert (
        result["benchmark_file"] == "HW-NAS-Bench-v1_0.pickle"
        and len(result["benchmark_sha256"]) == 64
    )
    for d in bf.HW_DATASETS:
        for m in bf.HW_NB201_METRICS:
            unit = "_ms" if m.endswith("latency") else "_mJ" if m.endswith("energy") else ""
            assert result[f"{d}_{m}{unit}"] == bf.hw_value(2, d, m)
    assert result["cifar10_edgegpu_latency_ms"] == 3.0  # (2 + 1) * 1 + 0


def test_hw_nas_bench_index_from_the_nb201_file_and_reasons(bench_dir, pth, tmp_path):
    hw_file, no_config = bench_dir / "HW-NAS-Bench-v1_0.pickle", bench_dir / "hw_no_config.pickle"
    genotype = NB201Genotype.from_text(bf.NB201_ARCHS[4])

    def estimate(space=None, arch=genotype, **options):
        return hw_nas_bench.HWNASBench(**options).estimate(space or nb201(), arch)

    # The file without a config listing: the index comes from the NAS-Bench-201 file.
    result = estimate(nb201(benchmark_file=pth), file=str(no_config))
    assert result["index"] == 4
    assert result["cifar100_fpga_energy_mJ"] == bf.hw_value(4, "cifar100", "fpga_energy")
    only = estimate(file=str(hw_file), datasets=["cifar10"])
    assert only["available"] and not any(k.startswith("cifar100") for k in only)
    junk = tmp_path / "junk.pickle"
    junk.write_bytes(b"\x80\x03}q\x00.")  # an empty dict
    absent = NB201Genotype.from_text(bf.ABSENT)
    reasons = {
        "no HW-NAS-Bench file": estimate(),
        "does not exist": estimate(file=str(tmp_path / "x")),
        "no 'nasbench201'": estimate(file=str(junk)),
        "lists no arch strings": estimate(file=str(no_config)),
        "not in HW-NAS-Bench": estimate(arch=absent, file=str(hw_file)),
        "no dataset": estimate(nb201(benchmark_file=pth), file=str(no_config), datasets=["x"]),
    }
    for words, result in reasons.items():
        assert result["available"] is False and words in result["reason"], result
        assert "\n" not in result["reason"]


def test_hw_nas_bench_applies_to_nb201_only():
    from supernet.spaces import build_space

    estimator = hw_nas_bench.HWNASBench()
    mbconv = build_space("mbconv", (3, 32, 32), 10, layout="cifar", layers=1)
    assert not estimator.applies_to(mbconv)  # its ops and widths are not FBNet's
    assert not estimator.applies_to(darts_space())


def test_fbnet_costs_sum_the_block_table(bench_dir):
    table = hw_nas_bench.load_hw_table(bench_dir / "HW-NAS-Bench-v1_0.pickle")
    # Fixture values by entry kind: block 1, skip 100, stem/head conv 10^4, pool 10^6, FC 10^7,
    # times (metric position + 1).
    all_k3_e1 = hw_nas_bench.fbnet_metrics(table, [0] * 22, "cifar100")
    assert all_k3_e1["edgegpu_latency"] == 22 + 2 * 10_000 + 1e6 + 1e7
    assert set(all_k3_e1) == set(bf.HW_FBNET_METRICS)
    skips = hw_nas_bench.fbnet_metrics(table, [8, 8, 8] + [3] * 19, "ImageNet")
    assert skips["fpga_energy"] == 8 * (19 + 300 + 2 * 10_000 + 1e6 + 1e7)
    keys = hw_nas_bench.fbnet_block_keys([0] * 22, "cifar100")
    assert keys[0] == "ConvNorm_H32_W32_Cin3_Cout16_kernel3_stride1_group1" and len(keys) == 26
    assert "ConvBlock_H16_W16_Cin32_Cout64_exp1_kernel3_stride2_group1" in keys
    for bad in ([0] * 21, [9] * 22):
        with pytest.raises(KeyError, match="22 op indices"):
            hw_nas_bench.fbnet_metrics(table, bad, "cifar100")
    with pytest.raises(KeyError, match="FBNet dataset"):
        hw_nas_bench.fbnet_metrics(table, [0] * 22, "cifar10")


# NAS-Bench-301.


def test_nb301_ops_are_darts_ops_without_none():
    assert set(nb301.NB301_OPS) == set(DARTS_OPS) - {"none"}


def test_darts_genotypes_convert_to_nb301_namedtuples():
    g = resolve_genotype("darts_v2")
    converted = nb301.to_nb301_genotype(g)
    assert converted._fields == ("normal", "normal_concat", "reduce", "reduce_concat")
    assert converted.normal == [tuple(p) for p in g.normal]
    assert converted.reduce == [tuple(p) for p in g.reduce]
    assert converted.normal_concat == converted.reduce_concat == [2, 3, 4, 5]
    pairs = list(g.normal)
    rejected = {
        "not in NAS-Bench-301": Genotype(
            [("none", 0), *pairs[1:]], (2, 3, 4, 5), g.reduce, (2, 3, 4, 5)
        ),
        "twice": Genotype(
            [("sep_conv_3x3", 0), ("skip_connect", 0), *pairs[2:]],
            (2, 3, 4, 5),
            g.reduce,
            (2, 3, 4, 5),
        ),
        "4 nodes": Genotype(pairs[:6], (2, 3, 4), g.reduce[:6], (2, 3, 4)),
        "searches both cells": Genotype(pairs, (2, 3, 4, 5), (), (), reduce_cell="gdas_frc"),
        "DARTS cells": NB201Genotype.from_text(bf.NB201_ARCHS[0]),
    }
    for words, genotype in rejected.items():
        with pytest.raises(ValueError, match=words):
            nb301.to_nb301_genotype(genotype)


def _nb301_module(calls: list) -> types.ModuleType:
    """A stand-in for ``nasbench301``: ``load_ensemble(dir)`` -> an object with the real
    ``SurrogateAPI.predict(config, representation, with_noise)``, reading the genotype as its
    converter does (``convert_genotype_to_config``: ``.normal``/``.reduce``, 2 pairs a node)."""

    class Surrogate:
        def __init__(self, directory):
            self.directory = directory

        def predict(self, config, representation, with_noise=True):
            assert representation == "genotype"
            calls.append((os.path.basename(self.directory), with_noise))
            n_conv = 0
            for cell in ("normal", "reduce"):
                pairs = getattr(config, cell)
                for node in range(4):
                    two = pairs[2 * node : 2 * node + 2]
                    assert len({i for _, i in two}) == 2
                    n_conv += sum(op.startswith(("sep", "dil")) for op, _ in two)
            return 1000.0 + n_conv if "runtime" in self.directory else 90.0 + 0.25 * n_conv

    module = types.ModuleType("nasbench301")
    module.__spec__ = importlib.machinery.ModuleSpec("nasbench301", None)
    module.load_ensemble = lambda directory: (
        calls.append(("load", os.path.basename(directory))) or Surrogate(directory)
    )
    return module


def test_nb301_estimator_predicts_through_the_package(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "nasbench301", _nb301_module(calls))
    for model in ("xgb_v0.9", "lgb_runtime_v0.9"):
        member = tmp_path / "nb_models_0.9" / model / "surrogate_model_0"
        member.mkdir(parents=True)
        (member / "surrogate_model.model").write_bytes(b"")
    monkeypatch.setenv("NB301_MODELS_DIR", str(tmp_path))
    estimator = build_estimator("nb301")
    space = darts_space()
    assert estimator.applies_to(space) and not estimator.applies_to(nb201())
    g = resolve_genotype("darts_v2")
    n_conv = sum(op.startswith(("sep", "dil")) for op, _ in (*g.normal, *g.reduce))
    result = estimator.estimate(space, g)
    assert result["available"] is True
    assert result["cifar10_valid_acc"] == 90.0 + 0.25 * n_conv
    assert result["runtime_s"] == 1000.0 + n_conv and result["model"] == "xgb"
    estimator.estimate(space, g)
    loads = [c for c in calls if c[0] == "load"]
    assert loads == [("load", "xgb_v0.9"), ("load", "lgb_runtime_v0.9")]  # once per process
    assert all(noise is False for name, noise in calls if name != "load")


def test_nb301_reasons(tmp_path, monkeypatch):
    space, g = darts_space(), resolve_genotype("darts_v2")
    with monkeypatch.context() as m:  # the package is not installed
        m.setattr(nb301.importlib.util, "find_spec", lambda name: None)
        assert nb301.NB301Surrogate().estimate(space, g)["reason"] == "nasbench301 not installed"
    calls: list = []
    monkeypatch.setitem(sys.modules, "nasbench301", _nb301_module(calls))
    reasons = {
        "no NAS-Bench-301 models directory": nb301.NB301Surrogate().estimate(space, g),
        "no xgb surrogate ensemble": nb301.NB301Surrogate(str(tmp_path)).estimate(space, g),
    }
    (tmp_path / "xgb_v1.0" / "m").mkdir(parents=True)
    (tmp_path / "xgb_v1.0" / "m" / "surrogate_model.model").write_bytes(b"")
    bad = Genotype([("none", 0), *g.normal[1:]], (2, 3, 4, 5), g.reduce, (2, 3, 4, 5))
    reasons["not in NAS-Bench-301"] = nb301.NB301Surrogate(str(tmp_path)).estimate(space, bad)
    for words, result in reasons.items():
        assert result["available"] is False and words in result["reason"], result
    assert calls == []


# The anytime benchmark curve.


class TinySearch(L.LightningModule):
    """The least a search module offers the callback: ``space`` and ``genotype()``, here a
    fixed sequence of cells, one per epoch."""

    def __init__(self, space, archs):
        super().__init__()
        self.space, self.archs = space, archs
        self.w = torch.nn.Parameter(torch.zeros(1))

    def genotype(self):
        return NB201Genotype.from_text(self.archs[min(self.current_epoch, len(self.archs) - 1)])

    def training_step(self, batch, batch_idx):
        return (self.w - batch[0]).square().mean()

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(2, 1)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module, callback, tmp_path, epochs=3):
    trainer = L.Trainer(
        max_epochs=epochs,
        limit_train_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
        callbacks=[callback],
    )
    trainer.fit(module)
    return trainer


def test_benchmark_curve_logs_and_writes_each_epochs_lookup(pth, tmp_path):
    archs = [bf.NB201_ARCHS[3], bf.NB201_ARCHS[0], bf.NB201_ARCHS[0]]
    callback = BenchmarkCurve(tmp_path / "run")
    trainer = _fit(TinySearch(nb201(benchmark_file=pth), archs), callback, tmp_path)
    metrics = trainer.callback_metrics
    for d in DATASETS:
        assert float(metrics[f"search/benchmark_{d}_test_acc"]) == pytest.approx(
            expected(0)[f"{d}_test_acc"], rel=1e-6
        )
    data = json.loads((tmp_path / "run" / CURVE_FILE).read_text())
    assert data["benchmark_file"] == "NAS-Bench-201-v1_1-096897.pth"
    curve = data["curve"]
    assert [p["epoch"] for p in curve] == [0, 1, 2]
    assert [p["genotype"] for p in curve] == archs
    for point, arch in zip(curve, archs):
        assert_matches(point, expected(bf.NB201_ARCHS.index(arch)))
        assert "benchmark_sha256" not in point  # once, at the top
    assert (tmp_path / "run" / PLOT_FILE).stat().st_size > 0


def test_benchmark_curve_without_a_benchmark_keeps_the_reasons(tmp_path):
    callback = BenchmarkCurve(tmp_path / "run")
    trainer = _fit(TinySearch(nb201(), [bf.NB201_ARCHS[0]]), callback, tmp_path, epochs=2)
    assert not any(k.startswith("search/benchmark_") for k in trainer.callback_metrics)
    curve = json.loads((tmp_path / "run" / CURVE_FILE).read_text())["curve"]
    assert len(curve) == 2 and all("no benchmark file" in p["reason"] for p in curve)
    assert not (tmp_path / "run" / PLOT_FILE).exists()
    # A space the lookup does not apply to: nothing looked up, nothing written.
    other = BenchmarkCurve(tmp_path / "other")
    trainer = types.SimpleNamespace(is_global_zero=True, current_epoch=0, global_step=0)
    module = types.SimpleNamespace(space=darts_space(), genotype=lambda: 1 / 0)
    other.on_train_epoch_end(trainer, module)
    other.on_fit_end(trainer, module)
    assert other.curve == [] and not (tmp_path / "other").exists()


def test_write_curve_resumed_points_replace_redone_epochs(pth, tmp_path):
    callback = BenchmarkCurve(tmp_path)
    space = nb201(benchmark_file=pth)
    trainer = types.SimpleNamespace(is_global_zero=True, current_epoch=0, global_step=0)
    logged = {}
    module = types.SimpleNamespace(
        space=space,
        genotype=lambda: NB201Genotype.from_text(bf.NB201_ARCHS[1]),
        log=lambda name, value, **kw: logged.__setitem__(name, (value, kw)),
    )
    for epoch in (0, 1, 2, 1):  # the last: a resume from the end of epoch 0
        trainer.current_epoch = epoch
        callback.on_train_epoch_end(trainer, module)
    assert [p["epoch"] for p in callback.curve] == [0, 1]
    assert logged["search/benchmark_cifar100_valid_acc"][1]["rank_zero_only"] is True
    paths = write_curve(callback.curve, tmp_path)
    assert paths["benchmark_curve_plot"].exists()
    restored = BenchmarkCurve(tmp_path)
    restored.load_state_dict(callback.state_dict())
    assert restored.curve == callback.curve


def test_an_nb201_search_with_its_benchmark_file_draws_the_anytime_curve(
    pth, tmp_path, monkeypatch
):
    """search_space.benchmark_file given: every search epoch's genotype is looked up, its
    accuracies join the epoch's history line, benchmark_curve.json has one point per epoch and
    summary.json points to it. The fixture holds 5 cells, not the ones a 2-epoch search picks:
    each genotype is answered with a fixture cell's record read from the file (its index
    chosen by the genotype's text), so every point is available."""
    import json
    import zlib

    from nas.estimate.benchmark import lookup
    from nas.estimate.benchmarks import nb201_file
    from tests.helpers.benchmark_files import NB201_ARCHS
    from tests.helpers.runs import read_summary, run_train_unlogged

    real_query = nb201_file.query

    def query(path, arch, hp="200"):
        stand_in = NB201_ARCHS[zlib.crc32(arch.encode()) % len(bf.EVALUATED)]
        return {**real_query(path, stand_in, hp), "arch": arch}

    monkeypatch.setattr(nb201_file, "query", query)

    run = tmp_path / "s"
    code = run_train_unlogged(
        monkeypatch, run, "stage=search", "search_space=nb201", "data=synthetic",
        "data.num_samples=64", "trainer.max_epochs=2", f"search_space.benchmark_file={pth}",
    )  # fmt: skip
    assert code == 0
    curve = json.loads((run / CURVE_FILE).read_text())
    history = [json.loads(x) for x in (run / "search_history.jsonl").read_text().splitlines()]
    assert [p["epoch"] for p in curve["curve"]] == [h["epoch"] for h in history] == [0, 1]
    for point, line in zip(curve["curve"], history):
        assert point["genotype"] == line["genotype"]
        expected = lookup(point["genotype"], str(pth))
        assert point["available"] and expected["available"]
        assert point["cifar10_test_acc"] == line["benchmark_cifar10_test_acc"]
        assert point["cifar10_valid_acc"] == line["benchmark_cifar10_valid_acc"]
        assert point["cifar10_test_acc"] == expected["cifar10_test_acc"]
    assert curve["benchmark_sha256"] and (run / PLOT_FILE).is_file()
    assert read_summary(run)["benchmark_curve"]["epochs"] == 2
