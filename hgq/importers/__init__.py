"""Importers of models trained with other tools (QKeras)."""
