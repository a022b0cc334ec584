"""The docs' benchmark sections equal what benchmarks/render.py makes of the stored JSON."""

import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _module(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _module("render")


@pytest.mark.parametrize("path", render.documents(), ids=lambda p: os.path.relpath(p, REPO))
def test_rendered_sections_match_the_stored_json(path):
    with open(path) as f:
        text = f.read()
    for name in render.sections(text):
        assert name in render.SECTIONS, f"{path}: unknown section {name!r}"
    assert render.render_text(text) == text, (
        f"{os.path.relpath(path, REPO)}: a rendered section differs from benchmarks/results; "
        "run `python benchmarks/render.py` (numbers come from the JSON, never by hand)"
    )


def test_every_section_is_rendered_somewhere_and_has_a_source():
    used = set()
    for path in render.documents():
        with open(path) as f:
            used.update(render.sections(f.read()))
    assert used == set(render.SECTIONS)
    for name in render.SECTIONS:
        assert "Source: `benchmarks/results/" in render.render_section(name)


def test_a_changed_number_is_caught():
    text = "a\n<!-- bench:eval_speed:begin -->\n" + render.render_section("eval_speed") + \
        "<!-- bench:eval_speed:end -->\nb\n"
    assert render.render_text(text) == text
    digit = next(i for i, c in enumerate(text) if c.isdigit() and i > 40)
    planted = text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1:]
    assert render.render_text(planted) != planted


def test_order_statistic_interval_of_a_median():
    stats = _module("stats")
    assert stats.median_interval_ranks(15) == (4, 12)
    assert stats.median_interval_ranks(5) is None
    r = stats.paired_ratio([2.0] * 15, [1.0] * 15)
    assert (r["median"], r["low"], r["high"], r["n"]) == (2.0, 2.0, 2.0, 15)
