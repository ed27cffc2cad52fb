"""retinadet installed without its repository: a plain (non-editable) pip install of this checkout,
without the C++ extension, run from a folder that is not the checkout with nothing but the installed
copy importable; compare and ablate find their configs in the packaged model zoo and train through
``python -m retinadet.engine.train_net``."""
import json
import os
import shutil
import site
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = "quick/retinanet_R_18_shapes_tiny.yaml"

# Run by the isolated interpreter: which retinadet it imports and where its configs are.
_PROBE = textwrap.dedent(
    """
    import json, retinadet, retinadet.ops, retinadet.model_zoo as zoo
    try:
        zoo.get_config_file("quick/retinanet_R18_shapes_tiny.yaml")
        error = ""
    except FileNotFoundError as e:
        error = str(e)
    print(json.dumps({"package": retinadet.__file__, "root": zoo.config_root(), "tiny": zoo.get_config_file(%r),
                      "extension": retinadet.ops.extension_loaded(), "error": error}))
    """ % TINY
)


def _copy_source(dst: str) -> None:
    """What setup.py builds from, without compiled objects or caches (pip leaves build/ and
    *.egg-info in the folder it builds: this copy, not the checkout)."""
    for name in ("setup.py", "README.md"):
        shutil.copy(os.path.join(REPO, name), dst)
    shutil.copytree(os.path.join(REPO, "configs"), os.path.join(dst, "configs"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_C*.so", "_C*.pyd")

    def ignore_packaged_configs(folder, names):
        skipped = set(ignore(folder, names))
        if os.path.basename(folder) == "model_zoo":
            skipped.add("configs")  # a stale packaged copy, if any
        return skipped

    shutil.copytree(os.path.join(REPO, "retinadet"), os.path.join(dst, "retinadet"), ignore=ignore_packaged_configs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """{"python": an interpreter that sees only the installed copy and the dependencies, "env",
    "target", "work"}: retinadet installed into ``target`` with RETINADET_NO_EXT=1."""
    root = tmp_path_factory.mktemp("installed")
    source, target, work = root / "source", root / "target", root / "work"
    source.mkdir()
    work.mkdir()
    _copy_source(str(source))
    env = dict(os.environ, RETINADET_NO_EXT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), str(source)], check=True, env=env, cwd=str(root), timeout=300)
    # A fresh virtual environment: its site-packages has no .pth file, so an editable install of the
    # checkout in the test's own environment (a path hook that finds retinadet/ and retinadet/_C*.so
    # of the checkout) is not active; the dependencies come from the test environment's site-packages.
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONSAFEPATH", "PYTHONSTARTUP")}
    env.update(PYTHONPATH=os.pathsep.join([str(target), *site.getsitepackages()]), OMP_NUM_THREADS="1",
               PYTHONNOUSERSITE="1")
    return {"python": python, "env": env, "target": str(target), "work": str(work)}


def _run(installed, *args, timeout=300):
    return subprocess.run([installed["python"], *args], cwd=installed["work"], env=installed["env"],
                          capture_output=True, text=True, timeout=timeout)


def test_the_installed_copy_is_the_one_imported_and_ships_its_configs(installed):
    proc = _run(installed, "-c", _PROBE)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    target = installed["target"] + os.sep
    assert found["package"].startswith(target), found  # not the checkout
    assert found["root"] == os.path.join(installed["target"], "retinadet", "model_zoo", "configs")
    assert found["tiny"] == os.path.join(found["root"], *TINY.split("/"))
    assert found["extension"] is False  # built with RETINADET_NO_EXT=1: the fallback ops
    assert "'quick/retinanet_R18_shapes_tiny.yaml' is not a model-zoo config" in found["error"]
    assert found["root"] in found["error"]
    assert "Closest existing name: 'quick/retinanet_R_18_shapes_tiny.yaml'" in found["error"]
    scripts = set(os.listdir(os.path.join(installed["target"], "bin")))
    assert {"retinadet-train", "retinadet-compare", "retinadet-ablate"} <= scripts


@pytest.mark.parametrize("tool", ["compare", "ablate"])
def test_help_of_the_installed_commands(installed, tool):
    proc = _run(installed, "-m", f"retinadet.experiments.{tool}", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:") and "--preset" in proc.stdout and "model-zoo" in proc.stdout


def test_installed_compare_trains_a_model_zoo_config(installed, tmp_path):
    out = tmp_path / "results"
    proc = _run(installed, "-m", "retinadet.experiments.compare", "--configs", TINY, "--iters", "1",
                "--output-dir", str(out), "DATASETS.ROOT", str(tmp_path / "datasets"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text())
    (run,) = results["runs"]
    assert run["status"] == "ok" and run["max_iter"] == 1 and run["metrics"]["AP"] is not None, run
    assert results["configs"] == [os.path.join(installed["target"], "retinadet", "model_zoo", "configs",
                                               *TINY.split("/"))]
    # The training child ran the installed train_net module, with the same interpreter.
    console = open(os.path.join(run["output_dir"], "console.txt")).read()
    assert console.startswith(f"$ {installed['python']} -m retinadet.engine.train_net --config-file ")
    assert f"command line: {os.path.join(installed['target'], 'retinadet', 'engine', 'train_net.py')}" in console
