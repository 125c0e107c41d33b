//! Shotgun read requests compiled to SQL (sea-query) for SQLite and PostgreSQL, and rows decoded back to the site's JSON (pure, no I/O except `execute`).
