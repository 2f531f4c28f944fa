"""Sentiment classification: label a text (a review, a sentence) with a class such as negative/positive."""
