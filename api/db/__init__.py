"""Database models and engine configuration (advanced-alchemy on SQLAlchemy)."""
