"""Install retinadet; compile csrc/ into retinadet._C when C++ sources are present."""
import glob
import os
import shutil

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
INSTALL_REQUIRES = ["torchvision>=0.29", "fvcore", "iopath", "pycocotools", "numpy", "pyyaml", "tabulate",
                    "tensorboard", "matplotlib"]
EXTRAS = {"dev": ["pytest", "hypothesis"]}


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


ext_modules, cmdclass = _extensions()

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
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
