"""A config run writes its folder once, whole: it trains in a staging folder beside the target and
replaces the target only when everything is written.

* ``<parent>/.<name>.partial`` holds the run while it trains. A failed or killed run leaves the
  target exactly as it was; the partial folder stays for ``trainer.resume`` and is removed by the
  next run that starts afresh.
* The swap is two renames (target to ``.<name>.old-<hex>``, partial to target) and the removal of
  the old folder. A crash between the renames leaves the old run under its ``.old`` name, and the
  next run into the target puts it back before doing anything else.
* ``.<name>.lock`` (``flock``) keeps two runs from writing one target at once.
* The target is replaced wholesale, so it must be a run folder (or empty): a folder holding other
  files is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

from trainhub.engine import run_folder
from trainhub.files import _fsync_dir

__all__ = ["RunStaging", "RUN_FILES"]

log = logging.getLogger(__name__)

#: Names a config run (or an earlier run into the same folder) leaves in its folder.
RUN_FILES = frozenset({
    "run.json", "model.safetensors", "config.yaml", "encoder.json", "preprocess.json", "curves.png", "embeddings",
    "model.pth", "best.safetensors", "last.ckpt", "logs", "integrity.json", "items.json",
})


class RunStaging:
    """The target folder of a config run and its staging folder.

    Example:
        >>> staging = RunStaging("runs/deepfm")
        >>> with staging.locked():
        ...     stage = staging.open(resume=False)     # train and write everything into `stage`
        ...     staging.commit()                       # `runs/deepfm` now holds the new run
    """

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target).absolute()  # not resolved: a symlinked output_dir is replaced in place
        self.parent = self.target.parent
        self.stage = self.parent / f".{self.target.name}.partial"
        self._lock_path = self.parent / f".{self.target.name}.lock"

    # -- checks that write nothing ------------------------------------------------------------
    def check(self) -> None:
        """The target can be replaced: absent, empty, or a run folder; its parent is writable."""
        run_folder.check_output_dir(self.target, "output_dir")
        if self.target.is_dir():
            foreign = sorted(p.name for p in self.target.iterdir() if not _is_run_file(p.name))
            if foreign:
                shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
                raise FileExistsError(
                    f"output_dir {str(self.target)!r} holds files that are not part of a trainhub run ({shown}); "
                    "a run replaces its whole folder, so pick an empty or new folder")

    def resume_source(self, resume: bool | str) -> Path | None:
        """The folder a resumed run continues from: the partial folder of a killed run, else the
        target's finished run; None when there is nothing to continue (an error for ``True``)."""
        if not resume:
            return None
        for folder in (self.stage, self.target):
            if (folder / "last.ckpt").is_file():
                return folder
        if resume is True:
            raise FileNotFoundError(
                f"trainer.resume=true, but neither {self.target} nor {self.stage} holds a last.ckpt to continue "
                "from (a run writes it at the end of every epoch). Use trainer.resume=auto to continue only when "
                "one exists, or leave resume off to start a new run")
        return None

    # -- writing --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator["RunStaging"]:
        """Hold the target's lock; another run into the same target fails at once, naming it."""
        import fcntl

        self.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                raise RuntimeError(f"another trainhub run is writing {self.target} (lock {self._lock_path}); "
                                   "wait for it to finish or choose another output_dir") from None
            self._recover()
            yield self
        finally:
            os.close(fd)  # releases the lock; the empty lock file stays (removing it would race)

    def _recover(self) -> None:
        """Put back a run that a crash left under its ``.old`` name between the two renames."""
        olds = sorted(self.parent.glob(f".{self.target.name}.old-*"))
        if olds and not self.target.exists():
            os.replace(olds[-1], self.target)
            log.warning("restored %s from %s (a run was interrupted while replacing it)", self.target, olds[-1].name)
            olds = olds[:-1]
        for old in olds:
            _remove(old)

    def open(self, resume_from: Path | None) -> Path:
        """Create the staging folder: a fresh one, the killed run's partial folder as it is, or a
        copy of the finished target to train further."""
        if resume_from == self.stage:
            return self.stage
        if self.stage.exists():
            log.warning("removing %s, the staging folder of an earlier run that did not finish (resume was off)",
                        self.stage)
            shutil.rmtree(self.stage)
        if resume_from is not None:  # continue a finished run: train on a copy, swap when done
            # Copied under another name first: a copy cut short (a full disk) is never taken for a
            # partial run by the next resume.
            copy = self.parent / f".{self.target.name}.copy-{secrets.token_hex(4)}"
            try:
                shutil.copytree(resume_from, copy, ignore=shutil.ignore_patterns(".*.tmp"))
            except BaseException:
                shutil.rmtree(copy, ignore_errors=True)
                raise
            os.replace(copy, self.stage)
        else:
            self.stage.mkdir(parents=True)
        return self.stage

    def commit(self) -> Path:
        """Replace the target with the staging folder (the target stays whole if this fails)."""
        old = None
        if self.target.exists():
            old = self.parent / f".{self.target.name}.old-{secrets.token_hex(4)}"
            os.replace(self.target, old)
        os.replace(self.stage, self.target)
        _fsync_dir(self.parent)
        if old is not None:
            _remove(old)
        return self.target


def _is_run_file(name: str) -> bool:
    """A file or folder a run (of any trainer) leaves in its folder: multi-task weights are
    ``model_<mode>_<seed>.pth``."""
    return name in RUN_FILES or (name.startswith("model") and name.endswith(".pth"))


def _remove(path: Path) -> None:
    if path.is_symlink():  # an output_dir that was a link: the link goes, never what it points to
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)
