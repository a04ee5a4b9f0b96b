"""Recipe understanding, a product in itself: what dish a recipe is
(analyzer.py, its words in lexicon.py), the prompt built from that
(prompts.py) and when two recipes are the same dish (similarity.py). Pure
Python, no I/O, and nothing else of ImageService imported."""
