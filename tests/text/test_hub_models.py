"""Hub model names in model.base_model: the cache when offline, a download when online, and clear
errors. No test touches the network: the hub is a local cache folder or a stand-in function."""

from __future__ import annotations

import shutil

import pytest

from trainhub.text import model as text_model
from trainhub.text.model import ModelNotAvailableError, load_encoder, load_tokenizer, resolve_base_model

SHA = "0123456789abcdef0123456789abcdef01234567"


def fake_cache(cache, repo_id, source):
    """Lay ``source`` out as the Hugging Face cache does for ``repo_id`` at revision main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(source, repo / "snapshots" / SHA)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    return repo / "snapshots" / SHA


def test_offline_hub_name_is_read_from_the_cache(tiny_model_dir, tmp_path, monkeypatch):
    snapshot = fake_cache(tmp_path / "hub", "acme/tiny-bert", tiny_model_dir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_base_model("acme/tiny-bert") == str(snapshot)
    tokenizer, encoder = load_tokenizer("acme/tiny-bert"), load_encoder("acme/tiny-bert")
    assert encoder.config.hidden_size == 32 and tokenizer("habari")["input_ids"]


def test_offline_and_not_cached_names_the_variable_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ModelNotAvailableError) as err:
        resolve_base_model("distilbert-base-uncased")
    message = str(err.value)
    assert "'distilbert-base-uncased'" in message and "HF_HUB_OFFLINE=1" in message
    assert str(tmp_path / "empty") in message and "all-MiniLM-L6-v2" in message


def test_online_hub_name_downloads_weights_and_tokenizer_only(tiny_model_dir, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, **kwargs):  # stands in for the hub
        calls.append((repo_id, kwargs))
        return str(tiny_model_dir)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert resolve_base_model("distilbert-base-uncased") == str(tiny_model_dir)
    (repo_id, kwargs), = calls
    assert repo_id == "distilbert-base-uncased" and kwargs["local_files_only"] is False
    assert kwargs["cache_dir"] == str(tmp_path / "cache")
    assert "*.safetensors" in kwargs["allow_patterns"] and not any("h5" in p or "msgpack" in p
                                                                  for p in kwargs["allow_patterns"])


def test_unknown_repository_and_network_failures_are_explained(monkeypatch):
    import huggingface_hub
    from huggingface_hub import errors

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def missing(repo_id, **kwargs):
        # built without its HTTP response, which only the real client has
        err = errors.RepositoryNotFoundError.__new__(errors.RepositoryNotFoundError)
        err.args = ("404 Client Error: Repository Not Found",)
        raise err

    monkeypatch.setattr(huggingface_hub, "snapshot_download", missing)
    with pytest.raises(ModelNotAvailableError, match="no such model on the Hugging Face Hub"):
        resolve_base_model("acme/does-not-exist")

    def no_network(repo_id, **kwargs):
        raise errors.LocalEntryNotFoundError("connection error and no cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    with pytest.raises(ModelNotAvailableError, match="could not be downloaded .* Check the network"):
        resolve_base_model("acme/tiny")


def test_local_paths_never_reach_the_hub(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(text_model, "download_model", lambda name: pytest.fail(f"hub asked for {name}"))
    assert resolve_base_model(str(tiny_model_dir)) == str(tiny_model_dir)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        resolve_base_model("./models/missing")


def test_jenga_style_config_with_a_hub_name_trains(tiny_model_dir, tmp_path, monkeypatch, make_config):
    """Jenga-AI's example configs name distilbert-base-uncased; with the model in the cache they run."""
    from trainhub.text import Trainer

    fake_cache(tmp_path / "hub", "distilbert-base-uncased", tiny_model_dir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    cfg = make_config(num_epochs=1)
    cfg["model"]["base_model"] = "distilbert-base-uncased"
    trainer = Trainer.from_config(cfg)
    try:
        trainer.train()
        assert "eval_loss" in trainer.evaluate()
    finally:
        trainer.close()
