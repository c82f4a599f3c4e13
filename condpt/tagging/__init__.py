"""Corpus tagging: lexicon prefilter → classifier → optional refine scorer → optional LLM autorater, per
document/paragraph/sentence, always in that order.

Entry points: `condpt.tagging.config.TagConfig` (the one config of a tagging run; one section per optional
stage), `condpt.tagging.cascade.Cascade` (a pure function over batches) and `condpt.tagging.run.tag_corpus`
(files in, Parquet shards + report out). See docs/tagging.md.
"""
