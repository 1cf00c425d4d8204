"""The GitHub Actions workflow cannot run here, so check it is correct by construction."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def load() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def test_workflow_runs_the_readme_test_command():
    steps = load()["jobs"]["test"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert "make test" in runs
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_workflow_tests_on_python_311_debian_and_pushes_and_pull_requests():
    data = load()
    assert data["jobs"]["test"]["container"].startswith("python:3.11")
    assert data["on"]["push"]["branches"] == ["main"]
    assert "pull_request" in data["on"]


def test_pages_are_deployed_only_from_main_after_the_tests():
    jobs = load()["jobs"]
    deploy = jobs["deploy"]
    assert deploy["needs"] == "test"
    assert "refs/heads/main" in deploy["if"] and "push" in deploy["if"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    uses = [s.get("uses", "") for s in deploy["steps"]]
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    upload = [s for s in jobs["test"]["steps"] if "upload-pages-artifact" in s.get("uses", "")]
    assert upload and upload[0]["with"]["path"] == "_build/html"


def test_launch_buttons_point_at_the_repository_in_the_setup_cells():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"]
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert config["launch_buttons"]["thebe"] is False
    for nb in sorted((ROOT / "book").glob("*.ipynb")):
        assert f"git+{url}" in nb.read_text(), f"{nb.name}: the setup cell installs from {url}"


def test_readme_quick_start_prints_what_the_readme_says():
    """The README's library quick-start runs and prints the output shown under it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Library quick-start", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shown = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 6
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue() == shown


def test_front_door_files_exist_and_agree():
    """Citation, Binder and the published-book link: present, and pointing at this repository."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"]
    owner, name = url.rstrip("/").split("/")[-2:]
    pages = f"https://{owner}.github.io/{name}/"
    assert pages in (ROOT / "README.md").read_text()
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"].startswith("1.2")
    assert cff["repository-code"] == url and cff["url"] == pages
    assert cff["license"] == "MIT"
    lines = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    binder = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    assert ".[book]" in binder
    assert not any(p in " ".join(binder) for p in ("jupyter-book", "playwright", "pytest"))
    assert (ROOT / config["html"]["favicon"]).stat().st_size > 200
    footer = config["html"]["extra_footer"]
    for path in re.findall(r"blob/main/([\w.-]+)", footer):
        assert (ROOT / path).exists(), f"the footer links {path}, which the repository lacks"


def test_ci_installs_the_cpu_build_of_torch():
    env = load()["jobs"]["test"]["env"]
    assert env["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
