"""The wheel holds every subpackage: an editable install finds them anyway, so only this test would notice."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_for_the_wheel():
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(settings["packages"])
    sources = {name: ROOT / folder for name, folder in settings["package-dir"].items()}
    on_disk = set()
    for name, folder in sources.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            dotted = ".".join((name, *relative))
            if not any(dotted.startswith(other + ".") or dotted == other
                       for other in sources if other != name and len(other) > len(name)):
                on_disk.add(dotted)
    assert on_disk == listed, f"missing from pyproject: {sorted(on_disk - listed)}; not on disk: {sorted(listed - on_disk)}"
