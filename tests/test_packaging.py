"""``spacy package`` turns a trained pipeline into a wheel that installs and loads in a fresh environment.

The fresh virtual environment sees the third-party dependencies of the environment running the tests
(spaCy, thinc, torch, ...) through a directory of links, but not this plugin, however it is installed
there (editable or not). The plugin comes from a wheel built from this repository, which pip installs
only because the pipeline's wheel requires it. ``spacy.load`` must then find the factory through the
plugin's entry points, with nothing imported by hand.
"""
import json
import os
import re
import shutil
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Any, Dict

import pytest
import spacy
from spacy.util import get_minor_version_range

from nested_data import NESTED, make_examples
from util import assert_same_output, build_nlp, outputs, predict_in_fresh_process, train
from util import run as run_command

REPO = Path(__file__).resolve().parents[1]
NAME, VERSION = "gp_packaging_test", "0.0.1"
PACKAGE = f"zh_{NAME}"
PLUGIN = re.compile(r"spacy[-_]globalpointer", re.IGNORECASE)
TEXTS = [text for text, _ in NESTED] + ["", "北京🙂大学 Beijing 2024年", "𠀀e\u0301" * 4]


def environment() -> Dict[str, str]:
    """This process's environment without PYTHONPATH (the fresh environment must not see this checkout)."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}


def run(*args: Any, cwd: Path) -> str:
    return run_command(*args, cwd=cwd, env=environment())


def has_build() -> bool:
    """Is the 'build' package installed? (What ``spacy package --build wheel`` needs.)"""
    try:
        metadata.version("build")
        return True
    except metadata.PackageNotFoundError:
        return False


def trained_pipeline() -> spacy.Language:
    nlp = build_nlp(threshold=0.3)
    return train(nlp, make_examples(nlp, NESTED), steps=25)


def build_pipeline_wheel(pipeline: Path, tmp_path: Path, wheels: Path) -> Dict[str, Any]:
    """``spacy package`` the pipeline; returns its meta.json. The wheel is copied to ``wheels``.

    ``--build wheel`` needs the 'build' package; without it, spaCy's package directory is built with
    pip, which runs the same setup.py in the same way.
    """
    packages = tmp_path / "packages"
    packages.mkdir()
    build = "wheel" if has_build() else "none"
    run(sys.executable, "-m", "spacy", "package", pipeline, packages, "--name", NAME, "--version", VERSION,
        "--build", build, cwd=tmp_path)
    package_dir = packages / f"{PACKAGE}-{VERSION}"
    if build == "wheel":
        for wheel in (package_dir / "dist").glob("*.whl"):
            shutil.copy(wheel, wheels)
    else:
        run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", wheels, package_dir.resolve(), cwd=tmp_path)
    return json.loads((package_dir / "meta.json").read_text(encoding="utf8"))


def build_plugin_wheel(tmp_path: Path, wheels: Path) -> None:
    """A wheel of this repository, built from a copy so that the checkout gets no build/ folder."""
    source = tmp_path / "plugin_source"
    shutil.copytree(REPO / "spacy_globalpointer", source / "spacy_globalpointer",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("setup.cfg", "setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", wheels, source.resolve(), cwd=tmp_path)


def fresh_venv(tmp_path: Path) -> Path:
    """A venv without pip that sees the current environment's packages except this plugin; returns its python."""
    venv = tmp_path / "fresh"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site_packages = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())
    dependencies = tmp_path / "dependencies"
    dependencies.mkdir()
    for folder in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for entry in Path(folder).iterdir():
            if not PLUGIN.search(entry.name) and not (dependencies / entry.name).exists():
                (dependencies / entry.name).symlink_to(entry)
    # A path in a .pth file is added to sys.path; the .pth files inside it (the editable finder) are not run.
    (site_packages / "test_dependencies.pth").write_text(f"{dependencies}\n", encoding="utf8")
    return python


@pytest.mark.slow
def test_spacy_package_wheel_installs_and_loads_in_a_fresh_venv(tmp_path: Path) -> None:
    nlp = trained_pipeline()
    nlp.to_disk(tmp_path / "pipeline")
    expected = outputs(nlp, TEXTS)
    assert sum(len(out["spans"]) for out in expected) > 5

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    meta = build_pipeline_wheel(tmp_path / "pipeline", tmp_path, wheels)
    # spaCy finds the plugin from the entry point of the factory and makes it a requirement.
    plugin_version = metadata.version("spacy-globalpointer")
    assert f"spacy-globalpointer{get_minor_version_range(plugin_version)}" in meta["requirements"]
    build_plugin_wheel(tmp_path, wheels)
    assert sorted(path.name.split("-")[0] for path in wheels.glob("*.whl")) == sorted([PACKAGE, "spacy_globalpointer"])

    python = fresh_venv(tmp_path)
    probe = "import importlib.util as u; print(u.find_spec('spacy_globalpointer') is None, u.find_spec('spacy') is None)"
    assert run(python, "-I", "-c", probe, cwd=tmp_path).split() == ["True", "False"]
    # Only the pipeline is named: pip has to install the plugin from its requirement.
    (pipeline_wheel,) = wheels.glob(f"{PACKAGE}-*.whl")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--find-links", wheels,
        "--quiet", pipeline_wheel, cwd=tmp_path)

    out = predict_in_fresh_process(python, PACKAGE, TEXTS, cwd=tmp_path, env=environment())
    assert out["imported_before_load"] is False
    assert Path(out["plugin_file"]).resolve().is_relative_to((tmp_path / "fresh").resolve())
    assert out["pipe_names"] == ["globalpointer_spans"]
    assert_same_output(expected, out["outputs"])
