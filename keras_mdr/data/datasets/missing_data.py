"""The error for a dataset that is not where it was looked for."""

import os


def _describe(directory):
    if not os.path.isdir(directory):
        return f"{directory!r} does not exist"
    entries = sorted(os.listdir(directory))
    shown = ", ".join(entries[:12]) + (", ..." if len(entries) > 12 else "")
    return f"{directory!r} holds: {shown or 'nothing'}"


def missing_dataset_error(dataset, data_dir, layouts, how_to_get, searched=None):
    """A `FileNotFoundError` naming the expected layouts and where to get the data.

    Args:
        dataset: the dataset's display name.
        data_dir: the `data_dir` the user gave (or None).
        layouts: lines describing each accepted on-disk layout.
        how_to_get: lines saying where the data can be obtained.
        searched: the directories looked in; default `[data_dir]`.
    """
    if searched is None:
        searched = [] if data_dir is None else [data_dir]
    found = "; ".join(_describe(d) for d in searched) or "nothing was searched"
    expected = "\n".join(f"  - {line}" for line in layouts)
    sources = "\n".join(f"  - {line}" for line in how_to_get)
    return FileNotFoundError(
        f"Expected {dataset} in one of these layouts under data_dir:\n{expected}\n"
        f"Received: data_dir={data_dir!r}; {found}.\n"
        f"Where to get it:\n{sources}"
    )


def first_existing(*paths):
    """The first of `paths` that exists, else None."""
    for path in paths:
        if path is not None and os.path.exists(path):
            return path
    return None
