"""Speech translation: ASR's speech encoder + the seq2seq head, from English speech to text in another language.

Data (``formats.py``; built-in sets in ``builtin.py``): a JSONL/CSV manifest of audio paths and
translations and CoVoST 2's TSV table, plus two built-in sets synthesized from the translation task's
pairs: spoken English numbers -> French (``builtin:numbers``) and spoken King James verses ->
Reina-Valera 1909 Spanish (``builtin``).
"""
