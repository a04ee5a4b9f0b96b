"""ImageService: a recipe in, a photo out, every cent accounted at BudgetService.

main.py (the composition root) builds everything; servicer.py and convert.py
are the gRPC edge; app/ holds the use cases, domain/ and recipes/ the values
and rules, store/ the database and adapters/ the other systems.
"""
