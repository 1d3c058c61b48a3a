"""The CLI answers every anticipated error with one line naming the problem and a non-zero exit
code; ``--debug`` shows the traceback instead."""

from __future__ import annotations

import errno

import pytest
import yaml

from trainhub.cli import error_line, main

CONFIG = {"dataset": {"name": "synthetic_ctr", "params": {"rows": 300}},
          "model": {"name": "LR", "params": {"features": "all"}},
          "trainer": {"n_epoch": 1, "progress": False}, "loggers": {"names": [], "plots": False}}


def _run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("case, expected", [
    ("yaml", r"bad\.yaml, line 3, column 2: expected <block end>"),
    ("cuda", "device 'cuda' requested but CUDA is not available"),
    ("optimizer", "trainer.optimizer.name: torch.optim has no optimizer 'adam'"),
    ("batch", "trainer.batch_size: Input should be greater than or equal to 1"),
    ("foreign", r"holds files that are not part of a trainhub run \(notes\.txt\)"),
    ("missing", "config file not found"),
])
def test_one_line_errors(case, expected, tmp_path, capsys):
    import re

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "out"
    argv = ["train", str(path), f"output_dir={out}"]
    if case == "yaml":
        path.write_text("dataset:\n  name: synthetic_ctr\n model: x\n")
    elif case == "cuda":
        argv.append("trainer.device=cuda")
    elif case == "optimizer":
        argv.append("trainer.optimizer.name=adam")
    elif case == "batch":
        argv.append("trainer.batch_size=0")
    elif case == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    else:
        argv[1] = str(tmp_path / "nope.yaml")
    if case == "cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    code, err = _run(argv, capsys)
    # one message (a config error lists each invalid key on its own line), never a traceback
    assert code == 2 and err[0].startswith("error: ") and not any("Traceback" in line for line in err), err
    assert re.search(expected, "\n".join(err)), err
    if case == "foreign":
        assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "train", str(tmp_path / "nope.yaml")])


def test_disk_full_names_the_file_and_bugs_keep_their_traceback():
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/x/last.ckpt")
    assert error_line(full) == "no space left on the device writing /runs/x/last.ckpt: free some space and run again"
    assert error_line(ZeroDivisionError("bug")) is None
