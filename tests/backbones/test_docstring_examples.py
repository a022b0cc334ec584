"""The `Example:` blocks of keras_mdr.backbones run as written, and count.

As tests/data/test_docstring_examples.py: every module is found by walking the
package; it passes only if an example that is neither an import nor skipped
ran, and none failed. Examples that need a PyTorch `.pth` file (45 MB of
BN-Inception weights, an authors' checkpoint) are skipped in the docstring;
their modules are listed in `NEEDS_FILES` with the test that makes the same
calls on `.pth` files written by PyTorch (the torch lane) or by hand
(pth_writer.py), and that test must contain the calls.
"""

import doctest
import importlib
import pathlib
import pkgutil

import pytest

import keras_mdr.backbones

TESTS = pathlib.Path(__file__).resolve().parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

NEEDS_FILES = {
    "keras_mdr.backbones.bn_inception_weights": ("parity.py", ["load_bn_inception_weights("]),
    "keras_mdr.backbones.release_checkpoint": (
        "test_release_checkpoint.py", ["load_release_checkpoint(", "evaluate_checkpoint.py"]),
    "keras_mdr.backbones.torch_checkpoint": (
        "test_torch_checkpoint.py", ["load_torch_checkpoint(", "read_state_dict("]),
}
NO_EXAMPLES = {"keras_mdr.backbones": "package index"}


def _modules():
    package = keras_mdr.backbones
    names = [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return [package.__name__] + sorted(names)


def run_examples(module):
    """(examples that ran and are not imports, examples skipped, failures)."""
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    real = skipped = 0
    for test in doctest.DocTestFinder().find(module):
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
    if name in NEEDS_FILES:
        path, calls = NEEDS_FILES[name]
        source = (TESTS / path).read_text()
        assert skipped > 0 and all(call in source for call in calls), (name, path)
        return
    assert real > 0, f"{name}: no example ran (all skipped or imports only)"
    assert skipped == 0, f"{name}: skipped examples; list the module in NEEDS_FILES"


def test_lists_name_real_modules():
    modules = set(_modules())
    assert set(NEEDS_FILES) <= modules and set(NO_EXAMPLES) <= modules
    # The helper module really is what the listed tests use.
    assert "from parity import" in (TESTS / "test_bn_inception.py").read_text()
