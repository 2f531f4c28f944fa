"""Translation: a text encoder backbone + the seq2seq decoder head, trained on sentence pairs.

Data (``formats.py``; built-in sets in ``builtin.py``): TSV, JSONL and line-aligned file pairs, plus two
built-in sets, verse-aligned King James / Reina-Valera 1909 Bibles (``builtin``) and
numbers written in English and French (``builtin:numbers``).
"""
