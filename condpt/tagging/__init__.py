"""Corpus tagging: lexicon prefilter → classifier → optional LLM autorater, per document/paragraph/sentence.

Entry points: `condpt.tagging.cascade.TagConfig` (the one config of a tagging run),
`condpt.tagging.cascade.Cascade` (a pure function over batches) and `condpt.tagging.cascade.tag_corpus`
(files in, Parquet shards + report out). See docs/tagging.md.
"""
