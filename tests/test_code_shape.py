"""The shape the package keeps, checked on its source with `ast`.

Rules (on keras_mdr/; rule 2 on tests/ too; benchmarks/ and examples/ are not checked):

1. **No function over 60 lines**, counted from its `def` line to the last line
   of its body: docstring, comments and blank lines included (a nested
   function counts inside its parent and on its own).
2. **No module uses another module's private name.** A private name starts
   with one underscore (dunders are public). `from m import _x` is allowed
   only when `_x` is itself a module of keras_mdr (keras_mdr's private
   modules, `_keras_compat` and `_backend_check`, are importable by the
   package: a private *module* is private to the package, not to a file), and
   `m._x` is forbidden for any imported module or package `m`. Inside a
   private module the public names are its interface.
3. **Tests go through public behaviour**: the rule 2 check also runs on
   `tests/`, so no test reaches a private name of keras_mdr.
4. **Private Keras internals behind one door.** Only `keras_mdr/_keras_compat.py`
   reads a private attribute that Keras' own base classes define
   (`obj._compile_loss`, `self._distribute_strategy`, ...) and the module does
   not assign itself (`self._path = ...` makes `_path` the module's own),
   apart from the `super()._hook` call of a method overriding that same
   `_hook` (an override must live on the class; its body delegates to
   `_keras_compat`). No module
   imports `keras.src` or `tensorflow.python`.
"""

import ast
import pathlib

import keras
import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_mdr"
MAX_FUNCTION_LINES = 60
COMPAT = "_keras_compat.py"
FORBIDDEN_IMPORTS = ("keras.src", "tensorflow.python")


def _private(name):
    return name.startswith("_") and not name.startswith("__")


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package_module(dotted):
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _absolute(node, module):
    """The absolute module of an ImportFrom inside `module` (a dotted name)."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    package = package[: len(package) - node.level + (1 if _is_package(module) else 0)]
    return ".".join(package + ([node.module] if node.module else []))


def _is_package(module):
    return (PACKAGE.parent.joinpath(*module.split(".")) / "__init__.py").is_file()


def long_functions(source, limit=MAX_FUNCTION_LINES):
    """`(name, first line, lines)` of every function in `source` over `limit` lines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append((node.name, node.lineno, lines))
    return found


def private_imports(source, module):
    """`(line, text)` of every use of another module's private name in `source`."""
    tree = ast.parse(source)
    found = []
    module_aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module_aliases.add((alias.asname or alias.name).split(".")[0])
                if any(_private(part) for part in alias.name.split(".")[1:]):
                    if not (alias.name.startswith("keras_mdr.") and _is_package_module(alias.name)):
                        found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            source_module = _absolute(node, module)
            for alias in node.names:
                target = f"{source_module}.{alias.name}"
                if source_module.startswith("keras_mdr") and _is_package_module(target):
                    module_aliases.add(alias.asname or alias.name)
                elif _private(alias.name):
                    found.append((node.lineno, f"from {source_module} import {alias.name}"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
        ):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return found


def _keras_private_names():
    """Private attribute names that Keras' base classes and a compiled model define."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    objects = [model, keras.layers.Dense(1), keras.optimizers.SGD(), keras.losses.MeanSquaredError(),
               keras.metrics.Mean(), keras.callbacks.Callback()]
    names = set()
    for obj in objects:
        names.update(n for n in dir(obj) if _private(n))
    return frozenset(names)


def _defined_private_names(tree):
    """Private attributes a module assigns itself (`x._a = ...`)."""
    names = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for inner in ast.walk(target):
                if isinstance(inner, ast.Attribute) and _private(inner.attr):
                    names.add(inner.attr)
    return names


def keras_internals(source, keras_private):
    """`(line, text)` of every private Keras attribute read, and keras.src / tensorflow.python import."""
    tree = ast.parse(source)
    found = []
    own = _defined_private_names(tree)
    overrides = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                overrides[id(inner)] = node.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in keras_private and node.attr not in own:
            is_super_call = (
                isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name)
                and node.value.func.id == "super"
            )
            if not (is_super_call and overrides.get(id(node)) == node.attr):
                found.append((node.lineno, f".{node.attr}"))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in keras_private
            and node.args[1].value not in own
        ):
            found.append((node.lineno, f"{node.func.id}(..., {node.args[1].value!r})"))
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        for name in names:
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IMPORTS):
                found.append((node.lineno, f"import {name}"))
    return found


def _report(per_file):
    return "\n".join(
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text}"
        for path, items in per_file
        for line, text in items
    )


def test_no_function_in_the_package_is_over_60_lines():
    offenders = [
        (path, [(line, f"{name}: {lines} lines") for name, line, lines in long_functions(path.read_text())])
        for path in _sources()
    ]
    offenders = [(p, items) for p, items in offenders if items]
    assert not offenders, "functions over 60 lines:\n" + _report(offenders)


def test_no_module_uses_another_modules_private_name():
    offenders = [(p, private_imports(p.read_text(), _module_name(p))) for p in _sources()]
    offenders = [(p, items) for p, items in offenders if items]
    assert not offenders, "private names used across modules:\n" + _report(offenders)


def test_no_test_uses_a_private_name_of_another_module():
    tests = sorted(pathlib.Path(__file__).resolve().parent.rglob("*.py"))
    offenders = [(p, private_imports(p.read_text(), "tests." + p.stem)) for p in tests]
    offenders = [(p, items) for p, items in offenders if items]
    assert not offenders, "private names used by tests:\n" + _report(offenders)


def test_only_keras_compat_touches_private_keras_internals():
    keras_private = _keras_private_names()
    offenders = [
        (p, keras_internals(p.read_text(), keras_private))
        for p in _sources() if p.name != COMPAT
    ]
    offenders = [(p, items) for p, items in offenders if items]
    assert not offenders, "private Keras internals outside _keras_compat:\n" + _report(offenders)


# --- the checks catch what they name (planted violations) ----------------------


def test_long_function_is_caught_at_61_lines_not_60():
    def source(lines):
        return "def f():\n" + "    x = 1\n" * (lines - 1)

    assert long_functions(source(60)) == []
    assert long_functions(source(61)) == [("f", 1, 61)]
    documented = 'def f():\n    """A docstring\n\n    of three lines."""\n' + "    x = 1\n" * 57
    assert long_functions(documented) == [("f", 1, 61)]
    nested = "def outer():\n    def inner():\n" + "        x = 1\n" * 60
    assert [name for name, _, _ in long_functions(nested)] == ["outer", "inner"]


@pytest.mark.parametrize(
    "source",
    [
        "from keras_mdr.evaluation.blocked_ranks import _normalise_rows\n",
        "from .blocked_ranks import _normalise_rows\n",
        "from keras_mdr.evaluation import embedding\nembedding._to_numpy(1)\n",
        "import keras_mdr.evaluation.embedding as e\ne._to_numpy(1)\n",
        "from keras_mdr import _keras_compat\n_keras_compat._minor('3.15')\n",
        "from numpy import _private_thing\n",
    ],
)
def test_private_name_across_modules_is_caught(source):
    assert private_imports(source, "keras_mdr.evaluation.knn") != []


@pytest.mark.parametrize(
    "source",
    [
        "from keras_mdr import _keras_compat\n_keras_compat.logs_as_vectors({})\n",
        "from keras_mdr import _backend_check\n",
        "import keras_mdr._keras_compat\n",
        "from keras_mdr.evaluation.inputs import as_matrix\n",
        "class A:\n    def f(self):\n        return self._own\n",
    ],
)
def test_private_module_of_the_package_and_own_attributes_are_allowed(source):
    assert private_imports(source, "keras_mdr.models.mdr_model") == []


def test_private_keras_attribute_outside_compat_is_caught():
    keras_private = _keras_private_names()
    assert "_compile_loss" in keras_private and "_distribute_strategy" in keras_private
    caught = "class M:\n    def compute_loss(self):\n        return self._compile_loss\n"
    assert keras_internals(caught, keras_private) != []
    by_name = "def f(model):\n    return getattr(model, '_distribute_strategy', None)\n"
    assert keras_internals(by_name, keras_private) != []
    own = "class M:\n    def __init__(self):\n        self._path = 1\n        print(self._path)\n"
    assert "_path" in keras_private and keras_internals(own, keras_private) == []
    bad_super = "class M:\n    def other(self):\n        return super()._maybe_symbolic_build()\n"
    assert keras_internals(bad_super, keras_private) != []
    assert keras_internals("from keras.src.trainers import trainer\n", keras_private) != []
    assert keras_internals("import tensorflow.python.ops\n", keras_private) != []
    hook = (
        "class M:\n    def _maybe_symbolic_build(self, **kw):\n"
        "        return super()._maybe_symbolic_build(**kw)\n"
    )
    assert keras_internals(hook, keras_private) == []
