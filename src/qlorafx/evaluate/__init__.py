"""Evaluating a finished run: loss and perplexity on data, multiple-choice accuracy."""
