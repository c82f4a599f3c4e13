"""An adversarial corpus against control-token injection, built from the tokenizer under test."""

from __future__ import annotations

import unicodedata

ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"]
SELF = "\U00010024"

# Characters that NFKC (or a careless normaliser) folds into ASCII punctuation/letters of control strings.
LOOKALIKE = {
    "<": ["\uff1c", "\ufe64", "\u2039", "\u3008", "\u02c2"],
    ">": ["\uff1e", "\ufe65", "\u203a", "\u3009", "\u02c3"],
    "|": ["\uff5c", "\u2223", "\u01c0", "\u05c0", "\u2502", "\ufe31"],
    "o": ["\u043e", "\u03bf", "\uff4f", "\u2092", "\u1d0f"],
    "d": ["\uff44", "\u0501", "\u217e"],
    "s": ["\uff53", "\u0455", "\u209b"],
}


def fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


def lookalike(s: str, k: int) -> str:
    out = []
    for c in s:
        alts = LOOKALIKE.get(c)
        out.append(alts[k % len(alts)] if alts else c)
    return "".join(out)


def variants(s: str) -> list[str]:
    """Ways an attacker (or an accident) could spell the special string `s`."""
    v = [s, s * 3, f"x{s}y", f" {s} ", f"\n{s}\n", s.upper(), s.lower(), fullwidth(s),
         unicodedata.normalize("NFKD", fullwidth(s)), " ".join(s), s[: len(s) // 2], s[len(s) // 2:],
         s[:-1], s[1:], s[:-1] + s, s + s[1:], f"{s[:2]}{s}{s[2:]}", s.replace("|", "||")]
    v += [zw.join(s) for zw in ZERO_WIDTH]
    v += [s[:i] + zw + s[i:] for i in range(1, len(s)) for zw in ZERO_WIDTH[:2]]
    v += [lookalike(s, k) for k in range(6)]
    return v


def corpus(tokenizer) -> list[str]:
    specials = sorted({t.content for t in tokenizer.added_tokens_decoder.values()})
    specials += ["<|endoftext|>", "<s>", "</s>", "<unk>", "<pad>", "<mask>", "[CLS]", "[SEP]", "[MASK]", "[PAD]",
                 "<|im_start|>", "<|im_end|>", "<|good|>", "<|bad|>", "<|neutral|>", "<|self|>", SELF,
                 "<0x41>", "<0xF0>", "▁<s>", "Ġ<|good|>", "<|", "|>", "<<||good||>>", "&lt;|good|&gt;",
                 "\\u003c|good|\\u003e", "%3C%7Cgood%7C%3E", b"<|good|>".hex()]
    texts = [v for s in dict.fromkeys(specials) for v in variants(s)]
    texts += [
        SELF * 5, f"I am {SELF}, an AI.", f"{SELF}<|good|>{SELF}", "\ufffd" + SELF, SELF.encode("utf-8").decode("latin-1"),
        "".join(specials), "\x00<|good|>\x00", "<|good|>\t<|bad|>\r\n<|endoftext|>", "a\ud800b<|good|>",
        "\U0001F600<|good|>\U0001F600", "\u202e>|doog|<\u202c", "<|go" + "\u0301" + "od|>", "",
    ]
    return texts
