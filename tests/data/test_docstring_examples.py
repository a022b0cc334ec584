"""The `Example:` blocks of keras_mdr.data run as written, and count.

Every module of the package is found by walking it (a new module cannot be
forgotten). A module passes only if at least one example that is neither an
import nor skipped ran and none failed (issue 10: 6 of 13 modules "passed"
with every example skipped). The examples that need a real dataset on disk
are skipped in the docstring; each such module is listed in `NEEDS_DATA` with
the test that makes the same call on files written in the real layout, and
that test must contain the call.
"""

import doctest
import importlib
import pathlib
import pkgutil

import pytest

import keras_mdr.data

TESTS = pathlib.Path(__file__).resolve().parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# module -> (test file, the calls it must contain: those the skipped examples make)
NEEDS_DATA = {
    "keras_mdr.data.datasets.cars196": ("datasets/test_cars196.py", ['load_dataset("cars196"']),
    "keras_mdr.data.datasets.cub200": ("datasets/test_cub200.py", ['load_dataset("cub200"']),
    "keras_mdr.data.datasets.fashion_mnist": (
        "datasets/test_fashion_mnist.py", ['load_dataset("fashion_mnist"']),
    "keras_mdr.data.datasets.image_folder": ("datasets/test_image_folder.py", ['load_dataset("folder"']),
    "keras_mdr.data.datasets.inshop": ("datasets/test_inshop.py", ['load_dataset("inshop"']),
    "keras_mdr.data.datasets.sop": ("datasets/test_sop.py", ['load_dataset("sop"']),
}
# Modules without a public function of their own to show.
NO_EXAMPLES = {
    "keras_mdr.data": "package index",
    "keras_mdr.data.datasets": "package index",
    "keras_mdr.data.datasets.missing_data": "the message for a missing dataset",
    "keras_mdr.data.datasets.tfds_source": "private TFDS reader",
}


def _modules():
    package = keras_mdr.data
    names = [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return [package.__name__] + sorted(names)


def run_examples(module):
    """(examples that ran and are not imports, examples skipped, failures)."""
    tests = doctest.DocTestFinder().find(module)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    real = skipped = 0
    for test in tests:
        for example in test.examples:
            if example.options.get(doctest.SKIP):
                skipped += 1
            elif not example.source.lstrip().startswith(("import ", "from ")):
                real += 1
        runner.run(test)
    return real, skipped, runner.summarize(verbose=False).failed


@pytest.mark.parametrize("name", _modules())
def test_examples(name):
    real, skipped, failed = run_examples(importlib.import_module(name))
    assert failed == 0
    if name in NO_EXAMPLES:
        assert real == skipped == 0, f"{name} has examples now: take it off NO_EXAMPLES"
        return
    if name in NEEDS_DATA:
        path, calls = NEEDS_DATA[name]
        source = (TESTS / path).read_text()
        assert skipped > 0 and all(call in source for call in calls), (name, path)
        return
    assert real > 0, f"{name}: no example ran (all skipped or imports only)"
    assert skipped == 0, f"{name}: skipped examples; list the module in NEEDS_DATA"


def test_lists_name_real_modules():
    modules = set(_modules())
    assert set(NEEDS_DATA) <= modules and set(NO_EXAMPLES) <= modules
