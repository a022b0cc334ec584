"""keras_mdr: deep metric learning with Multi-level Distance Regularization (Keras 3)."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "keras_mdr" / "__init__.py").read_text(), re.M
).group(1)

setup(
    name="keras-mdr",
    version=VERSION,
    description="Deep metric learning with Multi-level Distance Regularization for Keras 3",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_mdr", "keras_mdr.*"]),
    python_requires=">=3.10,<3.14",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        "keras-cv>=0.9,<0.10",
        "tensorflow-datasets>=4.9.8,<5",
        "faiss-cpu>=1.9,<2",
        "absl-py>=2.0",
        "tensorboard>=2.20",
        "numpy>=1.26",
        "scipy>=1.11",
        "scikit-learn>=1.4",
        "matplotlib>=3.8",
        "pillow>=10",
        "threadpoolctl>=3",
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.5,<4"]},
    license="Apache-2.0",
)
