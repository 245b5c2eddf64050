"""Every config composes and instantiates; bad keys and types fail before any work."""

import datetime
import re
from pathlib import Path

import pytest
import torch
from conftest import compose_train
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from seq2seq_lit.train import instantiate_group

CONF = Path(__file__).resolve().parents[1] / "src" / "seq2seq_lit" / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_every_group_option_exists_in_the_package() -> None:
    assert "rnn" in options("model")
    assert {"multi30k", "parallel_text"} <= set(options("data"))
    assert {"csv", "wandb", "tensorboard", "default", "none"} <= set(options("logger"))


@pytest.mark.parametrize("option", options("logger"))
def test_logger_options_instantiate(option: str, tmp_path, multi30k_root, cache_dir) -> None:
    cfg = compose_train(tmp_path, multi30k_root, cache_dir, [f"logger={option}"])
    loggers = instantiate_group(cfg.logger)
    assert len(loggers) == {"default": 2, "none": 0}.get(option, 1)


@pytest.mark.parametrize("option", options("callbacks"))
def test_callback_options_instantiate(option: str, tmp_path, multi30k_root, cache_dir) -> None:
    cfg = compose_train(tmp_path, multi30k_root, cache_dir, [f"callbacks={option}"])
    callbacks = instantiate_group(cfg.callbacks)
    assert len(callbacks) == {"default": 8, "model_checkpoint": 2, "none": 0}.get(option, 1)
    if option == "periodic_checkpoint":
        assert callbacks[0]._train_time_interval == datetime.timedelta(minutes=10)


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_options_instantiate(option: str, tmp_path, multi30k_root, cache_dir) -> None:
    cfg = compose_train(tmp_path, multi30k_root, cache_dir, [f"trainer={option}"])
    assert cfg.trainer._target_ == "lightning.pytorch.trainer.Trainer"
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        pytest.skip(f"trainer={option} composes; instantiating it needs a GPU")
    assert instantiate(cfg.trainer).max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("option", [None, *options("model/scheduler")])
@pytest.mark.parametrize("experiment", [None, *options("experiment")])
@pytest.mark.parametrize("debug", [None, *options("debug")])
def test_model_and_optimizer_instantiate(option, experiment, debug, tmp_path, multi30k_root, cache_dir) -> None:
    overrides = [f"model/scheduler={option}" if option else "~model/scheduler"]
    if option in ("cosine_budget", "warmup_cosine_budget"):  # without a trainer, its length in steps has to be given
        overrides.append("model.scheduler.scheduler.total_steps=10000")
    overrides += [f"experiment={experiment}"] if experiment else []
    overrides += [f"debug={debug}"] if debug else []
    cfg = compose_train(tmp_path, multi30k_root, cache_dir, overrides)
    src_vocab = 60 if cfg.data.joint_vocab else 50  # shared embeddings need one vocabulary
    module = instantiate(cfg.model, src_vocab_size=src_vocab, tgt_vocab_size=60, _recursive_=False, _convert_="all")
    assert module.model.generator.output.out_features == 60
    assert isinstance(module.hparams.optimizer, dict)  # plain types, not DictConfig
    # configure_optimizers needs no trainer
    out = module.configure_optimizers()
    assert isinstance(out, torch.optim.Optimizer) if option is None else "lr_scheduler" in out


def test_scheduler_settings_without_a_scheduler_name_the_options(tmp_path, multi30k_root, cache_dir) -> None:
    overrides = ["~model/scheduler", "model.scheduler={interval:step}"]  # the group removed, a key of it left
    cfg = compose_train(tmp_path, multi30k_root, cache_dir, overrides)
    module = instantiate(cfg.model, src_vocab_size=50, tgt_vocab_size=60, _recursive_=False, _convert_="all")
    shipped = "|".join(options("model/scheduler"))
    with pytest.raises(ValueError, match=rf"names no scheduler .* model/scheduler={re.escape(shipped)},"):
        module.configure_optimizers()


@pytest.mark.parametrize("option", options("data"))
def test_data_options_instantiate(option: str, tmp_path, multi30k_root, cache_dir) -> None:
    extra = {
        "parallel_text": [f"data.train=[{tmp_path}/a,{tmp_path}/b]", f"data.val=[{tmp_path}/c,{tmp_path}/d]"],
        "hf": [f"data.path={tmp_path}/dataset"],
    }
    cfg = compose_train(tmp_path, multi30k_root, cache_dir, [f"data={option}", *extra.get(option, [])])
    dm = instantiate(cfg.data, _convert_="all")
    assert dm.hparams.vocab_size == 8000


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("model.hidden_size=abc", ValidationError),
        ("model.hiden_size=512", ConfigAttributeError),
        ("data.vocab_sz=100", ConfigAttributeError),
        ("trainer=nonexistent", MissingConfigException),
        ("seed=abc", ValidationError),
    ],
)
def test_bad_overrides_fail_at_composition(override, error, tmp_path, multi30k_root, cache_dir) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_train(tmp_path, multi30k_root, cache_dir, [override])
    # Hydra wraps the error; the cause is the expected kind (an unknown group option has no cause).
    cause = err.value.__cause__ or err.value
    assert type(cause) is error
    key = override.split("=")[0]
    assert key.split(".")[-1] in str(cause)


def test_default_data_config_sets_up_on_multi30k(tmp_path, multi30k_root, cache_dir) -> None:
    """`python -m seq2seq_lit.train` with no overrides must get past tokenizer training."""
    cfg = compose_train(tmp_path, multi30k_root, cache_dir)
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    assert len(dm.src_tokenizer) == len(dm.tgt_tokenizer) == cfg.data.vocab_size == 8000
    assert len(dm.datasets["train"]) == 29000 and len(dm.datasets["val"]) == 1014


def test_de_en_recipe_is_the_en_de_recipe_reversed(tmp_path, multi30k_root, cache_dir) -> None:
    en_de, de_en = (
        OmegaConf.to_container(compose_train(tmp_path, multi30k_root, cache_dir, [f"experiment={e}"]), resolve=True)
        for e in ("multi30k_en_de", "multi30k_de_en")
    )
    assert (en_de["data"]["src_lang"], en_de["data"]["tgt_lang"]) == ("en", "de")
    assert (de_en["data"]["src_lang"], de_en["data"]["tgt_lang"]) == ("de", "en")
    assert de_en["task_name"] == "multi30k_de_en" and "de-en" in de_en["tags"]
    for cfg in (en_de, de_en):
        cfg["data"].pop("src_lang"), cfg["data"].pop("tgt_lang"), cfg.pop("task_name"), cfg.pop("tags")
        cfg["logger"]["wandb"].pop("tags", None)
    assert en_de == de_en
    # The learning rate decays to 0 over exactly the epochs the recipe trains.
    assert en_de["model"]["scheduler"]["scheduler"]["T_max"] == en_de["trainer"]["max_epochs"]


def test_cosine_budget_ends_with_the_recipes_time_limit(tmp_path, multi30k_root, cache_dir) -> None:
    overrides = ["experiment=multi30k_en_de", "model/scheduler=cosine_budget"]
    cfg = OmegaConf.to_container(compose_train(tmp_path, multi30k_root, cache_dir, overrides), resolve=True)
    scheduler = cfg["model"]["scheduler"]["scheduler"]
    assert scheduler["_target_"] == "seq2seq_lit.schedule.BudgetCosineLR" and scheduler["total_steps"] is None
    assert scheduler["max_seconds"] == cfg["trainer"]["max_time"] == "00:00:58:00"
    assert cfg["model"]["scheduler"]["interval"] == "step"


def test_the_wandb_mode_probe_opens_one_connection_per_run(monkeypatch, tmp_path, multi30k_root, cache_dir) -> None:
    import socket

    from seq2seq_lit import config

    connections = []

    class Answer:
        def close(self) -> None:
            pass

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: connections.append(args) or Answer())
    config._wandb_reachable_mode.cache_clear()
    try:
        for _ in range(2):
            cfg = compose_train(tmp_path, multi30k_root, cache_dir, ["logger=wandb"])
            assert [OmegaConf.select(cfg, "logger.wandb.mode") for _ in range(3)] == ["online"] * 3
        assert len(connections) == 1
    finally:
        config._wandb_reachable_mode.cache_clear()
