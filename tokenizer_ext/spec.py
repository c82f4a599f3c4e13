"""The control-token spec (what to add) and the manifest (what was added, with ids).

`ControlTokens` is the single source of truth for the strings; `Manifest` (`condpt_tokens.json`, saved beside the
tokenizer files) is what everything downstream reads, so no component ever guesses an id from a string.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_SELF_TOKEN = "\U00010024"  # 𐀤 LINEAR B SYLLABLE B080 MA: rare, one code point, no NFKC folding
MANIFEST_NAME = "condpt_tokens.json"
_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class ControlTokenError(ValueError):
    """A bad spec, a clash with the tokenizer's vocabulary, or a manifest that does not match its tokenizer."""


def _check_string(value: str, what: str) -> str:
    if not value or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    if value != value.strip():
        # A control string with edge whitespace would be matched differently by every pre-tokenizer.
        raise ValueError(f"{what} {value!r} must not start or end with whitespace")
    return value


class TagToken(BaseModel):
    """One tag: `role` names it in data (`good`, `bad`, ...), `string` is the token text, `description` is the
    ordinary text whose mean embedding can initialise it (`--init text`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str
    string: str
    description: str = ""

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if not _ROLE.match(v):
            raise ValueError(f"role {v!r} must be an identifier (letters, digits, _ or -)")
        return v

    @field_validator("string")
    @classmethod
    def _string(cls, v: str) -> str:
        if v.isascii() and v.isalnum():
            # Generated text is stripped of every tag string (condpt.generate.strip_tags): a tag `the` would cut
            # it out of ordinary words ('other' -> 'or'), and raw text is full of it.
            raise ValueError(f"tag string {v!r} is a plain word; use one that text does not contain, like <|{v}|>")
        return _check_string(v, "tag string")


def _default_tags() -> list[TagToken]:
    return [
        TagToken(role="good", string="<|good|>", description=" good"),
        TagToken(role="bad", string="<|bad|>", description=" bad"),
    ]


class ControlTokens(BaseModel):
    """The control tokens to add: tag tokens with roles, and the reserved self-reference token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tags: list[TagToken] = Field(default_factory=_default_tags)
    self_token: str = DEFAULT_SELF_TOKEN
    self_description: str = " AI"

    @field_validator("self_token")
    @classmethod
    def _self(cls, v: str) -> str:
        return _check_string(v, "self_token")

    @model_validator(mode="after")
    def _unique(self) -> ControlTokens:
        if not self.tags:
            raise ValueError("at least one tag token is required")
        roles = [t.role for t in self.tags]
        dup_roles = sorted({r for r in roles if roles.count(r) > 1})
        if dup_roles:
            raise ValueError(f"duplicate tag roles: {dup_roles}")
        strings = self.strings()
        dup = sorted({s for s in strings if strings.count(s) > 1})
        if dup:
            raise ValueError(f"duplicate token strings: {dup}")
        return self

    def strings(self) -> list[str]:
        """Every control string, tags first (in spec order), then the self token."""
        return [t.string for t in self.tags] + [self.self_token]

    @classmethod
    def from_yaml(cls, path: str | Path) -> ControlTokens:
        """Load a spec; errors name the file and the field (or the YAML line)."""
        path = Path(path)
        if not path.is_file():
            raise ControlTokenError(f"{path}: token spec file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise ControlTokenError(f"{path}{where}: not valid YAML: {getattr(e, 'problem', e)}") from e
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ControlTokenError(f"{path}: expected a mapping with keys tags/self_token/self_description")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            msgs = "; ".join(
                f"field {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()
            )
            raise ControlTokenError(f"{path}: {msgs}") from None

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.model_dump(), allow_unicode=True, sort_keys=False), "utf-8")


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    string: str
    id: int


class Manifest(BaseModel):
    """Strings, ids and roles of the control tokens in one tokenizer (`condpt_tokens.json`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = 1
    tags: dict[str, TokenEntry]
    self_token: TokenEntry
    control_ids: list[int]
    spec: ControlTokens

    @property
    def roles(self) -> list[str]:
        """Tag roles in spec order; `tag_index` columns index into this list."""
        return list(self.tags)

    def tag_id(self, role: str) -> int:
        try:
            return self.tags[role].id
        except KeyError:
            raise KeyError(f"unknown tag role {role!r}; this manifest has {self.roles}") from None

    def role_of(self, token_id: int) -> str | None:
        """The role whose tag has this id, else None."""
        for role, entry in self.tags.items():
            if entry.id == token_id:
                return role
        return None

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / MANIFEST_NAME
        path.write_text(json.dumps(self.model_dump(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Manifest:
        """Load from a tokenizer/checkpoint directory (or the json file itself)."""
        path = Path(directory)
        if path.is_dir():
            path = path / MANIFEST_NAME
        if not path.is_file():
            raise ControlTokenError(f"{path}: no control-token manifest; run `condpt add-tokens` first")
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as e:
            raise ControlTokenError(f"{path}: invalid manifest: {e}") from None

    def check(self, tokenizer) -> None:
        """Raise if this manifest does not describe `tokenizer` (e.g. the manifest of another checkpoint)."""
        decoder = tokenizer.added_tokens_decoder
        for entry in [*self.tags.values(), self.self_token]:
            tok = decoder.get(entry.id)
            if tok is None or tok.content != entry.string or not tok.special:
                if tok is not None:
                    there = f"{'the special' if tok.special else 'the added'} token {tok.content!r}"
                elif 0 <= entry.id < len(tokenizer):
                    there = f"the ordinary token {tokenizer.convert_ids_to_tokens(entry.id)!r}"
                else:
                    there = f"no token with that id (it has {len(tokenizer)})"
                raise ControlTokenError(
                    f"manifest says {entry.string!r} is special id {entry.id}, but the tokenizer has "
                    f"{there} there; was the manifest copied from another tokenizer?"
                )
