"""The project's set-up files agree with each other."""
import json
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}  # conda-forge names torch "pytorch"


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0]
    return CONDA_TO_PIP.get(name.lower(), name.lower()).replace("_", "-")


def _pyproject_packages() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {_name(r) for r in reqs}


def _environment_packages() -> set[str]:
    names, in_deps, in_pip = set(), False, False
    for line in (REPO / "environment.yml").read_text().splitlines():
        item = line.split("#")[0].rstrip()
        if item.startswith("dependencies:"):
            in_deps = True
            continue
        if not in_deps:
            continue
        if re.match(r"^\s+- pip:\s*$", item):
            in_pip = True
            continue
        m = re.match(r"^\s+- (.+)$", item)
        if not m or m.group(1).startswith("-e"):
            continue
        name = _name(m.group(1))
        if name not in ("python", "pip") or in_pip:
            names.add(name)
    return names


def test_environment_yml_lists_the_same_packages_as_pyproject():
    assert _environment_packages() == _pyproject_packages()


def test_torch_is_not_pinned_to_one_release():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    torch = [r for r in project["dependencies"] if _name(r) == "torch"]
    assert torch == ["torch>=2.4"]


def test_jupyter_book_is_the_1x_series():
    text = (REPO / "pyproject.toml").read_text()
    assert '"jupyter-book<2"' in text
    assert "jupyter-book<2" in (REPO / "environment.yml").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci


def test_readme_quotes_the_recorded_init_comparison():
    # the README's numbers for its first command come from the record
    record = json.loads((REPO / "results" /
                         "init_comparison_224.json").read_text())
    runs = record["details"]["conditions"]
    readme = (REPO / "README.md").read_text()
    paper = runs["paper"]["val_top1_error"][-1]
    bias = runs["bias 0.1"]["val_top1_error"][-1]
    assert paper >= 0.88 and bias < 0.8  # at chance, and learning
    assert f"top-1 error {paper:.3f} after three epochs" in readme
    assert f"with 0.1, Caffe's value, it learns ({bias:.3f})" in readme
    assert "--profile cpu --model-option bias=0.1" in readme


def test_readme_quotes_the_recorded_full_size_runs():
    import json
    readme = (REPO / "README.md").read_text()
    text = " ".join(readme.split())
    for seed in (0, 1):
        record = json.loads((REPO / "results" /
                             f"full_size_imagenette_seed{seed}.json")
                            .read_text())
        d = record["details"]
        assert (f"{d['epochs']} epochs in "
                f"{record['wall_time_s'] / 60:.0f} min") in text
        assert f"{d['median_images_per_s']:.0f}" in text
        assert f"{100 * d['ten_patch']['top1_error']:.2f}%" in text
