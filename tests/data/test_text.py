"""``data=text`` (nas/data/text.py, nas/data/tokens.py): the embedded corpus, byte tokens,
``data.path`` files and folders, contiguous disjoint splits, the windows and their batches,
seeded order and resume, the GPT-2 tokenizer's refusal and plumbing, the settings' refusals,
and the language-modelling metrics (nas/core/lm_metrics.py)."""

from __future__ import annotations

import dataclasses
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from nas.core.lm_metrics import TokenLoss, lm_metrics
from nas.data import DataConfig, RetrainDataModule, SearchDataModule, validate_data_config
from nas.data import text as text_module
from nas.data.datasets import is_token_dataset, load_dataset, preprocessing, token_bytes
from nas.data.inputs import example_input
from nas.data.text import ByteTokenizer, get_tokenizer, load_text, read_corpus, split_tokens
from nas.data.tokens import TokenWindows

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
SAMPLE = "Größe: ∑ 1/n² — naïve café, 日本語 and emoji 🙂.\nSecond line\ttab.\n"


def text_cfg(**overrides) -> DataConfig:
    cfg = DataConfig(
        name="text", input_shape=[16], num_classes=256, mean=[], std=[], test_fraction=0.2
    )
    return dataclasses.replace(cfg, **overrides)


def write_corpus(path: Path, lines: int = 120) -> str:
    """A small UTF-8 file of distinct numbered lines (so any two positions are told apart)."""
    text = "".join(f"line {i:04d}: the quick brown fox, ünïcode {i % 7}\n" for i in range(lines))
    path.write_text(text, encoding="utf-8")
    return text


@pytest.fixture
def no_gpt2(monkeypatch):
    """As if neither tiktoken nor transformers were installed."""
    monkeypatch.setattr(text_module, "gpt2_backend", lambda: None)
    get_tokenizer.cache_clear()
    yield
    get_tokenizer.cache_clear()


# ----- the corpus and the byte tokens -----


def test_bytes_round_trip_and_ids():
    tok = ByteTokenizer()
    ids = tok.encode(SAMPLE)
    assert ids.dtype == torch.int64 and ids.numel() == len(SAMPLE.encode("utf-8"))
    assert int(ids.min()) >= 0 and int(ids.max()) < 256
    assert tok.decode(ids) == SAMPLE and tok.decode(ids.tolist()) == SAMPLE
    assert torch.equal(tok.token_bytes(), torch.ones(256, dtype=torch.long))


def test_embedded_corpus_ships_with_python_and_is_fixed():
    text, source = read_corpus(None)
    again, _ = read_corpus(None)
    assert text == again and len(text) > 100_000  # no download: Python's own help text
    assert source["corpus"] in ("pydoc_data.topics",) or "docstrings" in source["corpus"]
    splits = load_text(None, "bytes", 0.1)
    assert splits.source["bytes"] == len(text.encode("utf-8"))
    assert len(splits.source["sha256"]) == 64


def test_splits_are_contiguous_and_disjoint():
    ids = torch.arange(1000)
    train, test = split_tokens(ids, 0.1)
    assert test.numel() == 100 and torch.equal(torch.cat([train, test]), ids)

    splits = load_text(None, "bytes", 0.1)
    text, _ = read_corpus(None)
    whole = ByteTokenizer().encode(text)
    assert torch.equal(torch.cat([splits.train, splits.test]), whole)  # by position, in order
    assert splits.test.numel() == math.ceil(0.1 * whole.numel())


def test_path_file_and_folder(tmp_path):
    file_text = write_corpus(tmp_path / "one.txt", lines=5)
    splits = load_text(str(tmp_path / "one.txt"), "bytes", 0.2)
    assert ByteTokenizer().decode(torch.cat([splits.train, splits.test])) == file_text
    assert splits.source["corpus"] == str(tmp_path / "one.txt") and splits.source["files"] == 1

    folder = tmp_path / "notes"
    (folder / "b").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    (folder / "b" / "c.md").write_text("# c\n", encoding="utf-8")
    (folder / "a.txt").write_text("a text\n", encoding="utf-8")
    (folder / "d.py").write_text("print('d')\n", encoding="utf-8")
    (folder / "e.bin").write_bytes(b"\xff\xfe not text")  # not a text suffix: skipped
    (folder / ".hidden" / "x.txt").write_text("hidden\n", encoding="utf-8")  # hidden: skipped
    (folder / ".dot.txt").write_text("hidden\n", encoding="utf-8")
    text, source = read_corpus(str(folder))
    assert text == "a text\n" + "\n" + "# c\n" + "\n" + "print('d')\n"  # sorted a, b/c, d
    assert source == {"corpus": str(folder), "files": 3}


def test_path_refusals_name_the_key(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe bytes")
    with pytest.raises(ValueError, match=r"data.path: .*bad.txt is not UTF-8 .*offset 3"):
        read_corpus(str(tmp_path / "bad.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"data.path=.*empty.* without any .md / .py / .txt"):
        read_corpus(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match=r"data.path=.*missing.* does not exist"):
        read_corpus(str(tmp_path / "missing"))
    (tmp_path / "tiny.txt").write_text("too short", encoding="utf-8")
    module = RetrainDataModule(text_cfg(path=str(tmp_path / "tiny.txt")), batch_size=4, seed=0)
    with pytest.raises(ValueError, match=r"data.input_shape=\[16\]"):
        module.setup()


# ----- windows and the data modules -----


def test_windows_are_strided_and_stay_inside_their_split():
    stream = torch.arange(100, 150)  # 50 tokens
    windows = TokenWindows.strided(stream, 8)
    assert windows.starts.tolist() == [0, 8, 16, 24, 32, 40]  # 40 + 8 + 1 <= 50
    x, y = windows.batch(torch.tensor([5, 0]))
    assert x.shape == (2, 8) and y.shape == (16,) and x.dtype == y.dtype == torch.int64
    assert x[0].tolist() == list(range(140, 148)) and y[:8].tolist() == list(range(141, 149))
    assert torch.equal(y.view(2, 8)[:, :-1], x[:, 1:])  # y is x shifted by one
    assert len(TokenWindows.strided(torch.arange(8), 8)) == 0  # 8 tokens: no room for a target


def test_search_and_retrain_splits_by_position(tmp_path):
    write_corpus(tmp_path / "c.txt")
    cfg = text_cfg(path=str(tmp_path / "c.txt"), train_portion=0.6)
    data = load_dataset(cfg)
    search = SearchDataModule(cfg, batch_size=4, seed=0)
    search.setup()
    cut = int(0.6 * data.train.numel())
    assert torch.equal(search.weight_set.stream, data.train[:cut])  # first part: weights
    assert torch.equal(search.arch_set.stream, data.train[cut:])  # the rest: α
    retrain = RetrainDataModule(cfg, batch_size=4, seed=0, cutout=16)  # cutout: not applied
    retrain.setup()
    assert retrain.cutout == 0 and retrain.val_set is retrain.test_set
    assert torch.equal(retrain.train_set.stream, data.train)
    assert torch.equal(retrain.test_set.stream, data.test)
    for windows in (search.weight_set, search.arch_set, retrain.train_set, retrain.test_set):
        assert int(windows.starts.max()) + 16 + 1 <= windows.stream.numel()

    x, y = retrain.transform(next(iter(retrain.test_dataloader())), train=False)
    assert x.shape == (4, 16) and y.shape == (64,) and x.dtype == torch.int64
    assert torch.equal(x, data.test[:64].view(4, 16))  # evaluation in order, from the start
    info = retrain.token_info()
    assert info["tokenizer"] == "bytes" and info["splits"]["test"]["bytes_per_token"] == 1.0
    assert info["splits"]["test"]["windows"] == len(retrain.test_set)


def test_training_order_is_seeded(tmp_path):
    write_corpus(tmp_path / "c.txt")
    cfg = text_cfg(path=str(tmp_path / "c.txt"))

    def first_two(seed):
        module = SearchDataModule(cfg, batch_size=4, seed=seed)
        it = iter(module.train_dataloader())
        return [module.transform(next(it)[0], train=True) for _ in range(2)]

    a, b, c = first_two(0), first_two(0), first_two(1)
    for step in range(2):
        for half in ("train", "val"):
            assert torch.equal(a[step][half][0], b[step][half][0])
            assert torch.equal(a[step][half][1], b[step][half][1])
    assert not torch.equal(a[0]["train"][0], c[0]["train"][0])


def test_mid_epoch_resume_replays_the_same_windows(tmp_path):
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self, log):
            super().__init__()
            self.embed = torch.nn.Embedding(256, 256)
            self.log_ = log

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.log_.append((self.current_epoch, batch_idx, x.tolist()))
            return torch.nn.functional.cross_entropy(self.embed(x).flatten(0, 1), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    write_corpus(tmp_path / "c.txt", lines=40)
    cfg = text_cfg(path=str(tmp_path / "c.txt"))

    def fit(root, max_steps=-1, ckpt=None, every=None):
        log = []
        callbacks = []
        if every:
            callbacks.append(
                L.pytorch.callbacks.ModelCheckpoint(
                    dirpath=root, every_n_train_steps=every, save_top_k=-1, filename="{step}"
                )
            )
        trainer = L.Trainer(
            max_epochs=2, max_steps=max_steps, accelerator="cpu", logger=False,
            num_sanity_val_steps=0, limit_val_batches=0, limit_train_batches=5,
            enable_progress_bar=False, enable_model_summary=False,
            enable_checkpointing=bool(every), default_root_dir=root, callbacks=callbacks,
        )  # fmt: skip
        module = RetrainDataModule(cfg, batch_size=4, seed=0)
        trainer.fit(Probe(log), datamodule=module, ckpt_path=ckpt)
        return log

    straight = fit(tmp_path / "a")
    assert len(straight) == 10  # 5 batches of windows in each of 2 epochs
    fit(tmp_path / "b", max_steps=3, every=3)
    resumed = fit(tmp_path / "b", ckpt=str(tmp_path / "b" / "step=3.ckpt"))
    assert resumed == straight[3:]


# ----- tokenizers -----


def test_gpt2_is_refused_clearly_without_a_package(no_gpt2):
    with pytest.raises(ValueError) as info:
        validate_data_config(text_cfg(tokenizer="gpt2", num_classes=50257))
    message = str(info.value)
    assert "data.tokenizer=gpt2" in message and "pip install tiktoken" in message
    assert "transformers" in message and "data.tokenizer=bytes" in message
    with pytest.raises(ValueError, match="pip install tiktoken"):
        get_tokenizer("gpt2")


def _fake_tiktoken() -> types.ModuleType:
    """A stand-in for tiktoken's gpt2 encoding: bytes, plus 'the' and ' fox' as single tokens
    (ids 256, 257); 50257 ids as GPT-2 has."""
    merges = {b"the": 256, b" fox": 257}

    class Encoding:
        n_vocab = 50257

        def encode_ordinary(self, text):
            raw, out, i = text.encode("utf-8"), [], 0
            while i < len(raw):
                for piece, token in merges.items():
                    if raw.startswith(piece, i):
                        out.append(token)
                        i += len(piece)
                        break
                else:
                    out.append(raw[i])
                    i += 1
            return out

        def decode_single_token_bytes(self, token):
            inverse = {v: k for k, v in merges.items()}
            return bytes([token]) if token < 256 else inverse.get(token, b"<|x|>")

        def decode(self, ids):
            return b"".join(self.decode_single_token_bytes(t) for t in ids).decode("utf-8")

    module = types.ModuleType("tiktoken")
    module.get_encoding = lambda name: Encoding()
    return module


def test_gpt2_tokens_through_tiktoken(monkeypatch, tmp_path):
    """The BPE path with tiktoken's interface (a stand-in: no package, no vocabulary file):
    round trip, per-token byte lengths, and bits per byte = nats / (ln 2 * bytes)."""
    monkeypatch.setitem(sys.modules, "tiktoken", _fake_tiktoken())
    monkeypatch.setattr(text_module, "gpt2_backend", lambda: "tiktoken")
    get_tokenizer.cache_clear()
    try:
        write_corpus(tmp_path / "c.txt")
        cfg = text_cfg(path=str(tmp_path / "c.txt"), tokenizer="gpt2", num_classes=50257)
        validate_data_config(cfg)
        tok = get_tokenizer("gpt2")
        ids = tok.encode("the quick fox")
        assert ids.tolist()[:1] == [256] and 257 in ids.tolist()
        assert tok.decode(ids) == "the quick fox"
        sizes = token_bytes(cfg)
        assert sizes.shape == (50257,) and sizes[256] == 3 and sizes[257] == 4 and sizes[65] == 1
        data = load_dataset(cfg)
        assert data.vocab_size == 50257 and data.tokenizer == "gpt2"
        retrain = RetrainDataModule(cfg, batch_size=4, seed=0)
        retrain.setup()
        per_token = retrain.token_info()["splits"]["test"]["bytes_per_token"]
        assert per_token > 1  # merged tokens carry several bytes

        loss = TokenLoss(sizes)
        y = data.test[:32]
        loss.update(torch.tensor(2.0), y)
        metrics = loss.compute()
        nbytes = int(sizes[y].sum())
        assert nbytes > 32
        assert metrics["bits_per_byte"].item() == pytest.approx(2.0 * 32 / (math.log(2) * nbytes))
        assert metrics["perplexity"].item() == pytest.approx(math.exp(2.0))
    finally:
        get_tokenizer.cache_clear()


# ----- settings -----


def test_text_yaml_composes_and_validates():
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    ConfigStore.instance().store(group="data", name="base_data", node=DataConfig)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        node = compose(overrides=["+data=text"]).data
    cfg = OmegaConf.to_object(node)
    validate_data_config(cfg)
    assert is_token_dataset(cfg.name) and cfg.tokenizer == "bytes" and cfg.path is None
    assert cfg.num_classes == 256 and len(cfg.input_shape) == 1
    recipe = preprocessing(cfg)
    assert recipe["tokenizer"] == "bytes" and recipe["context"] == cfg.input_shape[0]


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"mean": [0.5]}, ["data.mean=[0.5] is an image setting", "set data.mean=[]"]),
        ({"hflip": True}, ["data.hflip=true is an image setting", "data.hflip=false"]),
        ({"crop_padding": 4}, ["data.crop_padding=4 is an image setting"]),
        ({"input_shape": [3, 8, 8]}, ["data.input_shape=[3, 8, 8] must be [T]"]),
        ({"num_classes": 10}, ["data.num_classes=10", "data.num_classes=256"]),
        ({"tokenizer": "chars"}, ["data.tokenizer='chars' must be one of ['bytes', 'gpt2']"]),
        ({"pipeline": "loader"}, ["data.pipeline=loader", "use device"]),
        ({"path": "/no/such/file.txt"}, ["data.path='/no/such/file.txt' does not exist"]),
    ],
)
def test_validate_refuses_bad_text_settings(overrides, needles):
    with pytest.raises(ValueError) as info:
        validate_data_config(text_cfg(**overrides))
    for needle in needles:
        assert needle in str(info.value)


def test_text_settings_are_refused_for_images():
    cfg = DataConfig(name="digits", input_shape=[1, 8, 8], num_classes=10, mean=[0.3], std=[0.4])
    with pytest.raises(ValueError, match=r"data.path=/tmp applies to token datasets"):
        validate_data_config(dataclasses.replace(cfg, path="/tmp"))
    with pytest.raises(ValueError, match=r"data.tokenizer=gpt2 applies to token datasets"):
        validate_data_config(dataclasses.replace(cfg, tokenizer="gpt2"))


def test_example_input_is_token_ids_for_text():
    x = example_input(text_cfg(), 3, torch.Generator().manual_seed(0))
    assert x.shape == (3, 16) and x.dtype == torch.int64 and 0 <= int(x.min()) <= int(x.max()) < 256
    image = DataConfig(name="digits", input_shape=[1, 8, 8], num_classes=10, mean=[0.3], std=[0.4])
    assert example_input(image, 2).dtype == torch.float32


# ----- metrics -----


def test_metrics_are_exact_over_uneven_batches():
    """The pass's loss is the mean over all its target tokens, whatever the batch sizes; bits
    per byte is loss / ln 2 for byte tokens, perplexity exp(loss)."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 256, generator=gen)
    y = torch.randint(0, 256, (50,), generator=gen)
    loss = TokenLoss(torch.ones(256, dtype=torch.long))
    for lo, hi in ((0, 7), (7, 40), (40, 50)):
        loss.update(torch.nn.functional.cross_entropy(logits[lo:hi], y[lo:hi]), y[lo:hi])
    metrics = loss.compute()
    whole = torch.nn.functional.cross_entropy(logits, y).item()
    assert metrics["loss"].item() == pytest.approx(whole, rel=1e-6)
    assert metrics["bits_per_byte"].item() == pytest.approx(whole / math.log(2), rel=1e-6)
    assert metrics["perplexity"].item() == pytest.approx(math.exp(whole), rel=1e-6)
    loss.reset()
    assert loss.compute() is None
    direct = lm_metrics(torch.tensor(10.0), torch.tensor(5.0), torch.tensor(20.0))
    assert direct["bits_per_byte"].item() == pytest.approx(10 / (math.log(2) * 20))
