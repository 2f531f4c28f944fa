"""Image captioning: an image backbone + the seq2seq decoder head; built-in captions of detection's scenes."""
