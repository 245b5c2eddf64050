"""The data pipeline: corpora, tokenizers, bucketed batches and the DataModules."""
