"""Text generation: a causal text decoder + the language-model head, trained on packed token blocks.

Data (``formats.py``; built-in sets in ``builtin.py``): plain ``.txt`` files or folders and JSONL with a
text field, plus two built-in sets, Jane Austen's six novels split by whole chapters
(``builtin``) and Debian's fortune cookies (``builtin:fortunes``).
"""
