"""Saved indexes refuse files that changed since they were saved, naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainhub.retrieval import AnnoyIndex, FaissIndex, IndexIntegrityError, TorchIndex
from trainhub.retrieval.integrity import sidecar_path, verify_sidecar, write_sidecar

# backend -> (factory, the backend's own index file)
BACKENDS = {
    "torch": (lambda: TorchIndex(8), "vectors.npy"),
    "faiss": (lambda: FaissIndex(8), "index.faiss"),
    "annoy": (lambda: AnnoyIndex(8, n_trees=5), "index.ann"),
}


def _saved(backend, tmp_path):
    make, main_file = BACKENDS[backend]
    index = make()
    index.add(np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32))
    index.save(tmp_path / "idx")
    return tmp_path / "idx", main_file


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_truncated_file_is_refused_with_its_name(backend, tmp_path):
    folder, main_file = _saved(backend, tmp_path)
    cls = type(BACKENDS[backend][0]())
    assert len(cls.load(folder)) == 300  # intact: loads
    file = folder / main_file
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(IndexIntegrityError, match=rf"{main_file} has \d+ bytes, \d+ were saved"):
        cls.load(folder)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_altered_bytes_and_missing_files_are_refused(backend, tmp_path):
    folder, main_file = _saved(backend, tmp_path)
    cls = type(BACKENDS[backend][0]())
    file = folder / main_file
    data = bytearray(file.read_bytes())
    data[-5] ^= 0xFF  # same size, other content
    file.write_bytes(bytes(data))
    with pytest.raises(IndexIntegrityError, match=rf"{main_file} does not match its saved SHA-256"):
        cls.load(folder)
    (folder / "ids.npy").unlink(missing_ok=True)
    file.unlink()
    with pytest.raises(IndexIntegrityError, match="is missing"):
        cls.load(folder)


def test_count_and_dim_are_checked_against_the_loaded_index(tmp_path):
    folder, _ = _saved("annoy", tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "count": 301}))
    with pytest.raises(IndexIntegrityError, match="holds 300 vectors, 301 were saved"):
        AnnoyIndex.load(folder)


def test_an_index_saved_without_checksums_loads_with_a_warning(tmp_path, caplog):
    folder, _ = _saved("torch", tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    del meta["files"]
    (folder / "meta.json").write_text(json.dumps(meta))
    assert len(TorchIndex.load(folder)) == 300
    assert "without checksums" in caplog.text


def test_single_file_sidecar(tmp_path):
    import annoy

    forest = annoy.AnnoyIndex(4, "angular")
    for i in range(50):
        forest.add_item(i, np.random.default_rng(i).normal(size=4).tolist())
    forest.build(3)
    file = tmp_path / "items.ann"
    forest.save(str(file))
    write_sidecar(file, count=forest.get_n_items(), dim=4, metric="angular")
    assert json.loads(sidecar_path(file).read_text())["metric"] == "angular"
    assert verify_sidecar(file, count=50, dim=4)["count"] == 50
    with pytest.raises(IndexIntegrityError, match="items.ann holds vectors of dimension 8, 4 was saved"):
        verify_sidecar(file, dim=8)
    file.write_bytes(file.read_bytes()[:-64])
    with pytest.raises(IndexIntegrityError, match="items.ann has"):
        verify_sidecar(file)
    sidecar_path(file).unlink()
    with pytest.raises(IndexIntegrityError, match="no checksum sidecar items.ann.json"):
        verify_sidecar(file)
