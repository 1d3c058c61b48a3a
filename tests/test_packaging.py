"""What an installed user meets: the `text` extra named when missing, typing marker, licence, and
README links that resolve inside the repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
"""


def _run(blocked: set[str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK.format(blocked=blocked) + code], capture_output=True, text=True)


@pytest.mark.parametrize("blocked, code", [
    ({"pydantic"}, "import trainhub.text"),
    # a local folder, so nothing would ever be looked up on the hub
    ({"transformers", "tokenizers"}, f"from trainhub.text.model import load_tokenizer; load_tokenizer({str(REPO)!r})"),
])
def test_missing_text_dependencies_name_the_extra(blocked, code):
    out = _run(blocked, code)
    assert out.returncode != 0
    assert "pip install 'trainhub[text]'" in out.stderr, out.stderr[-2000:]


def test_recommendation_runs_do_not_need_the_text_extra():
    out = _run({"transformers", "tokenizers", "seqeval"}, "import trainhub.runs, trainhub.cli; "
                                                         "from trainhub.runs import load_run, train_run")
    assert out.returncode == 0, out.stderr[-2000:]


def test_typing_marker_and_licence_ship():
    assert (REPO / "src" / "trainhub" / "py.typed").is_file()
    assert "MIT License" in (REPO / "LICENSE").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'trainhub = ["py.typed"]' in pyproject and "Typing :: Typed" in pyproject


def test_readme_and_docs_link_only_to_files_in_the_repository():
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which is not in the repository"
