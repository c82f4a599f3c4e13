"""What a field of a run config accepts: the pydantic settings and types every config class of a run shares.

Configs come from YAML and `key=value` overrides, where a typo is easy and lax coercion hides it: pydantic's
default turns `true` into 1 for `train.max_steps`, `"8"` into 8 and accepts `.inf` as a learning rate.
`STRICT` refuses all three (no bool-as-int, no strings for numbers, only finite floats; an int is still a
valid float) and unknown keys. Paths stay the one lax type, since YAML can only write them as strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _not_empty(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")  # Path("") is ".": an empty path would silently mean the cwd
    return value


PathField = Annotated[Path, Strict(False), BeforeValidator(_not_empty)]
"""A file-system path written as a string (YAML has no path type); never empty."""

Name = Annotated[str, Field(min_length=1)]
"""A non-empty string (a role, a column name, a tracker)."""

Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""A random seed numpy, torch and Python all accept (numpy's is the narrowest: 0 to 2**32 - 1)."""


def _one_path_part(value: str) -> str:
    if value in (".", "..") or "/" in value or "\\" in value or "\0" in value:
        raise ValueError(f"{value!r} must be a plain file or directory name (no '/', not '.' or '..')")
    return value


FileName = Annotated[str, Field(min_length=1), AfterValidator(_one_path_part)]
"""A name that becomes one file or directory name (a grid arm's run directory, a results file stem)."""
