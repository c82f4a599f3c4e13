"""tokenizer_ext: control tokens for any Hugging Face fast tokenizer, and injection-safe encoding."""

from tokenizer_ext.extend import add_control_tokens, backend_of, load_tokenizer_with_manifest
from tokenizer_ext.spec import (
    DEFAULT_SELF_TOKEN,
    MANIFEST_NAME,
    ControlTokenError,
    ControlTokens,
    Manifest,
    TagToken,
    TokenEntry,
)
from tokenizer_ext.untrusted import (
    UnsafeEncodingError,
    encode_trusted,
    encode_untrusted,
    escape_untrusted,
    special_ids,
)

__all__ = [
    "DEFAULT_SELF_TOKEN",
    "MANIFEST_NAME",
    "ControlTokenError",
    "ControlTokens",
    "Manifest",
    "TagToken",
    "TokenEntry",
    "UnsafeEncodingError",
    "add_control_tokens",
    "backend_of",
    "encode_trusted",
    "encode_untrusted",
    "escape_untrusted",
    "load_tokenizer_with_manifest",
    "special_ids",
]
