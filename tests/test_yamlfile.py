"""condpt.yamlfile: the one YAML reader (duplicate keys, non-UTF-8 files, YAML 1.2 floats, lines in errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from condpt.yamlfile import YamlError, key_lines, load_yaml, read_yaml


@pytest.mark.parametrize("text, key, line, first", [
    ("a: 1\na: 2\n", "a", 2, 1),
    ("train:\n  x: 1\nother: 0\ntrain:\n  y: 2\n", "train", 4, 1),
    ("top:\n  - {b: 1, c: 2}\n  - {b: 1,\n     b: 2}\n", "b", 4, 3),
    ("1: a\n1: b\n", 1, 2, 1),
])
def test_duplicate_keys_are_refused_at_any_depth(text, key, line, first):
    with pytest.raises(YamlError, match=rf"f\.yaml: not valid YAML \(line {line}\): duplicate key {key!r} "
                                        rf"\(first at line {first}\)"):
        load_yaml(text, "f.yaml")


def test_merge_keys_may_be_overridden():
    assert load_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n") == {"base": {"x": 1, "y": 2}, "c": {"x": 3, "y": 2}}


@pytest.mark.parametrize("text, value", [
    ("1e5", 1e5), ("3e-4", 3e-4), ("989.0e12", 989.0e12), ("-1E+3", -1e3), (".5e1", 5.0), ("2.0e-3", 2e-3),
    ("1_000", 1000), ("10^26", "10^26"), ("x1e5", "x1e5"), ("1e", "1e"), (".inf", float("inf")),
])
def test_yaml_12_floats(text, value):
    assert load_yaml(text) == value and type(load_yaml(text)) is type(value)


@pytest.mark.parametrize("text, value", [
    ("true", True), ("False", False), ("TRUE", True), ("off", "off"), ("on", "on"), ("yes", "yes"),
    ("No", "No"), ("y", "y"),
])
def test_yaml_12_booleans(text, value):
    """Only true/false are booleans: `other_tokens: off` is the string a config means (YAML 1.1 made it False)."""
    assert load_yaml(text) == value and type(load_yaml(text)) is type(value)
    assert load_yaml(f"route: {{other_tokens: {text}}}") == {"route": {"other_tokens": value}}


LAUGHS = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(9))


@pytest.mark.parametrize("text, why", [
    ("a: " + "[" * 100_000 + "]" * 100_000, "nested too deeply"),  # PyYAML itself recurses
    ("a: " + "[" * 70 + "]" * 70, "nested deeper than 64 levels"),
    ("x: 1\nseed: 1" + "0" * 5000, r"line 2\): integer not usable"),
    ("- &a [*a]", "contains it"),
    (LAUGHS, "expand it to more than 1,000,000 values"),
])
def test_what_no_config_can_be_is_refused(text, why):
    """Hostile shapes end as a YamlError, never a RecursionError, a bare ValueError or a hang downstream."""
    with pytest.raises(YamlError, match=why):
        load_yaml(text, "f.yaml")


def test_shared_aliases_are_fine():
    assert load_yaml("a: &x {b: 1}\nc: *x\nd: [*x, *x]\n") == {"a": {"b": 1}, "c": {"b": 1}, "d": [{"b": 1}] * 2}


def test_read_yaml_names_the_file(tmp_path):
    with pytest.raises(YamlError, match=rf"{tmp_path / 'nope.yaml'}: grid config not found"):
        read_yaml(tmp_path / "nope.yaml", "grid config")
    with pytest.raises(YamlError, match="is a directory"):
        read_yaml(tmp_path)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("a: 1\nb: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(YamlError, match=rf"{bad}: not UTF-8 text \(byte 11, line 2\)"):
        read_yaml(bad)
    assert isinstance(YamlError("x"), ValueError), "callers catch ValueError"
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml(tmp_path / "empty.yaml") is None


def test_key_lines(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("a: 1\nb:\n  c: 2\n  d:\n    - x: 1\n    - y: 2\n")
    assert key_lines(path) == {("a",): 1, ("b",): 2, ("b", "c"): 3, ("b", "d"): 4, ("b", "d", 0): 5,
                               ("b", "d", 0, "x"): 5, ("b", "d", 1): 6, ("b", "d", 1, "y"): 6}


REPO = Path(__file__).resolve().parents[1]
SHIPPED_YAML = sorted(p for folder in ("recipes", "examples", "condpt", "tokenizer_ext")
                      for p in (REPO / folder).rglob("*.yaml") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", SHIPPED_YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_yaml_reads(path):
    """No shipped YAML relies on what this reader refuses (a duplicate key, a non-UTF-8 byte)."""
    assert isinstance(read_yaml(path), dict)
