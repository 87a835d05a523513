"""The Hugging Face Hub: model cards from typed data, allow-listed uploads."""
