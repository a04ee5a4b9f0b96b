"""Clients of other systems: BudgetService (budget_client.py), the image
providers (providers/) and the content-addressed image files (image_store.py)."""
