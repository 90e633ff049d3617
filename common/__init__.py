"""Domain-free helpers shared by every app: roles, pagination, errors, storage,
LaTeX tokenising, geometry, RLE. Imported, never copied."""
