import re
from dataclasses import dataclass, field
from typing import Literal

import pytest

from vqvid.config import ConfigError, parse_overrides, resolve, to_dict


@dataclass
class Inner:
    width: int = 8
    kind: Literal["a", "b"] = "a"
    shape: tuple[int, int, int] = (1, 2, 3)


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    lr: float = 1e-3
    name: str | None = None


def test_overrides_file_and_types(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("inner:\n  width: 16\n")
    config = resolve(Outer, Outer(), file, ["inner.kind=b", "lr=3e-4", "inner.shape=[4,8,8]"])
    assert config == Outer(Inner(16, "b", (4, 8, 8)), 3e-4, None)
    assert to_dict(config)["inner"]["shape"] == [4, 8, 8]


@pytest.mark.parametrize(
    "override, message",
    [
        ("inner.widht=3", "unknown field(s) ['widht']"),
        ("inner.width=wide", "expected an integer"),
        ("inner.kind=c", "expected one of ['a', 'b']"),
        ("inner.shape=[1,2]", "expected 3 items"),
        ("lr", "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve(Outer, Outer(), None, [override])


def test_parse_overrides_nests():
    assert parse_overrides(["a.b.c=1", "a.d=x"]) == {"a": {"b": {"c": 1}, "d": "x"}}
