"""segjax: semantic, panoptic and volumetric segmentation in JAX/Flax."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="segjax",
    version="0.1.0",
    description="Semantic segmentation in JAX/Flax: the field's canon, provably correct, fast.",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["segjax", "segjax.*"]),
    python_requires=">=3.10",
    install_requires=requirements(),
    extras_require={
        # Test-only: PyTorch references for parity tests, never imported by segjax itself.
        # torchvision, timm and segmentation_models_pytorch install with --no-deps
        # (see the Makefile's dev-references target).
        "dev": [
            "pytest",
            "pytest-xdist",
            "torch==2.13.0",
            "safetensors",
            "transformers",
            "huggingface_hub",
            "pyyaml",  # timm (installed with --no-deps from requirements-dev-nodeps.txt)
        ],
    },
    entry_points={"console_scripts": ["segjax-train=segjax.main:run"]},
)
