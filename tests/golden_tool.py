"""`make golden`: rewrite tests/golden/ and the README's config-key table on purpose.

Review the diff before committing: a golden change is a change of what users get.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from drnngen.codegen.build import generate
from drnngen.codegen.config import key_table, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GOLDEN = ROOT / "tests" / "golden"
README = ROOT / "README.md"
TABLE_START = "<!-- config-keys:start (make golden) -->"
TABLE_END = "<!-- config-keys:end -->"


def example_configs() -> list[Path]:
    """Every example net config (the tuner's search spaces are not nets)."""
    return sorted(p for p in EXAMPLES.glob("*.yaml") if not p.stem.endswith("space"))


def expected_files(config: Path) -> dict[str, str]:
    return generate(load_config(config), source=config.name)


def readme_table() -> str:
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{key}` | `{default}` | {doc} |" for key, default, doc in key_table()]
    return "\n".join(rows)


def readme_with_table(text: str) -> str:
    pattern = re.compile(re.escape(TABLE_START) + ".*?" + re.escape(TABLE_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md lacks the markers {TABLE_START} ... {TABLE_END}")
    return pattern.sub(lambda _: f"{TABLE_START}\n{readme_table()}\n{TABLE_END}", text)


def main() -> None:
    for config in example_configs():
        folder = GOLDEN / config.stem
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in expected_files(config).items():
            (folder / name).write_text(text, encoding="utf-8")
        print(f"golden: {folder.relative_to(ROOT)}", file=sys.stderr)
    README.write_text(readme_with_table(README.read_text(encoding="utf-8")), encoding="utf-8")
    print("golden: README.md config table", file=sys.stderr)


if __name__ == "__main__":
    main()
