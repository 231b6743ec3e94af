"""Fine-tuning data: task annotation files (docs/finetune_data.md) -> datasets, batches and a DataModule."""
