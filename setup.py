"""segjax: semantic, panoptic and volumetric segmentation in JAX/Flax."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


TEST_REQUIREMENTS = ["pytest", "pytest-xdist", "nbclient", "nbformat", "ipykernel", "build",
                     "packaging"]

# tensorflow-cpu has Linux wheels only; elsewhere the full tensorflow (same API).
EXPORT_REQUIREMENTS = ["tensorflow-cpu>=2.21.0; sys_platform == 'linux'",
                       "tensorflow>=2.21.0; sys_platform != 'linux'",
                       "tf2onnx>=1.17.0", "onnx>=1.23.2", "onnxruntime>=1.32.0",
                       "ai-edge-litert>=2.3.0"]

# The repository: Colab notebooks' badges and install cells point here (tests/test_notebooks.py).
REPOSITORY = "https://github.com/segjax/segjax"

setup(
    name="segjax",
    version="0.1.0",
    description="Semantic segmentation in JAX/Flax: the field's canon, provably correct, fast.",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    url=REPOSITORY,
    packages=find_packages(include=["segjax", "segjax.*"]),
    python_requires=">=3.11",
    install_requires=requirements(),
    extras_require={
        # What the test suite needs beyond segjax: pytest, the notebook runner (colab/ is
        # executed top to bottom by tests/test_notebooks.py) and `build` for the wheel test.
        "test": TEST_REQUIREMENTS,
        # A workdir in a bucket (--workdir gs://...): epath reaches gs:// through gcsfs; the
        # workdir's lease lock uses google-cloud-storage's generation preconditions.
        "gcs": ["gcsfs", "google-cloud-storage"],
        # Test-only: PyTorch references for parity tests, never imported by segjax itself.
        # torchvision, timm and segmentation_models_pytorch install with --no-deps
        # (requirements-dev-nodeps.txt). CI installs torch from constraints.txt's CPU build.
        "dev": TEST_REQUIREMENTS + [
            "torch>=2.13",
            "safetensors",
            "transformers",
            "huggingface_hub",
            "pyyaml",  # timm (installed with --no-deps from requirements-dev-nodeps.txt)
            # References of the loss and metric tests: MONAI's HD95, surface Dice and
            # confusion-matrix metrics; OpenCV for boundary-iou-api's mask_to_boundary.
            "monai==1.5.1",
            "opencv-python-headless==5.1.0.95",
        ],
        # segjax.export and segjax.deployed (and `make test-export`): TensorFlow for jax2tf and
        # the LiteRT converter, tf2onnx for ONNX, and the runtimes the exports are checked with.
        # Lower bounds: the versions `make test-export` tests (constraints-export.txt).
        "export": EXPORT_REQUIREMENTS,
    },
    entry_points={"console_scripts": ["segjax-train=segjax.main:run"]},
)
