"""Install retinadet; compile csrc/ into retinadet._C when C++ sources are present and the Cython COCO
evaluator into retinadet.evaluation._cocoeval when Cython is installed; ship configs/ as the package data
of retinadet.model_zoo (copied into the build, so the source tree keeps one copy)."""
import glob
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
INSTALL_REQUIRES = ["torchvision>=0.29", "fvcore", "iopath", "pycocotools", "numpy", "pyyaml", "tabulate",
                    "tensorboard", "matplotlib"]
# export: tools/export_model.py --format onnx and the onnxruntime / openvino inference backends.
EXTRAS = {
    "dev": ["pytest", "hypothesis"],
    "export": ["onnx>=1.16", "onnxscript", "onnxruntime>=1.18", "openvino>=2024.0"],
}
CONSOLE_SCRIPTS = [
    "retinadet-train = retinadet.engine.train_net:invoke_main",
    "retinadet-compare = retinadet.experiments.compare:main",
    "retinadet-ablate = retinadet.experiments.ablate:main",
]
# configs/<name>.yaml of the source tree becomes retinadet/model_zoo/configs/<name>.yaml of the package.
CONFIGS_DIR = "configs"
PACKAGED_CONFIGS = os.path.join("retinadet", "model_zoo", "configs")


def _config_files():
    """The YAML files under configs/, as paths relative to this folder; SystemExit when there are none."""
    files = sorted(glob.glob(os.path.join(CONFIGS_DIR, "**", "*.yaml"), recursive=True))
    if not files:
        raise SystemExit(f"setup.py: no config files under {os.path.join(HERE, CONFIGS_DIR)}; the package would "
                         "ship an empty model zoo. Build from a source tree that has configs/.")
    return files


class BuildPyWithConfigs(build_py):
    """build_py that also copies configs/**/*.yaml into retinadet/model_zoo/configs/ of the build
    folder (not in an editable install: retinadet.model_zoo then reads configs/ of the checkout)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for src in _config_files():
            dst = os.path.join(self.build_lib, PACKAGED_CONFIGS, os.path.relpath(src, CONFIGS_DIR))
            self.mkpath(os.path.dirname(dst))
            self.copy_file(src, dst)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [os.path.join(self.build_lib, PACKAGED_CONFIGS, os.path.relpath(f, CONFIGS_DIR))
                          for f in _config_files()]

    def get_source_files(self):
        # The configs travel in a source distribution too, so a wheel built from it has them.
        return super().get_source_files() + _config_files()


def _find_cuda_home():
    """The CUDA toolkit folder that really holds lib64/libcudart (nvcc on PATH may be a wrapper)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for c in candidates:
        if c and glob.glob(os.path.join(c, "lib64", "libcudart*")):
            return c
    return None


def _extensions():
    """CppExtension (CPU kernels) or CUDAExtension (CPU + .cu kernels) for retinadet._C, or []."""
    if os.environ.get("RETINADET_NO_EXT") == "1":
        return [], {}
    cpp_sources = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    if not cpp_sources:
        return [], {}
    cuda_home = _find_cuda_home()
    if cuda_home:
        os.environ.setdefault("CUDA_HOME", cuda_home)
    import torch
    from torch.utils import cpp_extension

    cuda_sources = sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
    with_cuda = bool(cuda_sources) and (
        os.environ.get("FORCE_CUDA") == "1"
        or (torch.version.cuda is not None and cuda_home is not None and shutil.which("nvcc") is not None)
    )
    if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        # No GPU to detect: a short list keeps the build within minutes; 9.0 is the H100.
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
    # No FMA contraction, so every kernel rounds like torchvision's element-wise arithmetic;
    # no FP traps assumed (values are unchanged), so the branch-free loops vectorize.
    cxx_flags = ["-O3", "-std=c++20", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp-simd"]
    kwargs = {"name": "retinadet._C", "include_dirs": [os.path.join(HERE, "csrc")],
              "extra_compile_args": {"cxx": cxx_flags}}
    if with_cuda:
        kwargs["extra_compile_args"]["nvcc"] = ["-O3", "-std=c++20", "--fmad=false"]
        ext = cpp_extension.CUDAExtension(sources=cpp_sources + cuda_sources,
                                          define_macros=[("WITH_CUDA", None)], **kwargs)
    else:
        ext = cpp_extension.CppExtension(sources=cpp_sources, **kwargs)
    return [ext], {"build_ext": cpp_extension.BuildExtension}


def _cython_extensions():
    """The Cython COCO evaluator retinadet.evaluation._cocoeval, or [] (with a note) without Cython.

    Without it, COCOEvaluator falls back to pycocotools (same numbers, slower) and says why.
    """
    if os.environ.get("RETINADET_NO_CYTHON") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("setup.py: Cython is not installed, so retinadet.evaluation._cocoeval is not built; "
              "COCO evaluation falls back to pycocotools. Install cython before retinadet.")
        return []
    from setuptools import Extension

    # No FMA contraction: the IoUs and precisions round exactly like pycocotools' C and numpy code.
    ext = Extension("retinadet.evaluation._cocoeval", [os.path.join("retinadet", "evaluation", "_cocoeval.pyx")],
                    language="c++", extra_compile_args=["-O3", "-std=c++17", "-ffp-contract=off"])
    return cythonize([ext], compiler_directives={"language_level": "3", "show_performance_hints": False}, quiet=True)


ext_modules, cmdclass = _extensions()
ext_modules = ext_modules + _cython_extensions()
cmdclass["build_py"] = BuildPyWithConfigs

setup(
    name="retinadet",
    version="0.1.0",
    description="RetinaNet and the focal loss in a framework of registered, pluggable parts",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["retinadet", "retinadet.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
