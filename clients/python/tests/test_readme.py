"""The repository README's Python block (``<!-- readme-python -->``), run as written against the
simulation stack with the variables the README's ``export`` lines set."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
from _support import REPO_ROOT, Sim

pytestmark = pytest.mark.sim


def readme_block() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    m = re.search(r"<!-- readme-python -->\n```python\n(.*?)```", text, re.S)
    assert m, "README.md has no block marked readme-python"
    return m.group(1)


def test_the_readme_python_flow_runs_as_written(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA", str(sim.data_dir))
    monkeypatch.setenv("API", sim.base_url)
    monkeypatch.setenv("TOKEN", sim.api_token)
    monkeypatch.setenv("ADMIN", sim.admin_token)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(readme_block(), "README.md (readme-python)", "exec"), {"__name__": "readme"})
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"signed [1-9A-HJ-NP-Za-km-z]{64,88} request [0-9a-f-]{36}", lines[0]), lines
    assert lines[1] == "refused 403 grant_revoked", lines
