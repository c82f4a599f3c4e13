"""tokenizer_ext: control tokens for any Hugging Face fast tokenizer, and injection-safe encoding."""
