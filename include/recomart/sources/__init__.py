"""Data sources that produce the canonical tables (recomart.tables) as ``<dataset>.csv`` folders.

- ``generator``: a seeded synthetic e-commerce shop (users, catalog, sessions, orders, ratings).
- ``movielens``: adapter mapping MovieLens folders onto the same tables.
- ``catalog_api`` / ``catalog_client``: the product-catalog HTTP API and its paginated client.

Submodules are imported on demand so ``import recomart.sources`` stays cheap.
"""
