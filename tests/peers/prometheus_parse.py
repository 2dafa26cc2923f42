"""Parses a /metrics exposition with the official Prometheus Python client's parser.

Usage: prometheus_parse.py FILE NAME:TYPE...
Fails if the text does not parse, or a named family is missing or has another type.
"""
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    path, expected = sys.argv[1], sys.argv[2:]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    failures = 0
    for item in expected:
        name, kind = item.rsplit(":", 1)
        # The parser names a counter family without its _total suffix.
        family = families.get(name) or families.get(name.removesuffix("_total"))
        if family is None:
            print(f"FAIL {name}: missing (have {sorted(families)})")
            failures += 1
        elif family.type != kind:
            print(f"FAIL {name}: type {family.type}, want {kind}")
            failures += 1
        else:
            print(f"ok {name} {kind} ({len(family.samples)} samples)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
